"""MAML maths: plain gradient at 0 steps, second order vs finite differences, first order,
vmap = loop, the cheaper BatchNorm, Meta-SGD, and validation under inference mode."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from workbench.learners.maml import (MAML, TransductiveBatchNorm2d, meta_loss, task_loss,
                                     use_fast_batchnorm)
from workbench.nets.backbones import conv4


def _tiny(seed=0, fast=False):
    torch.manual_seed(seed)
    net = conv4(1, 3, hidden=3, image_size=16, track_running_stats=False).double()
    if fast:
        use_fast_batchnorm(net)
    return net


def _batch(b=2, n=3, k=2, q=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(b, n * k, 1, 16, 16, generator=g, dtype=torch.double)
    qx = torch.rand(b, n * q, 1, 16, 16, generator=g, dtype=torch.double)
    sy = torch.arange(n).repeat_interleave(k).repeat(b, 1)
    qy = torch.arange(n).repeat_interleave(q).repeat(b, 1)
    return sx, sy, qx, qy


def _meta_grad(net, batch, steps, lr, first_order, mode="loop"):
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    loss, _ = meta_loss(net, params, *batch, steps, lr, first_order, None, mode)
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.detach(), dict(zip(params, grads))


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_zero_inner_steps_is_the_plain_gradient(mode):
    net = _tiny()
    batch = _batch()
    loss, g = _meta_grad(net, batch, steps=0, lr=0.5, first_order=False, mode=mode)
    sx, sy, qx, qy = batch
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    plain = torch.stack([F.cross_entropy(functional_call(net, params, (qx[i],)), qy[i]) for i in range(2)]).mean()
    ref = torch.autograd.grad(plain, list(params.values()))
    assert torch.allclose(loss, plain.detach())
    for a, b in zip(g.values(), ref):
        assert torch.allclose(a, b, atol=1e-12)


def _loss_at(net, params, batch, steps, lr):
    """The true (second-order) meta-loss as a function of the initial weights."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss, _ = meta_loss(net, p, *batch, steps, lr, False, None, "loop")
    return float(loss.detach())


@pytest.mark.parametrize("fast", [False, True])
def test_second_order_meta_gradient_matches_finite_differences(fast):
    net = _tiny(fast=fast)
    batch = _batch()
    steps, lr = 2, 0.3
    _, g = _meta_grad(net, batch, steps, lr, first_order=False)
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    eps = 1e-6
    checked = 0
    for name in ("features.0.0.weight", "features.1.1.weight", "features.3.0.bias", "head.weight", "head.bias"):
        flat = params[name].view(-1)
        for i in torch.randint(0, flat.numel(), (3,), generator=gen).tolist():
            old = float(flat[i])
            flat[i] = old + eps
            up = _loss_at(net, params, batch, steps, lr)
            flat[i] = old - eps
            down = _loss_at(net, params, batch, steps, lr)
            flat[i] = old
            fd = (up - down) / (2 * eps)
            an = float(g[name].view(-1)[i])
            assert abs(fd - an) <= 1e-6 + 1e-5 * abs(fd), (name, i, fd, an)
            checked += 1
    assert checked == 15


def test_first_order_differs_from_second_order_as_expected():
    net = _tiny()
    batch = _batch()
    steps, lr = 1, 0.4
    _, so = _meta_grad(net, batch, steps, lr, first_order=False)
    _, fo = _meta_grad(net, batch, steps, lr, first_order=True)
    rel = max(float((so[k] - fo[k]).norm() / so[k].norm()) for k in so)
    assert rel > 1e-3  # the Hessian term matters
    # FOMAML's gradient is exactly the query gradient at the adapted weights
    sx, sy, qx, qy = batch
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    expect = {k: torch.zeros_like(v) for k, v in params.items()}
    for i in range(2):
        sl = F.cross_entropy(functional_call(net, params, (sx[i],)), sy[i])
        gs = torch.autograd.grad(sl, list(params.values()))
        adapted = {k: (v - lr * gi).detach().requires_grad_(True) for (k, v), gi in zip(params.items(), gs)}
        ql = F.cross_entropy(functional_call(net, adapted, (qx[i],)), qy[i]) / 2
        for k, gq in zip(adapted, torch.autograd.grad(ql, list(adapted.values()))):
            expect[k] += gq
    for k in fo:
        assert torch.allclose(fo[k], expect[k], atol=1e-10)
    # The two modes agree on the loss itself (same adapted weights)
    l_so, _ = _meta_grad(net, batch, steps, lr, first_order=False)
    l_fo, _ = _meta_grad(net, batch, steps, lr, first_order=True)
    assert torch.allclose(l_so, l_fo)


@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_equals_loop(first_order):
    # With the plain-ops BatchNorm: vmap over nn.BatchNorm2d's double backward is off by ~1%
    # in this torch (checked below), which is why MAML refuses vmap without fast_bn.
    net = _tiny(fast=True)
    batch = _batch(b=3)
    l1, g1 = _meta_grad(net, batch, 2, 0.3, first_order, "loop")
    l2, g2 = _meta_grad(net, batch, 2, 0.3, first_order, "vmap")
    assert torch.allclose(l1, l2, atol=1e-10)
    for k in g1:
        assert torch.allclose(g1[k], g2[k], atol=1e-9), k


def test_vmap_needs_the_plain_ops_batchnorm():
    net = _tiny(fast=False)
    batch = _batch(b=3)
    _, g_loop = _meta_grad(net, batch, 2, 0.3, False, "loop")
    _, g_vmap = _meta_grad(net, batch, 2, 0.3, False, "vmap")
    with pytest.raises(ValueError, match="fast_bn"):
        MAML(n_way=3, image_size=16, hidden=4, fast_bn=False, vectorize="vmap")
    MAML(n_way=3, image_size=16, hidden=4, fast_bn=False, vectorize="loop")
    if torch.allclose(g_loop["features.0.0.weight"], g_vmap["features.0.0.weight"], atol=1e-6):
        pytest.skip("this torch's vmap over nn.BatchNorm2d double backward is right: the guard could go")


def test_fast_batchnorm_is_the_same_maths():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4, track_running_stats=False).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    fast = TransductiveBatchNorm2d(4, track_running_stats=False).double()
    fast.load_state_dict(bn.state_dict())
    x = torch.randn(6, 4, 5, 5, dtype=torch.double)
    assert torch.allclose(bn(x), fast(x), atol=1e-10)
    a, b = _tiny(fast=False), _tiny(fast=True)
    assert set(a.state_dict()) == set(b.state_dict())  # checkpoints interchangeable
    batch = _batch()
    la, ga = _meta_grad(a, batch, 1, 0.4, False)
    lb, gb = _meta_grad(b, batch, 1, 0.4, False)
    assert torch.allclose(la, lb, atol=1e-10)
    for k in ga:
        assert torch.allclose(ga[k], gb[k], atol=1e-8), k


def test_meta_sgd_learns_inner_rates_and_module_steps():
    torch.manual_seed(0)
    m = MAML(n_way=3, image_size=16, hidden=4, learn_inner_lr=True, inner_lr=0.1, vectorize="loop")
    sx, sy, qx, qy = (t.float() if t.is_floating_point() else t for t in _batch())
    loss = m.training_step((sx, sy, qx, qy), 0)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.inner_lrs.values())
    assert torch.allclose(m.lrs()["head.weight"], torch.full_like(m.net.head.weight, 0.1))


def test_validate_and_test_work_under_lightnings_inference_mode():
    """A user's default Trainer (inference_mode=True) must not break MAML's adaptation."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    m = MAML(n_way=3, image_size=16, hidden=4, test_inner_steps=2)
    sx, sy, qx, qy = (t.float() if t.is_floating_point() else t for t in _batch(b=4))
    dl = DataLoader(TensorDataset(sx, sy, qx, qy), batch_size=2)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    assert trainer.test_loop.inference_mode  # Lightning's default: test_step runs under inference_mode
    res = trainer.test(m, dataloaders=dl, verbose=False)
    assert 0.0 <= res[0]["test_accuracy"] <= 1.0
    assert len(m.test_episode_accuracies) == 4
    with pytest.raises(ValueError, match="5-way"):
        m.task_logits(torch.rand(5, 1, 16, 16), torch.arange(5), torch.rand(5, 1, 16, 16), 5)


def test_adaptation_improves_on_the_support_set():
    net = _tiny()
    sx, sy, qx, qy = _batch(b=1, k=4)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
    before, _ = task_loss(net, params, sx[0], sy[0], sx[0], sy[0], 0, 0.5)
    after, _ = task_loss(net, params, sx[0], sy[0], sx[0], sy[0], 5, 0.5)
    assert float(after) < float(before)


def test_auto_batchnorm_swaps_in_for_vmap_keeping_the_parameters():
    from workbench.learners.maml import has_native_batchnorm

    torch.manual_seed(0)
    m = MAML(n_way=3, image_size=16, hidden=4, vectorize="vmap")
    assert has_native_batchnorm(m.net)  # fused BatchNorm until vmap needs the plain-ops one
    before = {id(p) for p in m.parameters()}
    opt = m.configure_optimizers()
    sx, sy, qx, qy = (t.float() if t.is_floating_point() else t for t in _batch())
    m.training_step((sx, sy, qx, qy), 0).backward()
    assert not has_native_batchnorm(m.net)
    assert {id(p) for p in m.parameters()} == before  # the optimizer still owns every weight
    assert all(p.grad is not None for g in opt.param_groups for p in g["params"])
