"""Sweeps: variant expansion, tags and hashes, stop, and resume after a restart."""
from __future__ import annotations

import threading
import time

import pytest

from workbench.meta.sweep import Sweep, expand_space

BASE = {"kind": "baseline", "model": {"preset": "small_cnn", "params": {"hidden": 8}}, "epochs": 1,
        "optimizer": {"name": "Adam", "params": {"lr": 1e-3}}, "batch_size": 8, "image_size": 28}
SPACE = {"optimizer.params.lr": [1e-3, 1e-2, 1e-1], "batch_size": [8, 16]}


class FakeJob:
    """Stands in for workbench.jobs.start_training: a run that logs a curve in a thread."""

    def __init__(self, log, command, data, name, tags, gate=None, steps=10):
        self.run = log.start(name, "baseline", command, tags=tags, dataset={"root": data})
        self.run_id = self.run.id
        self._stop = threading.Event()
        self._gate = gate
        self._steps = steps
        self._cmd = command
        self.thread = threading.Thread(target=self._go, daemon=True)
        self.thread.start()

    def _go(self):
        lr = self._cmd["optimizer"]["params"]["lr"]
        for i in range(self._steps):
            if self._gate is not None:
                self._gate.wait(5)
            if self._stop.is_set():
                self.run.finish("stopped")
                return
            self.run.log_metrics({"train_loss": 2.0 / (1 + lr * 10 * i)}, step=i)
        self.run.finish("trained", summary={"val_accuracy": 0.5 + lr})

    def wait(self, timeout=None):
        self.thread.join(timeout)

    def stop(self):
        self._stop.set()


class FakeRunner:
    """Counts calls; jobs from call ``block_from`` on wait for ``gate`` at every step."""

    def __init__(self, gate=None, block_from=0):
        self.calls = []
        self.gate = gate
        self.block_from = block_from

    def __call__(self, command, data, *, name, tags, log):
        self.calls.append(next(t for t in tags if t.startswith("variant:")))
        gate = self.gate if len(self.calls) > self.block_from else None
        return FakeJob(log, command, data, name, tags, gate=gate)


def test_expand_space_grid_random_and_errors():
    grid = expand_space(SPACE)
    assert len(grid) == 6 and grid[0] == {"optimizer.params.lr": 1e-3, "batch_size": 8}
    assert expand_space(SPACE, n=4) == expand_space(SPACE, n=4)  # seeded subset: same each time
    assert len(expand_space(SPACE, n=4)) == 4
    rnd = expand_space({"optimizer.params.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                        "batch_size": [8, 16, 32]}, "random", n=5, seed=3)
    assert len(rnd) == 5 and all(1e-4 <= p["optimizer.params.lr"] <= 1e-1 for p in rnd)
    assert rnd == expand_space({"optimizer.params.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                "batch_size": [8, 16, 32]}, "random", n=5, seed=3)
    with pytest.raises(ValueError, match="strategy = 'bayes'"):
        expand_space(SPACE, "bayes")
    with pytest.raises(ValueError, match="a grid axis must be a non-empty list"):
        expand_space({"batch_size": 8})
    with pytest.raises(ValueError, match="needs n"):
        expand_space(SPACE, "random")
    with pytest.raises(ValueError, match="low > 0"):
        expand_space({"lr": {"low": 0, "high": 1, "log": True}}, "random", n=2)


def test_bad_space_key_or_value_is_caught_before_anything_runs(runlog, tmp_path):
    runner = FakeRunner()
    with pytest.raises(ValueError, match="'optimiser' is not a field.*did you mean 'optimizer'"):
        Sweep(BASE, {"optimiser.params.lr": [0.1]}, log=runlog, runner=runner, data=str(tmp_path))
    with pytest.raises(ValueError, match="variant 0.*batch_size"):
        Sweep(BASE, {"batch_size": [-1]}, log=runlog, runner=runner, data=str(tmp_path))
    assert runner.calls == [] and runlog.runs() == []


def test_sweep_runs_every_variant_tagged_and_hashed(runlog, tmp_path):
    runner = FakeRunner()
    s = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=runner, name="grid-a").run()
    assert s.done and len(runner.calls) == 6 and len(set(runner.calls)) == 6
    st = s.status()
    assert list(st["status"]) == ["trained"] * 6 and st["score"].notna().all()
    recs = runlog.find(tag="sweep:grid-a")
    assert len(recs) == 6
    r = recs[0]
    assert r["sweep"]["name"] == "grid-a" and r["sweep"]["params"] == s.variants[0].params
    assert r["config"]["data"] == str(tmp_path)
    assert {x["config"]["optimizer"]["params"]["lr"] for x in recs} == {1e-3, 1e-2, 1e-1}
    assert len(s.runs()) == 6


def test_sweep_is_stoppable_and_resumes_after_a_restart(runlog, tmp_path):
    gate = threading.Event()
    runner = FakeRunner(gate, block_from=2)  # the third variant hangs until the gate opens
    s = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=runner).start()
    deadline = time.time() + 20
    while not any(v.status == "running" and v.index == 2 for v in s.variants) and time.time() < deadline:
        time.sleep(0.01)
    assert s.running
    s.stop(wait=False)  # asks the running job to stop, starts nothing new
    gate.set()
    s.wait(10)
    assert not s.running
    statuses = sorted(r["status"] for r in runlog.find(tag=s.tag))
    assert statuses.count("trained") >= 2 and "stopped" in statuses and len(statuses) < 6
    finished_before = {v.hash for v in s.variants if v.status == "trained"}

    # "restart": a new Sweep object with the same arguments (as after a kernel restart)
    runner2 = FakeRunner()
    s2 = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=runner2)
    assert s2.name == s.name and [v.hash for v in s2.variants] == [v.hash for v in s.variants]
    pending = {v.hash for v in s2.pending()}
    assert pending == {v.hash for v in s.variants} - finished_before
    s2.run()
    assert {c[8:] for c in runner2.calls} == pending, "only unfinished variants ran again"
    assert s2.done and all(v.status == "trained" for v in s2.variants)
    s3 = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=FakeRunner())
    assert s3.pending() == [] and s3.done


def test_failed_start_is_recorded_not_fatal(runlog, tmp_path):
    def runner(command, data, *, name, tags, log):
        if command["batch_size"] == 16:
            raise RuntimeError("no memory")
        return FakeJob(log, command, data, name, tags)

    s = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=runner).run()
    assert len(s.errors) == 3 and "no memory" in s.errors[0]
    assert sorted(v.status for v in s.variants) == ["failed"] * 3 + ["trained"] * 3


def test_real_sweep_through_jobs_trains_and_tests(runlog, tmp_path, synth):
    """Two real (tiny) variants through workbench.jobs, each tested: scores are test accuracies."""
    data = synth.folder(tmp_path / "blobs", "blobs", n_classes=3, per_class=10, size=28)
    base = {**BASE, "split": {"train": 0.6, "val": 0.2, "test": 0.2}}
    s = Sweep(base, {"optimizer.params.lr": [1e-3, 1e-2]}, data=str(data), log=runlog, test=True).run()
    assert s.errors == [] and [v.status for v in s.variants] == ["completed", "completed"]
    recs = s.runs()
    assert all(0.0 <= r["summary"]["test_accuracy"] <= 1.0 for r in recs)
    assert all(r["task"]["features"]["n_classes"] == 3 for r in recs)  # meta-features stored for recommend
    assert s.status()["score"].notna().all()


def test_variant_identity_survives_a_grown_training_command(runlog, tmp_path, monkeypatch):
    """A field added to TrainingCommand later must not make a resumed sweep re-run everything."""
    import sys

    sweep_mod = sys.modules["workbench.meta.sweep"]
    s1 = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=FakeRunner()).run()
    real = sweep_mod._check_command
    # a newer command language: its normalised commands carry a field the sweep never asked for
    monkeypatch.setattr(sweep_mod, "_check_command",
                        lambda cmd: {**real({k: v for k, v in cmd.items() if k != "new_field"}), "new_field": None})
    s2 = Sweep(BASE, SPACE, data=str(tmp_path), log=runlog, runner=FakeRunner())
    assert [v.hash for v in s2.variants] == [v.hash for v in s1.variants] and s2.pending() == []


def test_resumed_test_sweep_tests_trained_variants_without_retraining(runlog, tmp_path):
    tested = []

    class FakeTest:
        def __init__(self, run_id, log):
            self.run_id = run_id
            h = log.handle(run_id)
            h.set_status("testing")
            h.finish("completed", summary={"test_accuracy": 0.7})
            tested.append(run_id)

        def wait(self, timeout=None):
            return None

        def stop(self):
            pass

    space = {"optimizer.params.lr": [1e-3, 1e-2]}
    s1 = Sweep(BASE, space, data=str(tmp_path), log=runlog, runner=FakeRunner()).run()  # trained, untested
    assert [v.status for v in s1.variants] == ["trained", "trained"]
    runner2 = FakeRunner()
    s2 = Sweep(BASE, space, data=str(tmp_path), log=runlog, runner=runner2, test=True,
               tester=lambda rid, log: FakeTest(rid, log))
    assert len(s2.pending()) == 2
    s2.run()
    assert runner2.calls == [], "nothing retrained"
    assert sorted(tested) == sorted(v.run_id for v in s1.variants)
    assert [v.status for v in s2.variants] == ["completed", "completed"]
    assert (s2.status()["score"] == 0.7).all()
