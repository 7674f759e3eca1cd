"""The meta-dataset builder (quick mode, resumable) and the tuning benchmark's JSON interface."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_make_metadataset_quick_builds_real_runs_and_resumes(tmp_path):
    out = tmp_path / "md.jsonl.gz"
    home = tmp_path / "home"
    p = _run("benchmarks/make_metadataset.py", "--quick", "--home", str(home), "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    with gzip.open(out, "rt") as fh:
        recs = [json.loads(line) for line in fh]
    assert len(recs) == 4 and {r["task"]["name"] for r in recs} == {"quick-gratings", "quick-dots"}
    for r in recs:
        assert r["status"] == "completed" and "metadataset" in r["tags"]
        assert len(r["epochs"]) == 2 and "val_accuracy" in r["epochs"][0]
        assert "test_accuracy" in r["summary"] and r["task"]["features"]["scalars"]
    again = _run("benchmarks/make_metadataset.py", "--quick", "--home", str(home), "--out", str(out))
    assert again.returncode == 0 and " 00 " not in again.stdout  # every run was already stored: none re-trained
    from workbench.meta.replay import MetaDataset

    md = MetaDataset.load(out)
    assert {len(t.curves) for t in md.tasks.values()} == {2} and md.epochs == 2


def test_bench_tune_json_interface(tmp_path):
    js = tmp_path / "tune.json"
    p = _run("benchmarks/bench_tune.py", "--seeds", "0", "--tasks", "dots-a,gratings-b", "--budget", "4",
             "--fixed-trials", "4", "--workers", "1", "--json", str(js))
    assert p.returncode == 0, p.stderr[-2000:]
    body = json.loads(js.read_text())
    assert body["n_tasks"] == 2 and body["n_configs"] == 48
    assert set(body["compute_to_target"]["workbench"]) == {"dots-a", "gratings-b"}
    assert set(body["compute_to_target"]) >= {"default", "random", "grid", "tpe", "tpe+median", "tpe+hyperband",
                                              "warm-start", "workbench", "global-prior"}
    assert isinstance(body["median_ratio_vs_tpe_median"], float)
    assert "ratio vs tpe+median" in p.stdout
