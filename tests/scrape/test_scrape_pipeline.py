"""scrape(): validation, run-log records, the API choice line, demo dataset, CLI, labels."""
from __future__ import annotations

import pytest

from workbench.scrape import (SerpApiAuthError, assign_folders, demo_dataset, load_manifest, preview,
                              safe_label, scrape)


def test_run_is_recorded_with_kind_scrape(tmp_path, stub, runlog):
    res = scrape(["red fox", "arctic fox"], tmp_path / "ds", labels=["Red", "Arctic"], limit=8, chips="close up",
                 base_url=stub.base_url, runlog=runlog, log=lambda m: None)
    rec = runlog.get(res.run_id)
    assert rec["kind"] == "scrape" and rec["status"] == "completed"
    assert rec["config"]["queries"] == ["red fox", "arctic fox"] and rec["config"]["labels"] == ["Red", "Arctic"]
    assert rec["config"]["chips"] == "close up" and rec["config"]["limit"] == 8
    assert rec["summary"]["counts"] == {"Red": 8, "Arctic": 8} and rec["summary"]["n_images"] == 16
    assert rec["dataset"]["n_images"] == 16 and rec["dataset"]["classes"] == ["arctic", "red"]
    assert len(rec["dataset"]["sha256"]) == 16
    assert res.folders == {"Red": "red", "Arctic": "arctic"}


def test_failure_is_recorded_and_raised(tmp_path, stub, runlog):
    stub.set_fault("auth")
    with pytest.raises(SerpApiAuthError, match="Invalid API key"):
        scrape(["red fox"], tmp_path / "ds", base_url=stub.base_url, runlog=runlog, log=lambda m: None)
    (rec,) = runlog.find(kind="scrape")
    assert rec["status"] == "failed" and "Invalid API key" in rec["error"]


def test_query_without_results_is_reported_and_others_continue(tmp_path, stub, runlog):
    res = scrape(["red fox", "blue circles"], tmp_path / "ds", limit=5, base_url=stub.base_url, runlog=runlog,
                 log=lambda m: None, backoff=0.01)
    assert res.counts == {"red fox": 5, "blue circles": 5} and res.errors == {}
    stub.set_fault("empty", times=1)  # the first query's search (an answer: not retried)
    res = scrape(["green stars", "blue circles"], tmp_path / "ds2", limit=5, base_url=stub.base_url, runlog=runlog,
                 log=lambda m: None, backoff=0.01, retries=2)
    assert "hasn't returned any results" in res.errors["green stars"]
    assert res.counts == {"green stars": 0, "blue circles": 5}


def test_announces_the_stub_in_one_line(tmp_path, runlog, monkeypatch):
    monkeypatch.delenv("SERPAPI_API_KEY", raising=False)
    monkeypatch.delenv("SERPAPI_BASE_URL", raising=False)
    lines: list[str] = []
    res = scrape("red fox", tmp_path / "ds", limit=3, runlog=runlog, log=lines.append)
    assert res.api == "stub"
    assert "offline loopback stub" in lines[0] and "SERPAPI_API_KEY" in lines[0] and "\n" not in lines[0]
    assert runlog.get(res.run_id)["config"]["api"] == "stub"


def test_uses_the_real_api_path_when_a_key_is_set(tmp_path, stub, runlog, monkeypatch):
    monkeypatch.setenv("SERPAPI_API_KEY", "k-from-env-123")
    monkeypatch.setenv("SERPAPI_BASE_URL", stub.base_url)
    lines: list[str] = []
    res = scrape("red fox", tmp_path / "ds", limit=3, runlog=runlog, log=lines.append)
    assert res.api == "serpapi" and "Using SerpApi" in lines[0]
    assert stub.requests[0]["params"]["api_key"] == "***"  # the key was sent (the stub redacts its own log)


@pytest.mark.parametrize("kwargs,match", [
    ({"pages": 0}, r"pages: 0 is not allowed; expected an integer >= 1"),
    ({"limit": -2}, r"limit: -2 is not allowed; expected an integer >= 1 or None"),
    ({"workers": 0}, r"workers: 0"),
    ({"labels": ["a", "b"]}, r"labels: 2 labels for 1 queries"),
    ({"size": "huge"}, r"size: 'huge' is not an image size"),
    ({"params": {"colour": "red"}}, r"params.colour: unknown parameter.*allowed: .*image_color"),
    ({"params": {"lr": "lang_en"}}, r"params.lr: not a Google Images parameter"),
    ({"params": {"location": "Austin", "uule": "w+CAIQICI"}}, r"'location' and 'uule' cannot be used together"),
    ({"pages": 101}, r"pages: 101 is not allowed; expected an integer >= 1 and <= 100"),
    ({"near_duplicates": "merge"}, r"near_duplicates: 'merge' is not allowed; expected one of drop, keep, off"),
    ({"download_deadline": 0}, r"download_deadline: 0 is not allowed; expected a positive number of seconds"),
    ({"chips": ""}, r"chips: '' is not a suggested-search name"),
    ({"resize": 0}, r"resize: 0 is not allowed; expected None, a longest side"),
    ({"resize": (64, "x")}, r"resize: \(64, 'x'\) is not allowed"),
    ({"max_bytes": 0}, r"max_bytes: 0 is not allowed"),
])
def test_bad_arguments_name_the_field(tmp_path, runlog, kwargs, match):
    with pytest.raises(ValueError, match=match):
        scrape(["red fox"], tmp_path / "ds", runlog=runlog, log=lambda m: None, **kwargs)
    assert runlog.find(kind="scrape") == []  # nothing started, nothing lost


def test_empty_queries_are_refused(tmp_path, runlog):
    with pytest.raises(ValueError, match="queries"):
        scrape([], tmp_path / "ds", runlog=runlog)
    with pytest.raises(ValueError, match="queries"):
        scrape(["ok", "  "], tmp_path / "ds", runlog=runlog)


# -- labels -----------------------------------------------------------------------------
@pytest.mark.parametrize("label,folder", [
    ("German Shepherd", "german_shepherd"),
    ("../../etc/passwd", "etc_passwd"),
    ("a/b\\c", "a_b_c"),
    ("..", None),
    ("   ", None),
    ("Köpek 🐕", "köpek"),
    ("Ｆｕｌｌｗｉｄｔｈ", "fullwidth"),
    ("tab\tnew\nline\x00", "tab_new_line"),
    (".hidden", "hidden"),
])
def test_safe_label(label, folder):
    out = safe_label(label)
    assert "/" not in out and "\\" not in out and not out.startswith(".") and out not in ("", ".", "..")
    assert out == safe_label(label)  # stable
    if folder is None:
        assert out.startswith("label-")
    else:
        assert out == folder


def test_long_labels_are_cut_but_distinct():
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    fa, fb = safe_label(a), safe_label(b)
    assert fa != fb and len(fa.encode()) <= 80 and len(fb.encode()) <= 80


def test_colliding_labels_get_distinct_folders_and_keep_existing_ones():
    m = assign_folders(["a/b", "a b", "A_B"])
    assert len(set(m.values())) == 3 and m["a/b"] == "a_b"
    m2 = assign_folders(["A_B", "new"], existing={"A_B": "kept"})
    assert m2["A_B"] == "kept" and m2["new"] == "new"


def test_unsafe_labels_end_up_inside_the_dataset(tmp_path, stub, runlog):
    res = scrape(["red fox", "arctic fox"], tmp_path / "ds", labels=["../escape", "Renard arctique/é"], limit=3,
                 base_url=stub.base_url, runlog=runlog, log=lambda m: None)
    root = (tmp_path / "ds").resolve()
    for r in load_manifest(root):
        assert (root / r["path"]).resolve().is_relative_to(root)
    assert res.folders == {"../escape": "escape", "Renard arctique/é": "renard_arctique_é"}
    assert {r["label"] for r in load_manifest(root)} == {"../escape", "Renard arctique/é"}
    assert not (tmp_path / "escape").exists()


# -- preview, demo, CLI ----------------------------------------------------------------------
def test_preview_grid(tmp_path, stub, runlog):
    scrape(["red fox", "arctic fox"], tmp_path / "ds", limit=5, base_url=stub.base_url, runlog=runlog,
           log=lambda m: None)
    fig = preview(tmp_path / "ds", per_label=4)
    assert len(fig.axes) == 8 and sum(bool(ax.images) for ax in fig.axes) == 8
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["arctic fox\n(5)", "red fox\n(5)"]


def test_demo_dataset_is_learnable_shaped_and_idempotent(tmp_path, monkeypatch):
    from torchvision.datasets import ImageFolder

    from workbench import RunLog
    from workbench.scrape import DEMO_CLASSES

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    root = demo_dataset(quick=True)
    assert root == tmp_path / "home" / "datasets" / "demo"
    ds = ImageFolder(str(root))
    assert len(ds.classes) == len(DEMO_CLASSES) >= 4
    counts = {c: 0 for c in ds.classes}
    for _, y in ds.samples:
        counts[ds.classes[y]] += 1
    assert min(counts.values()) >= 30
    assert ds[0][0].size == (64, 64)
    log = RunLog()
    assert len(log.find(kind="scrape")) == 1
    assert demo_dataset(quick=True) == root
    assert len(log.find(kind="scrape")) == 1  # already there: no second build


def test_demo_dataset_resumes_a_partial_build(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    root = demo_dataset(quick=True)
    rows = (root / "manifest.jsonl").read_text().splitlines()
    (root / "manifest.jsonl").write_text("\n".join(rows[:100]) + "\n")  # as if killed mid-build
    lines: list[str] = []
    assert demo_dataset(quick=True, log=lines.append) == root
    assert len(load_manifest(root)) == len(rows)
    assert "320 images" in lines[-1] and f"({len(rows) - 100} new" in lines[-1]


def test_cli_scrape_builds_an_imagefolder_dataset(tmp_path, capsys):
    from torchvision.datasets import ImageFolder

    from workbench.cli import main

    rc = main(["scrape", "red fox", "arctic fox", "--out", str(tmp_path / "foxes"), "--limit", "6"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("offline loopback stub") == 1 and "12 images" in out
    assert len(ImageFolder(str(tmp_path / "foxes"))) == 12
    assert (tmp_path / "foxes" / "manifest.jsonl").is_file()


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    from workbench.cli import main

    rc = main(["scrape", "red fox", "--out", str(tmp_path / "x"), "--chips", "watercolour"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: chips: 'watercolour'") and "'outline'" in err
    assert main(["stub-serpapi", "--fault", "meteor"]) == 1
    assert "allowed: auth" in capsys.readouterr().err


def test_stop_keeps_what_is_written_and_a_rerun_resumes(tmp_path, runlog):
    import threading

    from workbench.scrape import SerpApiStub

    stop = threading.Event()

    def progress(p):
        if p.overall.get("accepted", 0) >= 10:
            stop.set()

    with SerpApiStub(image_latency=0.02) as slow:
        res = scrape(["red fox", "arctic fox"], tmp_path / "ds", limit=60, base_url=slow.base_url, runlog=runlog,
                     workers=2, progress=progress, stop=stop, log=lambda m: None)
        assert res.stopped and 10 <= res.total < 120 and "stopped early" in res.summary()
        assert runlog.get(res.run_id)["status"] == "stopped"
        assert len(load_manifest(tmp_path / "ds")) == res.total
        again = scrape(["red fox", "arctic fox"], tmp_path / "ds", limit=60, base_url=slow.base_url,
                       runlog=runlog, log=lambda m: None)
    assert not again.stopped and again.counts == {"red fox": 60, "arctic fox": 60}
    assert sum(again.new.values()) == 120 - res.total
