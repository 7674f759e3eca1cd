"""Task-parallel MAML on CPU (issue 17): the channels-last Conv-4 function computes what the module
computes, the task pool's meta-gradient equals the sequential loop's, and it is bit-identical for
any number of workers — so a run's numbers do not depend on the cores it happened to get."""
from __future__ import annotations

import threading

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.func import functional_call

from workbench.learners import taskparallel
from workbench.learners.fastconv import channels_last, conv4_function
from workbench.learners.maml import MAML, meta_loss
from workbench.nets.backbones import conv4


@pytest.fixture(autouse=True)
def _four_workers(monkeypatch):
    monkeypatch.setenv("WORKBENCH_THREADS", "4")  # a pool with real concurrency (the suite caps jobs at 1)


def _net(dtype=torch.float32, hidden=6, n_out=5, size=28, seed=0):
    torch.manual_seed(seed)
    return conv4(1, n_out, hidden, size, track_running_stats=False).to(dtype)


def _batch(b=5, n=5, q=3, size=28, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(b, n, 1, size, size, generator=g).to(dtype)
    qx = torch.rand(b, n * q, 1, size, size, generator=g).to(dtype)
    return sx, torch.arange(n).repeat(b, 1), qx, torch.arange(n).repeat_interleave(q).repeat(b, 1)


def _meta_grad(net, params, batch, mode, parallel=None, first_order=False, lrs=None, steps=1):
    p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    leaves = list(p.values())
    lr = None
    if lrs is not None:
        lr = {k: v.detach().clone().requires_grad_(True) for k, v in lrs.items()}
        leaves += list(lr.values())
    loss, acc = meta_loss(net, p, *batch, steps, 0.4, first_order, lr, mode, parallel)
    return loss.detach(), acc, torch.autograd.grad(loss, leaves)


def _rel(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b)) / max(y.abs().max().item() for y in b)


def test_channels_first_function_is_the_module_bit_for_bit():
    net = _net()
    x = torch.rand(7, 1, 28, 28)
    params = dict(net.named_parameters())
    fwd = conv4_function(net, "channels_first")
    assert torch.equal(fwd(params, x), net(x))
    g_mod = torch.autograd.grad(net(x).square().sum(), list(params.values()))
    g_fun = torch.autograd.grad(fwd(params, x).square().sum(), list(params.values()))
    assert all(torch.equal(a, b) for a, b in zip(g_mod, g_fun))


def test_channels_last_function_matches_the_module_and_is_channels_last():
    net = _net(torch.float64)
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    params = dict(net.named_parameters())
    assert torch.allclose(conv4_function(net)(params, x), net(x), rtol=0, atol=1e-12)
    v = channels_last(x)
    assert v.data_ptr() == x.data_ptr() and v.stride() == (784, 1, 28, 1) and torch.equal(v, x)  # a view
    rgb = channels_last(torch.rand(2, 3, 5, 5))
    assert rgb.is_contiguous(memory_format=torch.channels_last)


def test_only_a_conv4_gets_a_function():
    assert conv4_function(torch.nn.Linear(3, 3)) is None
    assert conv4_function(_net(), "sideways") is None


def test_a_running_stats_net_gets_its_training_mode_forward_and_buffers_stay_untouched():
    torch.manual_seed(0)
    net = conv4(1, 0, 4, 28, track_running_stats=True).double().train()
    x = torch.rand(9, 1, 28, 28, dtype=torch.double)
    before = {k: v.clone() for k, v in net.named_buffers()}
    stats: list = []
    out = conv4_function(net)(dict(net.named_parameters()), x, stats)
    assert all(torch.equal(v, before[k]) for k, v in net.named_buffers())  # the function never writes them
    ref = net(x)  # the module's training-mode forward (updates its running statistics)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn, (mean, var), k in zip(bns, stats, range(4)):
        m = bn.momentum  # running = (1 - m) * before + m * batch statistic
        assert torch.allclose(bn.running_mean, (1 - m) * before[f"features.{k}.1.running_mean"] + m * mean, atol=1e-12)
        assert torch.allclose(bn.running_var, (1 - m) * before[f"features.{k}.1.running_var"] + m * var, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_task_pool_meta_gradient_equals_the_sequential_loop(first_order):
    """The issue's check: the task-parallel meta-gradient equals the sequential loop's to 1e-6."""
    net = _net()
    fwd, params, batch = conv4_function(net), dict(net.named_parameters()), _batch()
    loss_seq, acc_seq, g_seq = _meta_grad(fwd, params, batch, "loop", first_order=first_order)
    loss_par, acc_par, g_par = _meta_grad(fwd, params, batch, "threads", parallel=2, first_order=first_order)
    assert abs(float(loss_par) - float(loss_seq)) <= 1e-6 * abs(float(loss_seq))
    assert float(acc_par) == float(acc_seq)
    assert _rel(g_par, g_seq) < 1e-6


def test_task_pool_meta_gradient_equals_the_old_module_loop_in_double():
    """Against the old path (functional_call on the module, channels-first) the maths is the same."""
    net = _net(torch.float64)
    params, batch = dict(net.named_parameters()), _batch(dtype=torch.float64)
    _, _, g_old = _meta_grad(net, params, batch, "loop", steps=2)
    _, _, g_new = _meta_grad(conv4_function(net), params, batch, "threads", parallel=3, steps=2)
    assert _rel(g_new, g_old) < 1e-10


def test_meta_sgd_inner_rates_get_their_meta_gradient_on_the_pool():
    net = _net()
    fwd, params, batch = conv4_function(net), dict(net.named_parameters()), _batch(b=3)
    lrs = {k: torch.full_like(v, 0.3) for k, v in params.items()}
    _, _, g_seq = _meta_grad(fwd, params, batch, "loop", lrs=lrs)
    _, _, g_par = _meta_grad(fwd, params, batch, "threads", parallel=2, lrs=lrs)
    assert len(g_par) == 2 * len(params) and _rel(g_par, g_seq) < 1e-6
    assert all(g.abs().sum() > 0 for g in g_par[len(params):])  # the inner rates learn


def test_the_pool_gives_the_same_bits_for_any_number_of_workers():
    net = _net()
    fwd, params, batch = conv4_function(net), dict(net.named_parameters()), _batch(b=6)
    runs = [_meta_grad(fwd, params, batch, "threads", parallel=k) for k in (1, 2, 3, 6)]
    for loss, acc, grads in runs[1:]:
        assert torch.equal(loss, runs[0][0]) and torch.equal(acc, runs[0][1])
        assert all(torch.equal(a, b) for a, b in zip(grads, runs[0][2]))


def test_the_pool_needs_a_thread_safe_function_not_a_module():
    net = _net()
    with pytest.raises(TypeError, match="functional_call is not thread-safe"):
        meta_loss(net, dict(net.named_parameters()), *_batch(b=2), 1, 0.4, vectorize="threads")


def test_with_gradients_keeps_the_value_and_writes_exactly_the_given_gradients():
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, 2, requires_grad=True)
    ga, gb = torch.randn(3), torch.randn(2, 2)
    value = torch.tensor(1.2345)
    loss = taskparallel.with_gradients(value, [a, b], [ga, gb])
    assert torch.equal(loss.detach(), value)
    loss.backward()
    assert torch.equal(a.grad, ga) and torch.equal(b.grad, gb)


def test_pool_workers_run_with_one_intra_op_thread_whatever_other_threads_set():
    torch.set_num_threads(2)  # another job's count, set after the pool may have started
    try:
        seen = taskparallel.run_tasks(lambda i: (torch.rand(100_000).sum(), torch.get_num_threads())[1], 4, 2)
    finally:
        torch.set_num_threads(1)
    assert seen == [1, 1, 1, 1]


def test_a_failing_task_raises_in_the_caller():
    def boom(i):
        if i == 2:
            raise RuntimeError("task 2 failed")
        return i

    with pytest.raises(RuntimeError, match="task 2 failed"):
        taskparallel.run_tasks(boom, 5, 2)


class _ThreadProbe(pl.Callback):
    """Records the intra-op thread count of the job's own thread during training."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def on_train_batch_start(self, *args) -> None:
        self.seen.add(torch.get_num_threads())


def test_maml_trains_on_the_pool_with_the_same_losses_at_one_and_two_threads(small_glyphs, runlog):
    """A MAML run's numbers do not depend on its thread count (vectorize auto = the task pool):
    the record's ``threads`` is only how fast it went."""
    from workbench.fewshot import train_from_command

    cmd = {"kind": "maml", "seed": 1, "episodes": {"n_way": 3, "k_shot": 1, "q_query": 2, "meta_batch": 4},
           "model": {"params": {"hidden": 4}}, "steps": 4, "val_every": 2, "val_episodes": 4, "test_episodes": 0,
           "glyphs": {"alphabets": ["Latin", "Greek", "Cyrillic", "Armenian"], "max_per_alphabet": 12}}
    curves, probes = [], []
    for threads in (1, 2):
        probes.append(_ThreadProbe())
        rid = train_from_command({**cmd, "threads": threads}, data=small_glyphs, log=runlog, callbacks=[probes[-1]])
        rec = runlog.get(rid)
        assert rec["runtime"] == {"threads": threads}
        curves.append([(m.get("train_loss"), m.get("val_accuracy")) for m in rec["metrics"]])
    assert len(curves[0]) >= 4 and curves[0] == curves[1]
    assert [p.seen for p in probes] == [{1}, {1}]  # the job thread steps aside while its tasks run on the pool
    assert torch.get_num_threads() == 1  # and the caller's count is back


def test_maml_scores_evaluation_tasks_on_the_pool_like_one_by_one(monkeypatch):
    model = MAML(n_way=5, hidden=4, test_inner_steps=2)
    batch = _batch(b=4)
    par = model.evaluate_batch(batch)
    monkeypatch.setattr(MAML, "parallel_tasks", False)
    seq = model.evaluate_batch(batch)  # in this thread, one intra-op thread (the fixture's)
    assert torch.equal(par[0], seq[0]) and torch.equal(par[1], seq[1])


def test_the_function_reads_only_its_arguments_while_another_thread_swaps_the_module():
    """Why the pool runs ``conv4_function``: ``functional_call`` swaps tensors into the one shared
    module, so two threads calling it would see each other's weights."""
    net = _net()
    fwd = conv4_function(net)
    mine = {k: v.detach().clone() for k, v in net.named_parameters()}
    other = {k: v * 0 for k, v in mine.items()}
    x = torch.rand(4, 1, 28, 28)
    ref = fwd(mine, x)
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            functional_call(net, other, (x[:1],))

    t = threading.Thread(target=swapper)
    t.start()
    try:
        outs = [fwd(mine, x) for _ in range(20)]
    finally:
        stop.set()
        t.join()
    assert all(torch.equal(o, ref) for o in outs)


def _protonet_batch(b=3, n=4, q=2, seed=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(b, n, 1, 28, 28, generator=g).to(dtype)
    qx = torch.rand(b, n * q, 1, 28, 28, generator=g).to(dtype)
    return sx, torch.arange(n).repeat(b, 1), qx, torch.arange(n).repeat_interleave(q).repeat(b, 1)


def _protonet_step(model, batch):
    loss = model.training_step(batch, 0)
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    return loss.detach(), grads, {k: v.clone() for k, v in model.encoder.named_buffers()}


def test_protonet_step_is_each_task_as_its_own_batchnorm_batch(monkeypatch):
    """The pooled step equals, in double precision, the module's own training-mode passes task by
    task: the mean of the tasks' losses, their gradients, and the running statistics they leave."""
    from workbench.learners.protonet import ProtoNet, proto_logits, prototypes

    monkeypatch.setattr(ProtoNet, "log", lambda *a, **k: None)  # no Trainer attached
    torch.manual_seed(0)
    model = ProtoNet(hidden=4).double().train()
    ref_model = ProtoNet(hidden=4).double().train()
    ref_model.load_state_dict(model.state_dict())
    batch = _protonet_batch(dtype=torch.double)
    loss, grads, buffers = _protonet_step(model, batch)
    sx, sy, qx, qy = batch
    losses = []
    for i in range(sx.shape[0]):  # the reference: one module forward per task, in order
        z = ref_model.encoder(torch.cat([sx[i], qx[i]]))
        logits = proto_logits(z[sx.shape[1]:], prototypes(z[: sx.shape[1]], sy[i], int(sy[i].max()) + 1))
        losses.append(F.cross_entropy(logits, qy[i]))
    ref_loss = torch.stack(losses).mean()
    ref_grads = torch.autograd.grad(ref_loss, list(ref_model.encoder.parameters()))
    assert torch.allclose(loss, ref_loss.detach(), rtol=1e-12)
    assert _rel(grads, ref_grads) < 1e-10
    for k, v in ref_model.encoder.named_buffers():
        assert torch.allclose(buffers[k].double(), v.double(), rtol=1e-12, atol=1e-12), k


def test_protonet_step_gives_the_same_bits_for_any_number_of_workers(monkeypatch):
    from workbench.learners.protonet import ProtoNet

    monkeypatch.setattr(ProtoNet, "log", lambda *a, **k: None)
    batch = _protonet_batch(b=4)
    runs = []
    for workers in (1, 2, 4):
        torch.manual_seed(0)
        model = ProtoNet(hidden=4).train()
        monkeypatch.setattr(taskparallel, "job_parallelism", lambda w=workers: w)
        runs.append(_protonet_step(model, batch))
    for loss, grads, buffers in runs[1:]:
        assert torch.equal(loss, runs[0][0])
        assert all(torch.equal(a, b) for a, b in zip(grads, runs[0][1]))
        assert all(torch.equal(buffers[k], runs[0][2][k]) for k in buffers)
