"""Issue 12, "bad commands that pass validation": a corpus of malformed commands (command_corpus.py)
through the API, each refused with a ConfigError naming its field, fast, before any run exists;
then the same refusal through the CLI, a sweep and the train panel.
"""
from __future__ import annotations

import time

import pytest

from command_corpus import BASELINE, CASES, FEWSHOT, Case

#: Cases refused on their size or shape: microseconds of work, whatever the machine's load.
_INSTANT = ("ten-mb", "deep-", "million-item", "json-5000")


def _data(case: Case, folders):
    explicit = isinstance(case.command, dict) and "data" in case.command
    return None if explicit else folders[case.base]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """One run log for every case: it must still hold no run at the end of each."""
    from workbench import RunLog

    return RunLog(tmp_path_factory.mktemp("corpus-home") / "runs.json")


@pytest.fixture(scope="module")
def warm(folders):
    """The base commands are valid here (so each case fails for its own mutation), imports warmed."""
    from workbench import training

    training.prepare(BASELINE, folders["baseline"])
    training.prepare(FEWSHOT, folders["fewshot"])


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 143 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_command_is_refused_naming_the_field_before_any_run(case, folders, warm, log):
    import torch

    from workbench import ConfigError, training
    from workbench.jobs import start_training

    if case.needs_no_gpu and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    data = _data(case, folders)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:  # the pre-run check alone: nothing can start if it lets one by
        if case.needs_log:  # it names another run: checked when its run would be created
            training.create_run(log, training.prepare(case.command, data))
        else:
            training.prepare(case.command, data)
    seconds = time.perf_counter() - t0
    paths = [p.path for p in info.value.problems]
    assert case.path in paths, f"expected a problem at {case.path!r}, got {paths}: {info.value}"
    assert seconds < (0.5 if case.id.startswith(_INSTANT) else 10), f"{seconds:.2f} s to refuse"
    with pytest.raises(ConfigError):  # and a job refuses it the same way, with no run left behind
        start_training(case.command, data, log=log)
    assert log.runs() == [] and not (log.runs_dir.is_dir() and any(log.runs_dir.iterdir()))
