"""Layer lists → nn.Sequential: "auto" across layer types, "n_labels", presets, shape errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.registry import ConfigError
from workbench.nets.builder import build_model, count_parameters


def test_auto_across_layer_types():
    spec = [
        {"name": "Conv2d", "params": {"in_channels": "auto", "out_channels": 8, "kernel_size": 3}},  # 3 → 8, 30×30
        {"name": "BatchNorm2d", "params": {"num_features": "auto"}},
        {"name": "GroupNorm", "params": {"num_groups": 2, "num_channels": "auto"}},
        {"name": "PReLU", "params": {"num_parameters": "auto"}},
        {"name": "MaxPool2d", "params": {"kernel_size": 2}},  # 15×15
        {"name": "Flatten"},  # 8·15·15 = 1800
        {"name": "Linear", "params": {"in_features": "auto", "out_features": 20}},
        {"name": "LayerNorm", "params": {"normalized_shape": "auto"}},
        {"name": "BatchNorm1d", "params": {"num_features": "auto"}},
        {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}},
    ]
    model, shapes = build_model(spec, n_labels=7, in_shape=(3, 32, 32), return_shapes=True)
    assert isinstance(model, nn.Sequential) and len(model) == len(spec)
    assert model[0].in_channels == 3 and model[1].num_features == 8 and model[2].num_channels == 8
    assert model[3].num_parameters == 8
    assert model[6].in_features == 8 * 15 * 15  # found through Flatten, not copied from a same-type layer
    assert tuple(model[7].normalized_shape) == (20,) and model[8].num_features == 20
    assert model[9].in_features == 20 and model[9].out_features == 7
    assert [s["out_shape"] for s in shapes][5] == (1, 1800)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 7)
    assert model.training  # returned ready to train


def test_missing_size_param_is_inferred_and_grayscale_works():
    spec = ["Flatten", {"name": "Linear", "params": {"out_features": 16}}, "ReLU",
            {"name": "Linear", "params": {"out_features": "n_labels"}}]
    model = build_model(spec, n_labels=3, in_shape=(1, 10, 12))
    assert model[1].in_features == 120 and model[3].in_features == 16


def test_conv1d_after_flatten_to_sequence():
    spec = [{"name": "Conv2d", "params": {"out_channels": 4, "kernel_size": 1}},
            {"name": "Flatten", "params": {"start_dim": 2}},  # (N, 4, H·W)
            {"name": "Conv1d", "params": {"in_channels": "auto", "out_channels": 6, "kernel_size": 3}},
            {"name": "AdaptiveAvgPool1d", "params": {"output_size": 1}}, "Flatten",
            {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}}]
    model = build_model(spec, n_labels=2, in_shape=(3, 8, 8))
    assert model[2].in_channels == 4 and model[5].in_features == 6


@pytest.mark.parametrize("preset,params", [("small_cnn", {"hidden": 8}), ("conv4", {"hidden": 8}),
                                           ("resnet18", {})])
def test_presets_get_channels_and_classes_from_the_data(preset, params):
    model = build_model({"preset": preset, "params": params}, n_labels=5, in_shape=(1, 28, 28))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
    assert count_parameters(model) > 0


def test_resnet_weights_only_from_a_local_file(tmp_path):
    with pytest.raises(ConfigError, match="weights are never downloaded"):
        build_model({"preset": "resnet18", "params": {"weights_path": str(tmp_path / "none.pth")}}, 3, (3, 32, 32))


def test_shape_error_names_layer_index_and_shapes():
    spec = [{"name": "Conv2d", "params": {"out_channels": 8, "kernel_size": 3}},
            {"name": "Conv2d", "params": {"in_channels": 4, "out_channels": 8, "kernel_size": 3}}]
    with pytest.raises(ConfigError) as ei:
        build_model(spec, n_labels=2, in_shape=(3, 16, 16))
    assert ei.value.path == "model.layers[1]" and "(1, 8, 14, 14)" in str(ei.value)


def test_missing_flatten_is_explained():
    spec = [{"name": "Conv2d", "params": {"out_channels": 2, "kernel_size": 3}},
            {"name": "Linear", "params": {"in_features": "auto", "out_features": "n_labels"}}]
    with pytest.raises(ConfigError) as ei:
        build_model(spec, n_labels=2, in_shape=(3, 8, 8))
    assert ei.value.path == "model.layers[1].params.in_features"
    assert "Flatten" in str(ei.value) and "in_features = 72" in str(ei.value)


def test_wrong_output_size_is_reported():
    with pytest.raises(ConfigError, match=r"outputs shape \(1, 3, 8, 8\).*\(N, 2\).*Flatten"):
        build_model(["ReLU"], n_labels=2, in_shape=(3, 8, 8))
