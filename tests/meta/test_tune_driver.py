"""tune(): every trial a tested run in the run log, pruned runs stopped with their stop point, resume,
bad input refused before anything runs, two worker processes on one study, the CLI."""
from __future__ import annotations

import json

import optuna
import pytest

from workbench.cli import main
from workbench.meta import synthetic
from workbench.meta.space import SpaceError, metadataset_space
from workbench.meta.tune import SHIPPED_METADATASET, tune
from workbench.meta.warmstart import warm_start_configs
from workbench.runlog import RunLog

SMALL = {"optimizer.params.lr": [0.003, 0.01], "model.params.hidden": [8]}


@pytest.fixture()
def folder(tmp_path):
    spec = synthetic.TaskSpec("tiny-dots", "dots", size=16, n_classes=3, per_class=8, seed=5)
    return synthetic.write_task(spec, tmp_path / "tasks")


@pytest.fixture()
def log(tmp_path):
    return RunLog(tmp_path / "runs.json")


def test_every_trial_is_a_tested_run_in_the_log(folder, log):
    res = tune(folder, space=metadataset_space(), budget="3 trials", epochs=2, log=log,
               history=SHIPPED_METADATASET, pruner="none")
    runs = log.find(tag=f"study:{res.name}")
    assert len(runs) == 3 and {r["kind"] for r in runs} == {"baseline"}
    assert {t for r in runs for t in r["tags"] if t.startswith("trial:")} == {"trial:0", "trial:1", "trial:2"}
    assert {r["status"] for r in runs} == {"completed"}
    assert all(0 <= r["summary"]["test_accuracy"] <= 1 for r in runs)
    assert all(r["task"]["features"]["scalars"] and r["tune"]["study"] == res.name for r in runs)
    assert res.best["run_id"] in {r["id"] for r in runs}
    assert res.anytime()["epochs"].tolist() == [2, 4, 6]
    assert any("start" in n for n in res.notes)  # says whether it warm-started or why not
    assert set(res.importance()) <= set(metadataset_space().params)  # Optuna's fANOVA on own trials
    # a rerun of the same study resumes: the budget is spent, nothing new trains
    again = tune(folder, space=metadataset_space(), budget="3 trials", epochs=2, log=log,
                 history=SHIPPED_METADATASET, pruner="none")
    assert again.name == res.name and len(log.find(tag=f"study:{res.name}")) == 3


def test_a_pruned_trial_ends_stopped_with_its_stop_point(folder, log):
    res = tune(folder, space=SMALL, budget="1 trials", epochs=3, log=log, history=None, warm_start=False,
               pruner=optuna.pruners.ThresholdPruner(lower=1.01))  # prunes at the first report
    (run,) = log.find(tag=f"study:{res.name}")
    assert run["status"] == "stopped"
    assert run["pruned"]["epoch"] == 0 and run["pruned"]["pruner"] == "ThresholdPruner"
    assert len(run["epochs"]) == 1 and res.pruned()["stopped_at"].tolist() == [0]
    assert res.best is None and res.trials()["state"].tolist() == ["PRUNED"]


@pytest.mark.parametrize("space, key, words", [
    ({"optimizer.params.lrr": [0.1]}, "optimizer.params.lrr", "lrr"),
    ({"optimiser.params.lr": [0.1]}, "optimiser.params.lr", "did you mean 'optimizer'"),
    ({"transforms": {"type": "categorical", "choices": {"bad": [{"name": "RandomFlipp"}]}}}, "transforms",
     "RandomFlipp"),
])
def test_bad_space_fails_before_any_run(folder, log, space, key, words):
    with pytest.raises(SpaceError) as e:
        tune(folder, space=space, budget=2, epochs=1, log=log, history=None)
    assert e.value.key == key and words in str(e.value)
    assert log.runs() == []


@pytest.mark.parametrize("kw, words", [({"budget": "5 parsecs"}, "budget"), ({"workers": 0}, "workers"),
                                       ({"pruner": "mediun"}, "pruner"), ({"sampler": "grid", "space": None},
                                                                         "GridSampler")])
def test_bad_arguments_fail_before_any_run(folder, log, kw, words):
    with pytest.raises(ValueError, match=words):
        tune(folder, **{"space": SMALL, "budget": 2, **kw}, epochs=1, log=log, history=None)
    assert log.runs() == []


@pytest.mark.slow
def test_two_worker_processes_share_one_study(folder, log):
    res = tune(folder, space=metadataset_space(), budget="4 trials", epochs=1, log=log, history=None,
               warm_start=False, pruner="none", workers=2, test=False)
    runs = log.find(tag=f"study:{res.name}")
    pids = {r["pid"] for r in runs}
    assert len(runs) == 4 and len(pids) == 2  # two processes trained them
    assert sorted(res.trials()["trial"]) == [0, 1, 2, 3] and set(res.trials()["state"]) == {"COMPLETE"}


def test_an_rdb_url_holds_the_study(folder, log, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"  # what several machines would share (PostgreSQL the same way)
    res = tune(folder, space=SMALL, budget=1, epochs=1, log=log, history=None, warm_start=False, pruner="none",
               storage=url, test=False)
    again = optuna.load_study(study_name=res.name, storage=url)
    assert [t.user_attrs["run_id"] for t in again.trials] == [r["id"] for r in log.find(tag=f"study:{res.name}")]


def test_warm_start_configs_without_running_anything(tmp_path, log):
    spec = synthetic.TaskSpec("gratings-new", "gratings", size=24, n_classes=8, per_class=20, noise=2.4, seed=11)
    folder = synthetic.write_task(spec, tmp_path)
    ws = warm_start_configs(folder, k=3, history=SHIPPED_METADATASET, n=4)
    assert not ws.cold and [n["family"] for n in ws.neighbours].count("gratings") >= 2
    assert len(ws.configs) == 4 and set(ws.configs[0]["evidence"]) == {n["task"] for n in ws.neighbours}
    assert "gratings" in ws.explain() and len(ws.frame()) == 4
    assert log.runs() == []


def test_cli_tune_and_sweep(folder, tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SMALL))
    db = str(tmp_path / "cli.json")
    assert main(["tune", "--data", str(folder), "--budget", "2", "--epochs", "1", "--space", str(space),
                 "--pruner", "none", "--no-warm-start", "--db", db, "--json"]) == 0
    cap = capsys.readouterr()
    out, err = json.loads(cap.out), cap.err
    assert len(out["trials"]) == 2 and out["best"]["run_id"]
    # the progress: one line per finished trial, on stderr (stdout is the JSON)
    assert "trial 0: complete" in err and "trial 1: complete" in err and "2/2 trials" in err, err
    assert main(["sweep", "--data", str(folder), "--space", str(space), "--epochs", "1", "--db", db,
                 "--no-test"]) == 0
    assert "2 trials" in capsys.readouterr().out
    assert len(RunLog(db).runs()) == 4
    assert main(["sweep", "--data", str(folder), "--space", str(space), "--epochs", "1", "--db", db]) == 0
    assert len(RunLog(db).runs()) == 4  # resumed: the grid is done
    assert main(["tune", "--data", str(folder), "--budget", "5 parsecs", "--db", db]) == 1
    assert "budget" in capsys.readouterr().err


def test_a_trial_numbered_past_a_trial_budget_is_refused_untrained():
    # two workers asked before either finished; the budget is one trial: the later number trains nothing
    from workbench.meta.study import check_trial_budget, own_trials

    study = optuna.create_study(direction="maximize")
    first, late = study.ask(), study.ask()
    check_trial_budget(first, "trials", 1)  # within the budget: returns
    with pytest.raises(optuna.TrialPruned):
        check_trial_budget(late, "trials", 1)
    study.tell(late, state=optuna.trial.TrialState.PRUNED)
    study.tell(first, 0.5)
    assert [t.number for t in own_trials(study)] == [first.number]  # the refused one is not the study's
    check_trial_budget(study.ask(), "epochs", 1)  # only trial budgets count trials
