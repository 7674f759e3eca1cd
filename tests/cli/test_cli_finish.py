"""The CLI's fit and finish (issue 13): substring names, validated filters with "did you mean",
ids by suffix, ambiguous references listed, ``rm`` asks, reads create nothing, "did you mean" for
commands, a readable ``runs compare``, one line per run with the bars on stderr, ``tour --out``."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.runlog import RunLog


def _run(log: RunLog, name: str, status: str = "completed", config: dict | None = None, **summary) -> str:
    r = log.start(name, "baseline", config or {"optimizer": {"name": "Adam", "params": {"lr": 1e-3}}})
    r.log_metrics({"train_loss": 1.0}, step=0)
    r.log_metrics({"train_loss": 0.5}, step=1)
    r.finish(status, summary=summary or {"test_accuracy": 0.5})
    return r.id


@pytest.fixture()
def log(tmp_path) -> RunLog:
    return RunLog(tmp_path / "runs.json")


def _json_list(capsys, *args) -> list[str]:
    assert main(["runs", "list", *args, "--json"]) == 0
    return [r["name"] for r in json.loads(capsys.readouterr().out)]


def test_name_filter_matches_part_of_a_name_like_the_panel(log, capsys):
    for n in ("adam-lr1e-3", "big-ADAM", "sgd"):
        _run(log, n)
    db = ["--db", str(log.path)]
    assert _json_list(capsys, *db, "--name", "adam") == ["adam-lr1e-3", "big-ADAM"]
    assert _json_list(capsys, *db, "--name", "sgd") == ["sgd"]


@pytest.mark.parametrize("option,value,hint", [("--status", "complted", "did you mean 'completed'"),
                                               ("--kind", "mmal", "did you mean 'maml'")])
def test_a_wrong_status_or_kind_is_an_error_not_no_runs(log, capsys, option, value, hint):
    _run(log, "a")
    assert main(["runs", "list", "--db", str(log.path), option, value]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} {value!r} is not one of") and hint in err
    assert "(no runs)" not in err


def test_a_run_id_resolves_by_its_unique_tail(log, capsys):
    a, b = _run(log, "first"), _run(log, "second")
    assert main(["runs", "show", a[-6:], "--db", str(log.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == a
    assert main(["runs", "show", b[-10:], "--db", str(log.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == b


def test_an_ambiguous_name_or_id_lists_the_candidates(log, capsys):
    old, new = _run(log, "dup"), _run(log, "dup")
    assert main(["runs", "show", "dup", "--db", str(log.path)]) == 1
    err = capsys.readouterr().err
    assert "name 'dup' matches 2 runs" in err and old in err and new in err  # not silently the newest
    prefix = os.path.commonprefix([old, new])
    assert main(["runs", "show", prefix, "--db", str(log.path)]) == 1
    err = capsys.readouterr().err
    assert f"id prefix {prefix!r} matches 2 runs" in err and old in err and new in err
    assert main(["runs", "show", "dpu", "--db", str(log.path)]) == 1
    assert "did you mean 'dup'" in capsys.readouterr().err


def test_rm_asks_before_deleting(log, capsys, monkeypatch):
    a = _run(log, "keep-me")
    for answer in ("n\n", "", "nope\n"):  # no, end of input, anything but yes: kept
        monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
        assert main(["runs", "rm", a, "--db", str(log.path)]) == 1
        assert "delete run" in capsys.readouterr().err and [r["id"] for r in RunLog(log.path).runs()] == [a]
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["runs", "rm", a, "--db", str(log.path)]) == 0
    assert RunLog(log.path).runs() == []
    b = _run(log, "gone")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # --yes never reads the terminal
    assert main(["runs", "rm", "gone", "--db", str(log.path), "--yes"]) == 0 and b in capsys.readouterr().out


def test_reads_never_create_a_folder(tmp_path, capsys):
    nope = tmp_path / "nope" / "runs.json"
    assert main(["runs", "list", "--db", str(nope)]) == 0
    assert "no run log at" in capsys.readouterr().out
    assert main(["runs", "list", "--db", str(nope), "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    for args in (["runs", "show", "x"], ["runs", "rm", "x", "--yes"], ["runs", "compare", "x", "y"], ["test", "x"]):
        assert main([*args, "--db", str(nope)]) == 1
        assert "no run log at" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_did_you_mean_for_commands_and_actions(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["trian"])
    assert exc.value.code == 2 and "did you mean 'train'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["runs", "lst"])
    assert "did you mean 'list'?" in capsys.readouterr().err


def test_runs_compare_fits_a_terminal(log, capsys, monkeypatch):
    def layers(k: int) -> dict:  # a layer list: one config value of ~700 characters
        return {"layers": [{"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 16 * i + k,
                                                         "kernel_size": 3}} for i in range(1, 9)]}
    ids = [_run(log, f"a-rather-long-run-name-variant-{i:03d}", config={"model": layers(i), "batch_size": 16 * (i + 1),
                                                                         "optimizer": {"lr": 10 ** -i}})
           for i in range(3)]
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["runs", "compare", *ids, "--db", str(log.path)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100, max(out.splitlines(), key=len)
    assert "variant-002" in out and ids[0] not in out  # run names, not ids
    assert "batch_size" in out and "optimizer.lr" in out and "model.layers" in out
    assert "…" in out and len(out) < 4000  # the layer lists are cut, not printed whole on 1,484-character lines


def _shapes(root: Path) -> Path:
    from PIL import Image, ImageDraw

    for c, colour in enumerate(("red", "blue")):
        (root / colour).mkdir(parents=True)
        for i in range(12):
            im = Image.new("RGB", (16, 16), "white")
            ImageDraw.Draw(im).rectangle([2 + i % 4, 2, 12, 12 - c * 4], fill=colour)
            im.save(root / colour / f"{i}.png")
    return root


def test_train_prints_one_line_and_keeps_its_bars_on_stderr(tmp_path):
    data = _shapes(tmp_path / "shapes")
    cmd = tmp_path / "cmd.json"
    cmd.write_text(json.dumps({"name": "cli-line", "image_size": 16, "epochs": 2, "batch_size": 8,
                               "model": {"preset": "small_cnn", "params": {"hidden": 8}}}))
    env = dict(os.environ, WORKBENCH_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "workbench", "train", "--config", str(cmd), "--data", str(data)],
                         capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [out.stdout.strip()] and out.stdout.startswith("run ")  # one line per run
    assert "epoch 2/2" in out.stderr and "v_num" not in out.stderr + out.stdout  # our bar, on stderr
    assert "checking the command" in out.stderr.splitlines()[0]
    for noise in ("GPU available", "litlogger", "LeafSpec", "`Trainer.fit` stopped", "site-packages"):
        assert noise not in out.stdout + out.stderr, noise


def test_tour_out_writes_html_with_the_plots(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from workbench.widgets import plots\n"
        "recs = [{'id': 'a', 'name': 'adam', 'metrics': [{'step': i, 'train_loss': 1 / (i + 1)} for i in range(9)]}]\n"
        "plots.curves(recs, 'train_loss')"),
        nbformat.v4.new_code_cell("import ipywidgets as w\nw.Button(description='a panel')")]
    nbformat.write(nb, nbs / "01_plot.ipynb")
    env = dict(os.environ, WORKBENCH_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-m", "workbench", "tour", "--quick", "--notebooks", str(nbs),
                          "--out", str(tmp_path / "html")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    page = (tmp_path / "html" / "01_plot.html").read_text()
    assert page.count("data:image/png;base64,") >= 1  # the chart, as its PNG
    assert "open the notebook in JupyterLab" in page and "Button(" not in page
    assert (tmp_path / "html" / "01_plot.ipynb").is_file()


def test_recommend_on_an_empty_log_names_the_commands_that_fill_it(tmp_path, capsys):
    data = _shapes(tmp_path / "shapes")
    assert main(["recommend", "--data", str(data), "--db", str(tmp_path / "runs.db")]) == 1
    err = capsys.readouterr().err
    assert "run a sweep first" in err and "python -m workbench sweep --data DIR --space FILE" in err
    with pytest.raises(SystemExit) as exc:  # and that command exists
        main(["sweep", "--help"])
    assert exc.value.code == 0


def test_the_run_table_keeps_the_end_that_tells_variants_apart(log, capsys):
    base = "nb04-sweep-quickstart-shapes-baseline-variant"  # the tour and runs list share this table
    for lr in ("0.01", "0.001"):
        _run(log, f"{base}/00{len(lr)} lr={lr}")
    assert main(["runs", "list", "--db", str(log.path)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 2 and all("…" in ln for ln in lines)  # long names are cut in the middle
    assert any("lr=0.01 " in ln for ln in lines) and any("lr=0.001 " in ln for ln in lines)
    assert all(len(ln.split("  ")[1]) <= 36 for ln in lines)
