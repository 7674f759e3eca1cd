"""Search spaces with dotted keys and tuning budgets: parsing, errors that name the key, Optuna suggestions."""
from __future__ import annotations

import optuna
import pytest

from workbench.meta.space import FLIP, SearchSpace, SpaceError, default_space, metadataset_space
from workbench.meta.tune import Budget


def test_metadataset_grid_is_48_points_and_round_trips():
    s = metadataset_space()
    grid = s.grid()
    assert len(grid) == 48 and len({s.key_of(p) for p in grid}) == 48
    again = SearchSpace.from_dict(s.to_dict())
    assert again.grid() == grid
    assert isinstance(again.params["optimizer.params.lr"].choices[0.001], float)  # scalars stay scalars


def test_apply_sets_dotted_keys_and_labels_map_to_values():
    s = metadataset_space()
    cmd = s.apply({"optimizer": {"name": "Adam", "params": {"lr": 1}}, "transforms": []},
                  {"optimizer.params.lr": 0.01, "transforms": "flip", "batch_size": 16, "model.params.hidden": 8})
    assert cmd["optimizer"] == {"name": "Adam", "params": {"lr": 0.01}}
    assert cmd["transforms"] == [FLIP] and cmd["model"]["params"]["hidden"] == 8
    assert s.params_of(cmd) == {"optimizer.params.lr": 0.01, "model.params.hidden": 8, "transforms": "flip",
                                "batch_size": 16}
    cmd["batch_size"] = 7
    assert s.params_of(cmd) is None  # off the grid


def test_conditional_key_is_suggested_only_when_its_condition_holds():
    s = default_space()
    seen = {"SGD": set(), "Adam": set()}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        t = study.ask()
        p = s.suggest(t)
        study.tell(t, 0.0)
        if p["optimizer.name"] in seen:
            seen[p["optimizer.name"]].add("optimizer.params.momentum" in p)
    assert seen == {"SGD": {True}, "Adam": {False}}


@pytest.mark.parametrize("space, key, words", [
    ({"optimizer.params.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "optimizer.params.lr", "below"),
    ({"optimizer.params.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "optimizer.params.lr", "low > 0"),
    ({"batch_size": {"type": "int", "low": 1, "high": 9, "lgo": True}}, "batch_size", "unknown field 'lgo'"),
    ({"batch_size": {"type": "integer", "low": 1, "high": 9}}, "batch_size", "categorical, float, int"),
    ({"batch_size": []}, "batch_size", "empty"),
    ({"a.b": {"type": "float", "low": 0, "high": 1, "when": {"c": "x"}}, "c": ["x"]}, "a.b", "earlier key"),
    ({"o.name": ["Adam"], "o.m": {"type": "float", "low": 0, "high": 1, "when": {"o.name": "SGD"}}}, "o.m",
     "not a choice"),
    ({"optimizer..lr": [1]}, "optimizer..lr", "dotted"),
])
def test_bad_spaces_name_the_key(space, key, words):
    with pytest.raises(SpaceError) as e:
        SearchSpace.from_dict(space)
    assert e.value.key == key and words in str(e.value)


def test_grid_needs_categorical_axes():
    with pytest.raises(SpaceError, match="categorical"):
        default_space().grid()


@pytest.mark.parametrize("spec, kind, amount", [(20, "trials", 20), ("20 trials", "trials", 20),
                                                ("240 epochs", "epochs", 240), ("90s", "seconds", 90),
                                                ("10 min", "seconds", 600), ("1h", "seconds", 3600)])
def test_budget_parse(spec, kind, amount):
    b = Budget.parse(spec)
    assert (b.kind, b.amount) == (kind, amount)


@pytest.mark.parametrize("spec", ["10 parsecs", "-3 trials", "2.5 epochs", True, "trials", 0])
def test_bad_budgets_say_what_is_allowed(spec):
    with pytest.raises(ValueError, match="budget"):
        Budget.parse(spec)
