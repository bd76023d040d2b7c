"""Device placement check without a GPU: run a real training or evaluation step with the model
and the batch on a stand-in accelerator, and fail on any tensor the step makes on the CPU and
then mixes with the accelerator's tensors.

How (docs/gpu.md, "Device placement"): :class:`ShadowTensor` is a tensor subclass whose
``device`` says ``meta`` (a device that is not the CPU, so every ``x.device`` a model reads, every
``device.type == "cpu"`` branch and every ``torch.zeros(..., device=x.device)`` behaves as on a
GPU) but which holds a real CPU tensor and computes on it. So, unlike the bare ``meta`` device
or ``FakeTensorMode``, data-dependent operations (``nonzero``, boolean indexing, ``bincount``,
``.item()``), autograd, the optimiser step and the metric counting all run, with real numbers.

* Every operation on shadow tensors first checks its tensor arguments: a plain CPU tensor with
  at least one dimension among them is a :class:`DevicePlacementError` naming the operation and
  the line of torchssc (or of the caller) that ran it. CPU scalars (0-dim) are allowed, as CUDA
  allows them.
* Factory calls that ask for the shadow device (``device=x.device``) are made on the CPU and
  wrapped (:class:`_ShadowFactories`); those that ask for none or for the CPU make plain CPU
  tensors, caught as soon as they meet the model's tensors.
* Python-level calls naming the shadow device (``torch.tensor(data, device=x.device)``,
  ``cpu_tensor.to(x.device)``, list indices ``x[..., [0, 2, 1]]``, ``x.new_tensor(data)``) are
  made on the CPU and wrapped (:class:`_ShadowFunctions`): torch builds those tensors below the
  dispatcher, where a meta tensor would carry no data. A data-less meta tensor reaching an
  operation anyway is a :class:`ShadowLimitError` (a limit of the check), never a silent result.
* Within :func:`shadow_device`, ``torch.Generator`` is swapped for a subclass that makes a CPU
  generator for the shadow device (put back on exit; not thread-safe: one check at a time).
* :func:`shadow_module` moves a module's parameters and buffers; a tensor held as a plain
  attribute (not a parameter or buffer) stays on the CPU, as ``model.to("cuda")`` would leave it,
  and :func:`plain_tensor_attributes` lists such attributes before the step runs.

What no check of this kind reaches (a CPU tensor that never meets the model's tensors, ops
inside ``torch.autocast`` on the accelerator, NCCL) is listed in docs/gpu.md and guarded by
review and by ``benchmarks/gpu_check.py`` on a real GPU.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_map

SHADOW = torch.device("meta")
"""The device the shadow tensors report: not the CPU, and known to every torch function."""

_TORCH_DIR = str(Path(torch.__file__).parent)


class DevicePlacementError(RuntimeError):
    """A CPU tensor met the accelerator's tensors inside a step."""


class ShadowLimitError(RuntimeError):
    """A call the shadow device cannot run with real data (a limit of the check, not a bug of the
    code checked): it is refused rather than computed on an empty tensor."""


def _culprit() -> str:
    """``file:line (function)`` of the innermost frame outside torch and this module."""
    here = str(Path(__file__))
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.startswith(_TORCH_DIR) and frame.filename != here:
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "<unknown>"


def _is_cpu_array(t: object) -> bool:
    return isinstance(t, torch.Tensor) and not isinstance(t, ShadowTensor) and t.device.type == "cpu" and t.dim() > 0


def _wants_shadow(kwargs: dict) -> bool:
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == SHADOW.type


def _wrap(out):
    return tree_map(lambda t: ShadowTensor(t) if isinstance(t, torch.Tensor) and not isinstance(t, ShadowTensor)
                    else t, out)


class ShadowTensor(torch.Tensor):
    """A tensor that reports :data:`SHADOW` as its device and computes on the CPU tensor it holds
    (``.inner``, same shape, strides and dtype)."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor):
        if isinstance(inner, ShadowTensor) or inner.device.type != "cpu":
            raise TypeError("ShadowTensor wraps a plain CPU tensor")
        out = torch.Tensor._make_wrapper_subclass(
            cls, inner.size(), strides=inner.stride(), storage_offset=inner.storage_offset(), dtype=inner.dtype,
            layout=inner.layout, device=SHADOW, requires_grad=inner.requires_grad)
        out.inner = inner
        return out

    def __repr__(self) -> str:
        return f"ShadowTensor({self.inner!r})"

    def tolist(self):  # a copy to the host, as on any accelerator
        return self.inner.tolist()

    def __tensor_flatten__(self):
        return ["inner"], None

    @staticmethod
    def __tensor_unflatten__(inner_tensors, meta, outer_size, outer_stride):
        return ShadowTensor(inner_tensors["inner"])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = _leaves((args, kwargs))
        hollow = [tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor) and not isinstance(t, ShadowTensor)
                  and t.device.type == SHADOW.type]
        if hollow:  # made below the dispatcher straight on the shadow device: no data to compute with
            raise ShadowLimitError(f"{func} got data-less tensor(s) of shape {hollow} at {_culprit()}, made by torch "
                                   "internals on the stand-in device; teach torchssc.engine.placement this call")
        mixed = [tuple(t.shape) for t in leaves if _is_cpu_array(t)]
        if mixed:
            raise DevicePlacementError(
                f"{func} mixes the accelerator's tensors with CPU tensor(s) of shape {mixed} at {_culprit()}: "
                "make them on the input's device (device=x.device, torch.zeros_like, x.new_zeros) or register "
                "them as buffers")
        unwrap = lambda t: t.inner if isinstance(t, ShadowTensor) else t  # noqa: E731
        real_args, real_kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        to_shadow = _wants_shadow(real_kwargs)
        if to_shadow:
            real_kwargs["device"] = torch.device("cpu")
        out = func(*real_args, **real_kwargs)
        if real_kwargs.get("device") is not None and not to_shadow:  # an explicit move off the accelerator (.cpu())
            return out
        return return_and_correct_aliasing(func, args, kwargs, _wrap(out))


def _leaves(tree) -> list:
    out: list = []
    tree_map(lambda x: out.append(x), tree)
    return out


class _ShadowFactories(TorchDispatchMode):
    """Factory calls for the shadow device (``torch.zeros(n, device=x.device)``, ``x.to(x.device)``
    on a CPU tensor) run on the CPU and come back as shadow tensors."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _wants_shadow(kwargs) and not any(isinstance(t, ShadowTensor) for t in _leaves(args)):
            out = func(*args, **{**kwargs, "device": torch.device("cpu")})
            return _wrap(out)
        return func(*args, **kwargs)


def _is_shadow_device(x: object) -> bool:
    return isinstance(x, torch.device) and x.type == SHADOW.type or isinstance(x, str) and x == SHADOW.type


class _ShadowFunctions(TorchFunctionMode):
    """Python-level calls naming the shadow device (``torch.tensor(data, device=x.device)``,
    ``cpu_tensor.to(x.device)``): made on the CPU, the result wrapped. (``torch.tensor`` builds its
    tensor below the dispatcher, so :class:`_ShadowFactories` alone would see an empty meta
    tensor.)"""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and isinstance(args[0], ShadowTensor):
            # list indices become index tensors below the dispatcher, on the shadow device: make them here
            args = (args[0], _shadow_lists(args[1]), *args[2:])
        if func is torch.Tensor.new_tensor and isinstance(args[0], ShadowTensor):
            data = torch.tensor(args[1], dtype=kwargs.get("dtype") or args[0].dtype)
            return ShadowTensor(data).requires_grad_(bool(kwargs.get("requires_grad", False)))
        if func is not torch.device and any(_is_shadow_device(a) for a in (*args, *kwargs.values())):
            cpu = torch.device("cpu")
            args = tuple(cpu if _is_shadow_device(a) else a for a in args)
            kwargs = {k: cpu if _is_shadow_device(v) else v for k, v in kwargs.items()}
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and not isinstance(out, ShadowTensor):
                out = ShadowTensor(out.detach()).requires_grad_(out.requires_grad) if out.is_leaf else _attach(out)
            return out
        return func(*args, **kwargs)


def _shadow_lists(index):
    """An index with its lists (``x[..., [0, 2, 1]]``) as shadow index tensors."""
    if isinstance(index, list) and not any(isinstance(i, torch.Tensor) for i in index):
        return ShadowTensor(torch.tensor(index))
    if isinstance(index, tuple):
        return tuple(_shadow_lists(i) for i in index)
    return index


def _attach(out: torch.Tensor) -> torch.Tensor:
    """A shadow copy of a non-leaf CPU result that keeps its autograd history."""
    return _ToShadow.apply(out)


class _ToShadow(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return ShadowTensor(x.detach().clone())

    @staticmethod
    def backward(ctx, grad):
        return grad.inner if isinstance(grad, ShadowTensor) else grad


_Generator = torch.Generator


class _ShadowGenerator(_Generator):
    """``torch.Generator(device=x.device)`` for the shadow device: a CPU generator (the draws are
    made on the CPU and wrapped)."""

    def __new__(cls, device: str | torch.device = "cpu"):
        return _Generator.__new__(cls, device="cpu" if _is_shadow_device(device) else device)

    def __init__(self, device: str | torch.device = "cpu") -> None:
        pass


@contextmanager
def shadow_device() -> Iterator[torch.device]:
    """Within the block, calls that ask for :data:`SHADOW` make shadow tensors; yields the device.

    ``torch.Generator`` is :class:`_ShadowGenerator` within the block (and put back after it).
    """
    torch.Generator = _ShadowGenerator
    try:
        with _ShadowFunctions(), _ShadowFactories():
            yield SHADOW
    finally:
        torch.Generator = _Generator


def shadow_module(module: nn.Module) -> nn.Module:
    """Parameters and buffers of ``module`` as shadow tensors, in place (what ``.to(device)`` does
    for a real device); returns the module."""
    return module._apply(lambda t: t if isinstance(t, ShadowTensor) else ShadowTensor(t))


def plain_tensor_attributes(module: nn.Module) -> list[str]:
    """Tensors a module holds outside its parameters and buffers (plain attributes, or inside a
    list, tuple or dict attribute): ``module.to(device)`` leaves them where they are. Names as
    ``"sub.module.attr"``."""
    found = []
    for prefix, sub in module.named_modules():
        for key, value in vars(sub).items():
            if key in ("_parameters", "_buffers", "_modules"):
                continue
            items = (value.values() if isinstance(value, dict)
                     else value if isinstance(value, (list, tuple)) else [value])
            if any(isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) for v in items):
                found.append(f"{prefix}.{key}" if prefix else key)
    return found


def check_module(module: nn.Module) -> None:
    """``DevicePlacementError`` when ``module`` holds tensors ``.to(device)`` would not move."""
    stray = plain_tensor_attributes(module)
    if stray:
        raise DevicePlacementError(f"{type(module).__name__} holds tensors outside its parameters and buffers, which "
                                   f".to(device) does not move: {stray} (register them with register_buffer)")


def run_on_shadow(step: Callable[[torch.device], object]) -> object:
    """Run ``step(device)`` with the shadow device: everything ``step`` moves to ``device`` becomes
    a shadow tensor. ``DevicePlacementError`` when the step mixes a CPU tensor in."""
    with shadow_device() as device:
        return step(device)


def train_step(model: nn.Module, loss_fn: Callable[[dict, dict], dict], batch: dict, device: torch.device, *,
               amp: str = "none", lr: float = 1e-3) -> dict:
    """One step of the engine's training loop (:func:`torchssc.engine.train.train_one_epoch`: move
    the batch, forward, loss, finiteness check, backward, SGD with momentum, schedule) with the
    model and the loss moved to ``device``; ``amp`` as ``train.amp`` (fp16 with a GradScaler).

    Returns ``train_one_epoch``'s statistics (``"terms"``: the loss terms).
    """
    from torchssc.engine.train import EpochContext, train_one_epoch

    _to(model, device)
    if isinstance(loss_fn, nn.Module):
        _to(loss_fn, device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    scaler = torch.amp.GradScaler(device.type if device.type != SHADOW.type else "cpu", enabled=amp == "fp16")
    ctx = EpochContext(device=device, amp=amp, progress=False)
    return train_one_epoch(model, loss_fn, optimizer, scheduler, scaler, [batch], ctx, epoch=0, iteration=0,
                           num_iters=1)


def eval_step(model: nn.Module, batch: dict, device: torch.device, *, protocols: tuple[str, ...] = ("torchssc",)):
    """The scoring loop of ``torchssc eval`` (:func:`torchssc.engine.evaluate.score_model`: seeded
    forward, argmax, label grid, every protocol's counts, the cross-entropy sums) over the frames
    of ``batch`` (a collated batch, split back into items), the model on ``device``.

    Returns the :class:`~torchssc.engine.evaluate.Scores`.
    """
    from torchssc.engine.distributed import DistInfo
    from torchssc.engine.evaluate import score_model

    _to(model, device)
    size = next(v for v in batch.values() if torch.is_tensor(v)).shape[0]
    items = [{**{k: v[i] for k, v in batch.items() if torch.is_tensor(v)}, "id": f"{i:04d}"} for i in range(size)]
    info = DistInfo(rank=0, local_rank=0, world_size=1, device=device)
    return score_model(model, items, protocols=list(protocols), info=info, batch_size=size, cross_entropy=True,
                       progress=False)


def _to(module: nn.Module, device: torch.device) -> None:
    if device.type == SHADOW.type:
        shadow_module(module)
    else:
        module.to(device)


def check_placement(model: nn.Module, loss_fn: Callable[[dict, dict], dict], batch: dict, *,
                    evaluate: bool = True) -> dict:
    """The whole check on one model: :func:`check_module`, then :func:`train_step` and (when
    ``evaluate`` and the batch has labels) :func:`eval_step` on the shadow device.

    The model and loss are left on the shadow device (build fresh ones to use them again).
    Returns the training step's statistics. Raises :class:`DevicePlacementError`.
    """
    check_module(model)
    if isinstance(loss_fn, nn.Module):
        check_module(loss_fn)

    def step(device: torch.device) -> dict:
        stats = train_step(model, loss_fn, batch, device)
        if evaluate and "label" in batch:
            eval_step(model, batch, device)
        return stats

    return run_on_shadow(step)


__all__ = ["SHADOW", "DevicePlacementError", "ShadowLimitError", "ShadowTensor", "shadow_device", "shadow_module",
           "plain_tensor_attributes", "check_module", "run_on_shadow", "train_step", "eval_step",
           "check_placement"]
