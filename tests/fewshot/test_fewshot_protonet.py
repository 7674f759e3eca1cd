"""ProtoNet: prototypes are class means, logits are negative squared distances."""
from __future__ import annotations

import torch

from workbench.learners.finetune import fit_head
from workbench.learners.protonet import ProtoNet, proto_logits, prototypes


def test_logits_are_negative_squared_distances_to_prototypes():
    torch.manual_seed(0)
    zs = torch.randn(6, 5)
    ys = torch.tensor([0, 0, 1, 1, 2, 2])
    zq = torch.randn(4, 5)
    p = prototypes(zs, ys, 3)
    for c in range(3):
        assert torch.allclose(p[c], zs[ys == c].mean(0))
    logits = proto_logits(zq, p)
    expect = -torch.cdist(zq, p) ** 2
    assert torch.allclose(logits, expect, atol=1e-5)
    assert logits.argmax(-1).tolist() == torch.cdist(zq, p).argmin(-1).tolist()
    # batched over tasks too
    bl = proto_logits(zq[None].repeat(2, 1, 1), prototypes(zs[None].repeat(2, 1, 1), ys[None].repeat(2, 1), 3))
    assert torch.allclose(bl[1], logits, atol=1e-5)


def test_module_scores_queries_by_nearest_prototype():
    torch.manual_seed(0)
    m = ProtoNet(hidden=4, image_size=16).eval()
    sx = torch.rand(3, 1, 16, 16)
    logits = m.task_logits(sx, torch.arange(3), sx, 3)
    assert logits.shape == (3, 3) and logits.argmax(-1).tolist() == [0, 1, 2]  # a support image is its own prototype
    assert torch.allclose(logits.diagonal(), torch.zeros(3), atol=1e-4)


def test_finetune_head_fits_the_support_set():
    torch.manual_seed(0)
    z = torch.randn(10, 8)
    y = torch.arange(5).repeat(2)
    head = fit_head(z, y, 5, steps=200, lr=0.05)
    assert (head(z).argmax(-1) == y).all()
