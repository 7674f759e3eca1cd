"""A run reproduces from its seed — also when other jobs train in the same process at the same time.

Bug (issue 10): two jobs started together with the same command and ``seed: 0`` trained differently
(torch's process-wide RNG was shared by their threads and reseeded by each job), so notebook 02's
recorded SGD accuracy changed from tour to tour while the record still said ``seed: 0``.
"""
from __future__ import annotations

import threading

import pytest
import torch

from training_support import fast_command, make_shapes
from workbench import jobs, runtime


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("repro"), per_class=10, size=16)


def _random_command(**over):
    """Dropout and random augmentation: every source of randomness a job has, in one command."""
    layers = fast_command()["model"]["layers"]
    layers = layers[:-1] + [{"name": "Dropout", "params": {"p": 0.3}}] + layers[-1:]
    return fast_command(image_size=16, epochs=3, batch_size=8, model={"layers": layers}, threads=1,
                        transforms=[{"name": "RandomHorizontalFlip", "params": {"p": 0.5}},
                                    {"name": "RandomResizedCrop", "params": {"size": 16, "scale": [0.6, 1.0]}}],
                        **over)


def _losses(log, run_id):
    return [m["train_loss"] for m in log.get(run_id)["metrics"] if "train_loss" in m]


def test_three_concurrent_jobs_with_one_seed_match_each_other_and_a_serial_run(small_shapes, runlog):
    cmd = _random_command()
    serial = _losses(runlog, jobs.train(cmd, data=small_shapes, log=runlog, progress=False)["run_id"])
    assert len(serial) == 3 * 3  # 24 training images (6 per class), 8 per batch, 3 epochs
    handles = [jobs.start_training(cmd, data=small_shapes, log=runlog) for _ in range(3)]
    results = jobs.wait_all(handles, timeout=180)
    assert [r["status"] for r in results] == ["trained"] * 3
    concurrent = [_losses(runlog, h.run_id) for h in handles]
    assert concurrent[0] == concurrent[1] == concurrent[2], "concurrent jobs with one seed trained differently"
    assert concurrent[0] == serial, "a concurrent run differs from the serial run of the same command"
    assert runlog.get(handles[0].run_id)["runtime"] == {"threads": 1}
    other = _losses(runlog, jobs.train(_random_command(seed=1), data=small_shapes, log=runlog,
                                       progress=False)["run_id"])
    assert other != serial  # the seed matters


def test_other_workbench_work_in_the_kernel_does_not_disturb_a_job(small_shapes, runlog):
    """While a job trains, the kernel validates commands, builds models and draws seeded numbers
    (what panels, sweeps and meta-features do): the job's losses do not change."""
    from workbench.commands import parse
    from workbench.nets.builder import build_model

    cmd = _random_command(name="quiet")
    quiet = _losses(runlog, jobs.train(cmd, data=small_shapes, log=runlog, progress=False)["run_id"])
    done = threading.Event()

    def busy_kernel() -> None:
        other = parse(fast_command(transforms=[{"name": "RandomHorizontalFlip"}]))
        while not done.is_set():
            other.validate(4)
            with runtime.seeded(123):
                torch.rand(256)
                build_model({"preset": "small_cnn", "params": {"hidden": 4}}, 3, (3, 16, 16))

    t = threading.Thread(target=busy_kernel, daemon=True)
    t.start()
    try:
        res = jobs.train(cmd, data=small_shapes, log=runlog, progress=False)
    finally:
        done.set()
        t.join()
    assert _losses(runlog, res["run_id"]) == quiet


def test_few_shot_jobs_reproduce_concurrently(runlog, tmp_path):
    glyphs = pytest.importorskip("workbench.data.glyphs").load_glyphs(alphabets=["Latin", "Greek"],
                                                                       max_per_alphabet=10)
    cmd = {"kind": "protonet", "seed": 2, "episodes": {"n_way": 3, "k_shot": 1, "q_query": 2, "meta_batch": 2},
           "model": {"params": {"hidden": 4}}, "steps": 6, "val_episodes": 0, "test_episodes": 0, "threads": 1,
           "glyphs": {"alphabets": ["Latin", "Greek"], "max_per_alphabet": 10}}
    serial = _losses(runlog, jobs.train(cmd, data=glyphs, log=runlog, progress=False)["run_id"])
    handles = [jobs.start_training(cmd, data=glyphs, log=runlog) for _ in range(3)]
    jobs.wait_all(handles, timeout=120)
    assert [_losses(runlog, h.run_id) for h in handles] == [serial] * 3


def test_job_threads_are_set_for_the_job_thread_only():
    before = torch.get_num_threads()
    seen = {}

    def job() -> None:
        with runtime.job_threads(1) as n:
            seen["inside"] = (n, torch.get_num_threads())

    t = threading.Thread(target=job)
    t.start()
    t.join()
    assert seen["inside"] == (1, 1) and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads = 0"):
        runtime.threads_for_job(0)


def test_seeded_sections_restore_the_callers_stream():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with runtime.seeded(99):
        a = torch.rand(2)
    assert torch.equal(torch.rand(3), expected)
    with runtime.seeded(99):
        assert torch.equal(torch.rand(2), a)
