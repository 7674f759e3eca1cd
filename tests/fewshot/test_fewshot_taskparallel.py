"""Task-parallel MAML on CPU (issue 17): the channels-last Conv-4 function computes what the module
computes, the task pool's meta-gradient equals the sequential loop's, and it is bit-identical for
any number of workers — so a run's numbers do not depend on the cores it happened to get."""
from __future__ import annotations

import threading

import pytest
import pytorch_lightning as pl
import torch
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


def test_only_a_transductive_conv4_gets_a_function():
    assert conv4_function(conv4(1, 5, 4, 28, track_running_stats=True)) is None  # running stats: module state
    assert conv4_function(torch.nn.Linear(3, 3)) is None
    assert conv4_function(_net(), "sideways") is None


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
