"""MAML (Finn et al. 2017), first-order MAML and Meta-SGD, written functionally with ``torch.func``.

The network is an ordinary ``nn.Module`` (Conv-4 by default); its weights are passed around
as a ``{name: tensor}`` dict and applied with ``torch.func.functional_call``, so the inner
loop never mutates the module:

    adapted = params - inner_lr · ∇_params L_support(params)          (× inner_steps)
    meta-loss = L_query(adapted)                                        (mean over tasks)

- **Second order**: the inner gradient stays in the autograd graph, so the meta-gradient
  includes the Hessian-vector term ``(I - α ∇²L_support) ∇L_query``.
- **First order** (FOMAML): the inner gradient is a constant (taken at detached weights),
  so the meta-gradient is the query gradient at the adapted weights.
- **Meta-SGD**: a learned inner learning rate per parameter element (``learn_inner_lr``).

Tasks of a meta-batch run in one of three ways (``vectorize``):

- ``threads`` — task-parallel on a shared pool of single-threaded workers
  (:mod:`.taskparallel`), each task's meta-gradient on its own, summed in task order: the same
  numbers for any number of workers or any load. The network runs as a pure function of its
  weights in channels-last layout (:mod:`.fastconv`). ``auto`` picks it on CPU.
- ``loop`` — the same per-task maths one task after another in the calling thread (one
  backward over the mean), with the caller's intra-op threads.
- ``vmap`` — ``torch.func.vmap`` over ``torch.func.grad``; ``auto`` picks it on CUDA.

See ``benchmarks/bench_maml.py`` for the measurements behind ``auto``.

**Transductive BatchNorm** as in the original code: BatchNorm layers keep no running
statistics (``track_running_stats=False``) and always normalise with the statistics of the
batch at hand — the support set during adaptation, the query set when scoring. Query
accuracy therefore depends on the whole query set being scored together (as in the papers).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..nets.backbones import conv4
from . import taskparallel
from .episodic import EpisodicModule, Scorer
from .fastconv import conv4_function

Params = dict[str, torch.Tensor]
#: A network as a function of its weights: ``forward(params, x) -> logits``.
Forward = Callable[[Params, torch.Tensor], torch.Tensor]
VECTORIZE = ("auto", "threads", "loop", "vmap")


def as_forward(net: nn.Module | Forward) -> Forward:
    """``net`` as ``forward(params, x)``: a module runs through ``functional_call``; a function as is."""
    if isinstance(net, nn.Module):
        module = net
        return lambda p, x: functional_call(module, p, (x,))
    return net


def _loss_fn(net: nn.Module | Forward) -> Callable[[Params, torch.Tensor, torch.Tensor], torch.Tensor]:
    fwd = as_forward(net)

    def loss(p: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(fwd(p, x), y)
    return loss


def inner_adapt(net: nn.Module | Forward, params: Params, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float,
                first_order: bool = False, lrs: Mapping[str, torch.Tensor] | None = None,
                functional: bool = True) -> Params:
    """Adapted weights after ``steps`` gradient steps on ``(x, y)``.

    ``net``: a module or a ``forward(params, x)`` function (:func:`.fastconv.conv4_function`).
    ``functional=True`` uses ``torch.func.grad`` (composable with ``vmap``); ``False`` uses
    ``torch.autograd.grad`` with ``create_graph`` (the plain per-task baseline).
    ``lrs`` (Meta-SGD) gives a per-element learning rate for each parameter.
    """
    loss = _loss_fn(net)
    for _ in range(steps):
        if functional:
            if first_order:
                # Gradient at detached weights: a constant for the outer graph (and cheaper).
                g = grad(loss)({k: v.detach() for k, v in params.items()}, x, y)
            else:
                g = grad(loss)(params, x, y)
        else:
            names = list(params)
            ys = loss(params, x, y)
            gs = torch.autograd.grad(ys, [params[k] for k in names], create_graph=not first_order)
            g = {k: (gi.detach() if first_order else gi) for k, gi in zip(names, gs)}
        params = {k: params[k] - (lrs[k] if lrs is not None else lr) * g[k] for k in params}
    return params


def task_loss(net: nn.Module | Forward, params: Params, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
              qy: torch.Tensor, steps: int, lr: float, first_order: bool = False,
              lrs: Mapping[str, torch.Tensor] | None = None, functional: bool = True):
    """Query ``(loss, accuracy)`` of one task after inner adaptation on its support set."""
    adapted = inner_adapt(net, params, sx, sy, steps, lr, first_order, lrs, functional)
    logits = as_forward(net)(adapted, qx)
    return F.cross_entropy(logits, qy), (logits.argmax(-1) == qy).float().mean()


def meta_loss(net: nn.Module | Forward, params: Params, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
              qy: torch.Tensor, steps: int, lr: float, first_order: bool = False,
              lrs: Mapping[str, torch.Tensor] | None = None, vectorize: str = "loop",
              parallel: int | None = None):
    """Mean query loss and accuracy over a meta-batch ``[B, …]`` of tasks.

    ``vectorize="vmap"`` maps :func:`task_loss` over tasks with ``torch.func.vmap``;
    ``"loop"`` runs tasks one by one with ``torch.autograd.grad``; ``"threads"`` runs them on
    the task pool (``parallel`` at once, default every core) and returns a loss whose
    backward gives the meta-gradient computed there (:func:`.taskparallel.with_gradients`).
    """
    if vectorize == "vmap":
        def one(sx_, sy_, qx_, qy_):
            return task_loss(net, params, sx_, sy_, qx_, qy_, steps, lr, first_order, lrs, functional=True)
        losses, accs = vmap(one)(sx, sy, qx, qy)
        return losses.mean(), accs.mean()
    if vectorize == "threads":
        return parallel_meta_loss(net, params, (sx, sy, qx, qy), steps, lr, first_order, lrs, parallel)
    if vectorize != "loop":
        raise ValueError(f"vectorize: unknown value {vectorize!r}; allowed: {list(VECTORIZE)}")
    losses, accs = [], []
    for i in range(sx.shape[0]):
        lo, ac = task_loss(net, params, sx[i], sy[i], qx[i], qy[i], steps, lr, first_order, lrs, functional=False)
        losses.append(lo)
        accs.append(ac)
    return torch.stack(losses).mean(), torch.stack(accs).mean()


def parallel_meta_loss(net: nn.Module | Forward, params: Params, batch: tuple[torch.Tensor, ...], steps: int,
                       lr: float, first_order: bool = False, lrs: Mapping[str, torch.Tensor] | None = None,
                       parallel: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`meta_loss` with each task's meta-gradient computed on its own in the task pool.

    ``net`` must be safe to call from several threads at once: a ``forward(params, x)``
    function, not a module (``functional_call`` swaps tensors into the module).
    """
    if isinstance(net, nn.Module):
        raise TypeError("parallel_meta_loss needs forward(params, x), not a module: functional_call is not "
                        "thread-safe on a shared module (use fastconv.conv4_function)")
    sx, sy, qx, qy = batch
    leaves = list(params.values()) + (list(lrs.values()) if lrs is not None else [])
    b = sx.shape[0]

    def one(i: int):
        with torch.enable_grad():
            lo, ac = task_loss(net, params, sx[i], sy[i], qx[i], qy[i], steps, lr, first_order, lrs, functional=False)
            # lo / b: each task's share of the mean, rounded as the mean's own backward rounds it
            gs = torch.autograd.grad(lo / b, leaves, allow_unused=True)
        return gs, lo.detach(), ac.detach()

    out = taskparallel.run_tasks(one, b, taskparallel.parallelism(parallel))
    grads = taskparallel.sum_in_order([o[0] for o in out])
    loss = torch.stack([o[1] for o in out]).mean()
    return taskparallel.with_gradients(loss, leaves, grads), torch.stack([o[2] for o in out]).mean()


class TransductiveBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with batch statistics only, in plain tensor ops.

    Same parameters (``weight``, ``bias``) and outputs as ``nn.BatchNorm2d(track_running_stats=False)``
    in training mode, but its double backward (MAML's second-order term) is a few cheap
    element-wise ops instead of the generic ``native_batch_norm`` double-backward formula.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((0, 2, 3), keepdim=True)
        var = (x - mean).square().mean((0, 2, 3), keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def use_fast_batchnorm(net: nn.Module) -> nn.Module:
    """Replace every transductive ``BatchNorm2d`` of ``net`` by :class:`TransductiveBatchNorm2d` (in place).

    The new layers take over the *same* ``Parameter`` objects, so an optimizer built before
    the swap keeps training them and checkpoints keep their keys.
    """
    for mod in list(net.modules()):
        for name, child in list(mod.named_children()):
            if type(child) is nn.BatchNorm2d and not child.track_running_stats:
                fast = TransductiveBatchNorm2d(child.num_features, eps=child.eps, affine=True,
                                               track_running_stats=False)
                fast.weight, fast.bias = child.weight, child.bias
                setattr(mod, name, fast)
    return net


def has_native_batchnorm(net: nn.Module) -> bool:
    """True if ``net`` still has a transductive ``nn.BatchNorm2d`` (vmap would get it wrong)."""
    return any(type(m) is nn.BatchNorm2d and not m.track_running_stats for m in net.modules())


def resolve_vectorize(vectorize: str, device: torch.device | str) -> str:
    """``auto`` → the faster mode measured on this kind of device (``benchmarks/bench_maml.py``).

    On CPU the task pool won (``threads``: single-threaded workers, channels-last kernels; vmap
    turns each conv into a grouped conv, slow on CPU); on CUDA vmap won (one kernel launch
    covers all tasks).
    """
    if vectorize != "auto":
        return vectorize
    return "vmap" if torch.device(device).type == "cuda" else "threads"


class MAML(EpisodicModule):
    """MAML / first-order MAML / Meta-SGD as a LightningModule over meta-batches of tasks.

    Args:
        n_way: classes per task (the head's width; evaluation uses the same N).
        in_channels, image_size, hidden: Conv-4 shape (32 filters is the CPU default).
        inner_steps, inner_lr: adaptation during meta-training.
        test_inner_steps, test_inner_lr: adaptation at meta-val/test (default: train values).
        first_order: FOMAML.
        learn_inner_lr: Meta-SGD (per-element inner learning rates, meta-learned).
        optimizer, optimizer_params: the meta-optimizer (``torch.optim`` name).
        vectorize: ``auto`` / ``threads`` / ``loop`` / ``vmap`` over the tasks of a meta-batch.
        fast_bn: use :class:`TransductiveBatchNorm2d` (same maths and parameters). Required for
            ``vmap`` (vmap over ``nn.BatchNorm2d``'s double backward is wrong in this torch) but
            slower than the fused kernel in a per-task loop, so ``"auto"`` swaps it in exactly
            when the meta-batch runs under vmap. ``threads`` and ``loop`` run the network as
            :func:`.fastconv.conv4_function`, which always uses the fused kernel.
    """

    parallel_tasks = True  # adapt() only reads the module: test tasks are scored on the task pool

    def __init__(self, n_way: int = 5, in_channels: int = 1, image_size: int = 28, hidden: int = 32,
                 inner_steps: int = 1, inner_lr: float = 0.4, test_inner_steps: int | None = None,
                 test_inner_lr: float | None = None, first_order: bool = False, learn_inner_lr: bool = False,
                 optimizer: str = "Adam", optimizer_params: dict | None = None, vectorize: str = "auto",
                 fast_bn: bool | str = "auto") -> None:
        super().__init__()
        if vectorize not in VECTORIZE:
            raise ValueError(f"vectorize: unknown value {vectorize!r}; allowed: {list(VECTORIZE)}")
        if fast_bn not in (True, False, "auto"):
            raise ValueError(f"fast_bn: expected true, false or 'auto', got {fast_bn!r}")
        if fast_bn is False and vectorize not in ("loop", "threads"):
            # vmap over nn.BatchNorm2d's double backward gives second-order meta-gradients that
            # are off by ~1% in this torch (tests/fewshot/test_fewshot_maml.py pins it).
            raise ValueError("fast_bn=False needs vectorize='loop' or 'threads': vmap over nn.BatchNorm2d gives wrong "
                             "second-order gradients; keep fast_bn=True (same maths) to use vmap")
        self.save_hyperparameters()
        self.net = conv4(in_channels, n_way, hidden, image_size, track_running_stats=False)
        if fast_bn is True:
            use_fast_batchnorm(self.net)
        self.inner_lrs: nn.ParameterDict | None = None
        if learn_inner_lr:
            # ParameterDict keys cannot contain dots.
            self.inner_lrs = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(torch.full_like(p, inner_lr))
                                               for k, p in self.net.named_parameters()})

    @classmethod
    def from_command(cls, cmd: Any, data: Any = None) -> "MAML":
        """MAML / FOMAML / Meta-SGD as the command's kind describes it (``cmd.traits``)."""
        m, t = cmd.maml, cmd.traits
        return cls(n_way=cmd.episodes.n_way, in_channels=cmd.channels, image_size=cmd.image_size,
                   hidden=cmd.model.params.hidden, inner_steps=m.inner_steps, inner_lr=m.inner_lr,
                   test_inner_steps=m.test_inner_steps, test_inner_lr=m.test_inner_lr, first_order=t.first_order,
                   learn_inner_lr=t.learn_inner_lr, optimizer=cmd.optimizer.name,
                   optimizer_params=cmd.optimizer.params, vectorize=m.vectorize, fast_bn=m.fast_bn)

    def params(self) -> Params:
        return dict(self.net.named_parameters())

    def lrs(self) -> Params | None:
        if self.inner_lrs is None:
            return None
        return {k.replace("__", "."): v for k, v in self.inner_lrs.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def trains_on_task_pool(self) -> bool:
        return resolve_vectorize(self.hparams.vectorize, self.device) == "threads"

    def net_function(self) -> Forward:
        """The network as a thread-safe ``forward(params, x)`` (channels-last Conv-4 when it is one)."""
        return conv4_function(self.net) or as_forward(self.net)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        sx, sy, qx, qy = batch
        h = self.hparams
        mode = resolve_vectorize(h.vectorize, sx.device)
        if mode == "vmap" and has_native_batchnorm(self.net):
            use_fast_batchnorm(self.net)  # fast_bn="auto": needed for correct vmap gradients
        net = self.net if mode == "vmap" else self.net_function()
        loss, acc = meta_loss(net, self.params(), sx, sy, qx, qy, h.inner_steps, h.inner_lr,
                              h.first_order, self.lrs(), mode, taskparallel.job_parallelism())
        b = sx.shape[0]
        self.log("train_loss", loss, on_step=True, prog_bar=True, batch_size=b)
        self.log("train_accuracy", acc, on_step=True, batch_size=b)
        return loss

    def adapt_params(self, sx: torch.Tensor, sy: torch.Tensor) -> Params:
        """Test-time adapted weights for one support set (needs gradients enabled)."""
        h = self.hparams
        steps = h.test_inner_steps if h.test_inner_steps is not None else h.inner_steps
        lr = h.test_inner_lr if h.test_inner_lr is not None else h.inner_lr
        params = {k: v.detach().requires_grad_(True) for k, v in self.params().items()}
        lrs = {k: v.detach() for k, v in self.lrs().items()} if self.inner_lrs is not None else None
        adapted = inner_adapt(self.net_function(), params, sx, sy, steps, lr, first_order=True, lrs=lrs,
                              functional=False)
        return {k: v.detach() for k, v in adapted.items()}

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, n_way: int) -> Scorer:
        """Test-time adapted weights for the support set; scores queries with them (transductive BN)."""
        if n_way != self.hparams.n_way:
            raise ValueError(f"n_way: this MAML model was meta-trained {self.hparams.n_way}-way and cannot score "
                             f"{n_way}-way tasks; meta-train a {n_way}-way model")
        with torch.enable_grad():
            adapted = self.adapt_params(support_x, support_y)
        fwd = self.net_function()
        return lambda x: fwd(adapted, x)
