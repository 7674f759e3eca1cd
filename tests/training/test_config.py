"""Training commands: JSON round trip, and every validation error path names field, value and choices."""
from __future__ import annotations

import json

import pytest

from training_support import fast_command
from workbench.commands import ConfigError, TrainingCommand

L = fast_command()["model"]["layers"]


def layers(*replace: tuple[int, dict]) -> dict:
    ls = [dict(x) for x in L]
    for i, layer in replace:
        ls[i] = layer
    return {"layers": ls}


def test_round_trip_is_exact_and_json():
    d = fast_command(scheduler={"name": "StepLR", "params": {"step_size": 2}},
                     transforms=[{"name": "RandomHorizontalFlip", "params": {"p": 0.5}}],
                     pil_ops=[{"name": "autocontrast"}], early_stopping={"patience": 2},
                     split={"train": 0.6, "val": 0.2, "test": 0.2}, labels=["circle", "cross"],
                     trainer={"accelerator": "cpu", "devices": 1, "precision": "32-true"})
    c = TrainingCommand.from_dict(d).validate(2)
    out = c.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert TrainingCommand.from_dict(out).to_dict() == out
    assert TrainingCommand.from_json(c.to_json()) == c
    assert out["scheduler"] == {"name": "StepLR", "params": {"step_size": 2}}
    assert out["early_stopping"]["patience"] == 2 and out["trainer"]["devices"] == 1


def test_shorthand_forms_normalise():
    c = TrainingCommand.from_dict({"model": ["Flatten", {"name": "Linear", "out_features": "n_labels"}],
                                   "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9}, "criterion": "NLLLoss"})
    d = c.to_dict()
    assert d["model"]["layers"][0] == {"name": "Flatten", "params": {}}
    assert d["optimizer"] == {"name": "SGD", "params": {"lr": 0.1, "momentum": 0.9}}
    assert d["criterion"] == {"name": "NLLLoss", "params": {}}
    c.validate(4)


def test_parse_is_the_one_dispatch_on_kind():
    """Every kind parses through workbench.commands.parse into its family's typed command."""
    from workbench.commands import FewShotCommand, parse

    c = parse({"kind": "maml", "episodes": {"n_way": 3}, "steps": 5})
    assert isinstance(c, FewShotCommand) and c.kind == "maml" and c.episodes.n_way == 3
    assert parse(c.to_dict()) == c and parse(json.dumps(c.to_dict())) == c
    assert isinstance(parse(fast_command()), TrainingCommand) and isinstance(parse({}), TrainingCommand)
    with pytest.raises(ConfigError) as ei:  # fields of the old free-form few-shot commands are now checked
        parse({"kind": "maml", "ways": 5, "shots": 1})
    assert [p.path for p in ei.value.problems] == ["ways", "shots"]
    with pytest.raises(ConfigError, match="^kind: expected 'baseline'.*workbench.commands.parse"):
        TrainingCommand.from_dict({"kind": "protonet"})


def test_every_problem_of_a_command_is_reported_at_once(shapes_dir, runlog):
    from workbench import jobs

    d = fast_command(epochs=0, optimizr={}, split={"trian": 0.7}, optimizer={"name": "Adamm"},
                     transforms=[{"name": "RandomHorizontalFlp"}])
    with pytest.raises(ConfigError) as ei:  # field types first: every one of them at once
        jobs.start_training(d, data=shapes_dir, log=runlog)
    assert [p.path for p in ei.value.problems] == ["epochs", "split.trian", "optimizr"]
    assert str(ei.value).splitlines()[1].strip().startswith("also split.trian: unknown field")
    d = fast_command(optimizer={"name": "Adamm"}, transforms=[{"name": "RandomHorizontalFlp"}],
                     pil_ops=[{"name": "rotat"}], criterion="MSELos")
    with pytest.raises(ConfigError) as ei:  # then names and dry runs: again all of them
        jobs.start_training(d, data=shapes_dir, log=runlog)
    assert [p.path for p in ei.value.problems] == ["pil_ops[0].name", "transforms[0].name", "criterion.name",
                                                   "optimizer.name"]
    assert ei.value.path == "pil_ops[0].name" and ei.value.suggestions == ["rotate"]
    assert runlog.runs() == []


# (command overrides, expected error path, words the message must contain)
BAD = [
    ({"optimizr": {}}, "optimizr", ["unknown field", "optimizer"]),
    ({"kind": "mamll"}, "kind", ["maml"]),
    ({"epochs": 0}, "epochs", ["positive integer"]),
    ({"epochs": "5"}, "epochs", ["positive integer", "'5'"]),
    ({"batch_size": 2.5}, "batch_size", ["positive integer"]),
    ({"seed": True}, "seed", ["integer"]),
    ({"image_size": [32]}, "image_size", ["height, width"]),
    ({"channels": 2}, "channels", ["1", "3"]),
    ({"labels": []}, "labels", ["non-empty"]),
    ({"labels": ["a", "a"]}, "labels", ["twice"]),
    ({"split": {"train": 0.9, "val": 0.2, "test": 0.1}}, "split", ["add up to 1"]),
    ({"split": {"trian": 0.7}}, "split.trian", ["train"]),
    ({"split": {"val": 1.5}}, "split.val", ["between 0 and 1"]),
    ({"model": {"preset": "conv5"}}, "model.preset", ["conv4"]),
    ({"model": {"preset": "conv4", "params": {"hiden": 32}}}, "model.params.hiden", ["hidden"]),
    ({"model": {"preset": "small_cnn", "params": {"n_out": 7}}}, "model.params.n_out", ["contradicts"]),
    ({"model": {"preset": "conv4", "layers": L}}, "model.preset", ["either"]),
    ({"model": {"layers": []}}, "model.layers", ["non-empty"]),
    ({"model": {"layerz": []}}, "model.layerz", ["layers"]),
    ({"model": layers((0, {"name": "Conv2D", "params": {"out_channels": 8, "kernel_size": 3}}))},
     "model.layers[0].name", ["Conv2d"]),
    ({"model": layers((3, {"name": "Conv2d", "params": {"out_channels": 8, "kernal_size": 3}}))},
     "model.layers[3].params.kernal_size", ["kernel_size"]),
    ({"model": layers((3, {"name": "Conv2d", "params": {"kernel_size": 3}}))},
     "model.layers[3].params", ["out_channels"]),
    ({"model": layers((3, {"name": "Conv2d", "params": {"out_channels": -4, "kernel_size": 3}}))},
     "model.layers[3].params", ["Conv2d", "-4"]),
    ({"model": layers((3, {"name": "Conv2d", "params": {"in_channels": 5, "out_channels": 8, "kernel_size": 3}}))},
     "model.layers[3]", ["shape (1, 16, 12, 12)"]),
    ({"model": layers((2, {"name": "MaxPool2d", "params": {"kernel_size": 64}}))},
     "model.layers[2]", ["MaxPool2d", "shape (1, 16, 24, 24)"]),
    ({"model": layers((6, {"name": "ReLU"}))}, "model.layers[7].params.in_features", ["Flatten"]),
    ({"model": layers((7, {"name": "Linear", "params": {"in_features": "auto", "out_features": 3}}))},
     "model.layers[7]", ["(N, 4)", "n_labels"]),
    ({"model": layers((7, {"name": "Linear", "params": {"in_features": 7, "out_features": "n_labels"}}))},
     "model.layers[7]", ["shape (1, 32)"]),
    ({"model": layers((1, {"name": "ReLU", "params": {"out_channels": "auto"}}))},
     "model.layers[1].params.out_channels", ["ReLU"]),
    ({"model": layers((1, {"name": "Dropout", "params": {"p": "auto"}}))}, "model.layers[1].params.p", ["auto"]),
    ({"model": layers((1, {"relu": True}))}, "model.layers[1]", ["missing 'name'"]),
    ({"model": layers((1, 42))}, "model.layers[1]", ["expected a name"]),
    ({"criterion": "CrossEntropy"}, "criterion.name", ["CrossEntropyLoss"]),
    ({"criterion": {"name": "CrossEntropyLoss", "params": {"label_smoothing": "x"}}}, "criterion",
     ["CrossEntropyLoss"]),
    ({"criterion": "MSELoss"}, "criterion", ["MSELoss", "(2, 4)"]),
    ({"optimizer": {"name": "adam"}}, "optimizer.name", ["Adam"]),
    ({"optimizer": {"name": "SGD", "params": {"lr": -1}}}, "optimizer.params", ["learning rate"]),
    ({"optimizer": {"name": "Adam", "params": {"learning_rate": 0.1}}}, "optimizer.params.learning_rate", ["lr"]),
    ({"optimizer": {"name": "Adam", "lr": 0.1, "params": {}}}, "optimizer.lr", ["inside 'params'"]),
    ({"scheduler": {"name": "StepLr"}}, "scheduler.name", ["StepLR"]),
    ({"scheduler": {"name": "StepLR"}}, "scheduler.params", ["step_size"]),
    ({"scheduler": {"name": "LambdaLR", "params": {"lr_lambda": "x"}}}, "scheduler.name", ["unknown scheduler"]),
    ({"transforms": [{"name": "RandomHorizontalFlp"}]}, "transforms[0].name", ["RandomHorizontalFlip"]),
    ({"model": layers((1, {"name": "relu"}))}, "model.layers[1].name", ["did you mean 'ReLU'"]),
    ({"transforms": [{"name": "Normalize", "params": {"mean": [0.5], "std": [0.5]}}]}, "transforms[0]",
     ["ToDtype", "uint8"]),
    ({"transforms": [{"name": "ToDtype", "params": {"dtype": "float32"}},
                     {"name": "Normalize", "params": {"mean": [0.5, 0.5], "std": [0.5, 0.5]}}]},
     "transforms[1]", ["Normalize"]),
    ({"transforms": [{"name": "Lambda", "params": {"lambd": "x"}}]}, "transforms[0].name", ["unknown transform"]),
    ({"eval_transforms": [{"name": "CenterCrop", "params": {"sise": 8}}]}, "eval_transforms[0].params.sise",
     ["size"]),
    ({"transforms": "RandomHorizontalFlip"}, "transforms", ["list"]),
    ({"pil_ops": [{"name": "rotat", "params": {"angle": 3}}]}, "pil_ops[0].name", ["rotate"]),
    ({"pil_ops": [{"name": "rotate"}]}, "pil_ops[0].params", ["angle"]),
    ({"pil_ops": [{"name": "transpose", "params": {"method": "FLIP"}}]}, "pil_ops[0].params", ["FLIP_LEFT_RIGHT"]),
    ({"pil_ops": [{"name": "filter", "params": {"name": "BLURRY"}}]}, "pil_ops[0].params", ["BLUR"]),
    ({"early_stopping": {"monitor": "val_acc"}}, "early_stopping.monitor", ["val_accuracy"]),
    ({"early_stopping": {"mode": "up"}}, "early_stopping.mode", ["min", "max"]),
    ({"trainer": {"acelerator": "cpu"}}, "trainer.acelerator", ["accelerator"]),
    ({"trainer": {"accelerator": "gpus"}}, "trainer.accelerator", ["gpu"]),
    ({"trainer": {"strategy": "dpp"}}, "trainer.strategy", ["ddp"]),
    ({"trainer": {"precision": "16-mix"}}, "trainer.precision", ["16-mixed"]),
    ({"trainer": {"devices": 0}}, "trainer.devices", ["count"]),
    ({"trainer": {"num_nodes": 0}}, "trainer.num_nodes", ["positive"]),
]


def test_enough_malformed_commands():
    assert len(BAD) >= 30


@pytest.mark.parametrize("over,path,words", BAD, ids=[f"{i:02d}-{b[1]}" for i, b in enumerate(BAD)])
def test_malformed_command_is_rejected_clearly(over, path, words, shapes_dir, runlog):
    from workbench import jobs

    d = fast_command(**over)
    with pytest.raises(ConfigError) as ei:
        jobs.start_training(d, data=shapes_dir, log=runlog)
    err = ei.value
    assert isinstance(err, ValueError)
    assert err.path == path, str(err)
    msg = str(err)
    assert msg.startswith(path + ":"), msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert runlog.runs() == []  # a rejected command creates no run


def test_error_carries_value_and_allowed():
    with pytest.raises(ConfigError) as ei:
        TrainingCommand.from_dict(fast_command(optimizer={"name": "Adamm"})).validate()
    e = ei.value
    assert e.value == "Adamm" and "Adam" in e.allowed and e.suggestions[0] == "Adam"


def test_data_errors_create_no_run(shapes_dir, runlog, tmp_path):
    from workbench import jobs

    with pytest.raises(ConfigError, match="^data: no dataset"):
        jobs.start_training(fast_command(), log=runlog)
    with pytest.raises(ConfigError, match="does not exist"):
        jobs.start_training(fast_command(), data=tmp_path / "nope", log=runlog)
    with pytest.raises(ConfigError) as ei:
        jobs.start_training(fast_command(labels=["circle", "sqaure"]), data=shapes_dir, log=runlog)
    assert ei.value.path == "labels[1]" and "square" in str(ei.value)
    (tmp_path / "one" / "a").mkdir(parents=True)
    import shutil

    shutil.copy(shapes_dir / "circle" / "0000.png", tmp_path / "one" / "a" / "x.png")
    with pytest.raises(ConfigError, match="at least 2"):
        jobs.start_training(fast_command(), data=tmp_path / "one", log=runlog)
    assert runlog.runs() == []


def test_json_errors():
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainingCommand.from_json("{'epochs': 3}")
    with pytest.raises(ConfigError, match="JSON object"):
        TrainingCommand.from_dict([1, 2])


def test_validation_leaves_the_global_rng_alone():
    import torch

    torch.manual_seed(5)
    a = torch.rand(3)
    torch.manual_seed(5)
    TrainingCommand.from_dict(fast_command(transforms=[{"name": "RandomHorizontalFlip"}])).validate(4)
    assert torch.equal(torch.rand(3), a)  # dry runs drew from a forked RNG
