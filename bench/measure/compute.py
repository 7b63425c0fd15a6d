"""Compute per denoiser call: thop MACs, fvcore MACs, torch FlopCounterMode FLOPs, and ODE NFE.

Conventions (read before comparing numbers):

* A MAC is one multiply-accumulate = 2 FLOPs. thop and fvcore report MACs (fvcore calls them
  "flops", one per MAC); torch's FlopCounterMode reports FLOPs (2 per MAC). Each count below says
  which one it holds and what its counter could NOT count.
* All counts are for ONE call `model(x, t)` on x of shape (batch, C, H, W) (default batch 1) with
  every timestep equal to `timestep` (default 0, as in the paper's thop measurement).
* Continuous (ODE) models expose `model.last_nfe()`; a count then carries the NFE of the very
  forward pass it counted. "Per evaluation" has two definitions here, both named explicitly:
  - `amortised_macs_per_eval` = per-call MACs / total NFE: every MAC of the call, including the
    layers outside the ODE solves, spread over the evaluations (an upper bound of one evaluation).
  - `per_evaluation_macs(model, func, ...)` = the MACs of ONE evaluation of a given ODE function,
    counted on the exact inputs it received at its first evaluation inside the call.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from bench.errors import UsageError
from bench.measure.workload import denoiser_inputs, eval_mode

CounterName = Literal["thop", "fvcore", "flop_counter"]

THOP_NOTE = (
    "thop MACs: sum of forward-hook rules on leaf nn.Modules (conv, linear, norms, pooling, ...); "
    "functional ops (torch.matmul/einsum/bmm, F.scaled_dot_product_attention, F.* norms and "
    "activations) are never seen, and leaf modules without a rule count 0 (uncounted_modules)."
)
FVCORE_NOTE = (
    "fvcore MACs: one fvcore 'flop' per multiply-accumulate, from a jit trace of the call; ops "
    "without a handle count 0 (unsupported_ops, e.g. aten::scaled_dot_product_attention); "
    "element-wise ops are ignored by design."
)
FLOP_COUNTER_NOTE = (
    "torch.utils.flop_counter FLOPs: 2 per MAC, formulas for matmul/conv/attention aten ops only; "
    "uncounted_ops = matmul/conv/attention-like ops executed without a formula (a real gap), "
    "zero_flop_ops = all other executed ops (element-wise, norms, softmax, views), 0 by design."
)

# Ops whose cost is matrix-product shaped: executing one of these without a FLOP formula is a gap.
# Matched against the op's own name ("bmm" in "aten.bmm"); "bilinear" upsampling is not one.
_HEAVY_OP = re.compile(
    r"_*(\w*mm|matmul|einsum|linear|addmv|mv|dot|vdot|tensordot)|\w*conv(?!ert)\w*|\w*attention\w*"
)


def _is_heavy(op_name: str) -> bool:
    return _HEAVY_OP.fullmatch(op_name.rsplit(".", 1)[-1]) is not None


@dataclass(frozen=True)
class NfeCount:
    """ODE-function evaluations of one forward pass: `total` and per ODE block (`blocks`)."""

    total: int
    blocks: dict[str, int] = field(default_factory=dict)


class _PerEvaluation:
    """Mixin: amortised MACs per ODE evaluation of a count that has `macs` and `nfe`."""

    macs: int
    nfe: NfeCount | None

    @property
    def amortised_macs_per_eval(self) -> float | None:
        """Per-call MACs / total NFE (all layers of the call included); None for discrete models."""
        if self.nfe is None or self.nfe.total <= 0:
            return None
        return macs_per_evaluation(self.macs, self.nfe.total)


@dataclass(frozen=True)
class ThopCount(_PerEvaluation):
    """thop MACs of one call. `uncounted_modules`: leaf module type name -> calls with no rule."""

    macs: int
    input_shape: tuple[int, ...]
    uncounted_modules: dict[str, int]
    nfe: NfeCount | None
    note: str = THOP_NOTE


@dataclass(frozen=True)
class FvcoreCount(_PerEvaluation):
    """fvcore MACs of one call (its "flops"). `unsupported_ops`: op name -> occurrences."""

    macs: int
    input_shape: tuple[int, ...]
    unsupported_ops: dict[str, int]
    nfe: NfeCount | None
    note: str = FVCORE_NOTE


@dataclass(frozen=True)
class FlopCounterCount(_PerEvaluation):
    """FlopCounterMode FLOPs of one call (2 per MAC) and the executed ops it has no formula for."""

    flops: int
    input_shape: tuple[int, ...]
    uncounted_ops: dict[str, int]
    zero_flop_ops: dict[str, int]
    nfe: NfeCount | None
    note: str = FLOP_COUNTER_NOTE

    @property
    def macs(self) -> int:  # type: ignore[override]
        """FLOPs / 2: every formula in torch's registry counts 2 FLOPs per multiply-accumulate."""
        return self.flops // 2


def macs_per_evaluation(macs: int | float, nfe: int, *, outside_ode: int | float = 0) -> float:
    """(macs - outside_ode) / nfe: MACs per ODE evaluation once the non-ODE part is removed.

    With `outside_ode=0` this is the amortised figure (all MACs of the call spread over the
    evaluations).
    """
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe <= 0:
        raise UsageError(f"NFE must be a positive integer to divide by, got {nfe!r}")
    if outside_ode < 0 or outside_ode > macs:
        raise UsageError(f"outside_ode must be within [0, {macs}], got {outside_ode!r}")
    return (macs - outside_ode) / nfe


def read_nfe(model: nn.Module) -> NfeCount | None:
    """The NFE of the model's last forward from `model.last_nfe()`; None for discrete models."""
    last_nfe = getattr(model, "last_nfe", None)
    if not callable(last_nfe):
        return None
    counts = {str(k): int(v) for k, v in dict(last_nfe()).items()}
    total = counts.pop("total", sum(counts.values()))
    return NfeCount(total=total, blocks=counts)


def call_nfe(
    model: nn.Module, shape: Sequence[int] = (3, 64, 64), *, batch: int = 1, timestep: int = 0
) -> NfeCount | None:
    """Run one call (no grad, eval mode) and return its NFE; None for discrete models."""
    args = _inputs_for(model, shape, batch, timestep, None)
    with eval_mode(model), torch.no_grad():
        model(*args)
    return read_nfe(model)


def thop_macs(
    model: nn.Module,
    shape: Sequence[int] = (3, 64, 64),
    *,
    batch: int = 1,
    timestep: int = 0,
    inputs: tuple[Any, ...] | None = None,
) -> ThopCount:
    """thop MACs of one call, on a deep copy (thop adds buffers and hooks to what it profiles).

    `inputs` replaces the default `(x, t)` (e.g. `(t, z)` of an ODE function).
    """
    thop_profile = _import_quietly("thop.profile")
    work = copy.deepcopy(model)
    args = _inputs_for(work, shape, batch, timestep, inputs)
    calls: Counter[str] = Counter()

    def record(module: nn.Module, _inputs: Any, _output: Any) -> None:
        calls[type(module).__name__] += 1

    handles = [
        m.register_forward_hook(record)
        for m in work.modules()
        if next(m.children(), None) is None and type(m) not in thop_profile.register_hooks
    ]
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            total, _ = thop_profile.profile(work, inputs=args, verbose=False)
    finally:
        for handle in handles:
            handle.remove()
    return ThopCount(
        macs=int(round(float(total))),
        input_shape=_shape_of(args),
        uncounted_modules=dict(sorted(calls.items())),
        nfe=read_nfe(work),
    )


def fvcore_macs(
    model: nn.Module,
    shape: Sequence[int] = (3, 64, 64),
    *,
    batch: int = 1,
    timestep: int = 0,
    inputs: tuple[Any, ...] | None = None,
) -> FvcoreCount:
    """fvcore MACs of one call (`FlopCountAnalysis.total()`), its warnings and logging silenced."""
    fvcore_nn = _import_quietly("fvcore.nn")
    args = _inputs_for(model, shape, batch, timestep, inputs)
    with eval_mode(model), _quiet_logging("fvcore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = fvcore_nn.FlopCountAnalysis(model, args)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with torch.no_grad():
            total = analysis.total()
            unsupported = dict(analysis.unsupported_ops())
        nfe = read_nfe(model)
    return FvcoreCount(
        macs=int(total),
        input_shape=_shape_of(args),
        unsupported_ops=dict(sorted(unsupported.items())),
        nfe=nfe,
    )


class _OpRecorder(TorchDispatchMode):
    """Counts every op that reaches it; entered OUTSIDE FlopCounterMode, it sees the ops the
    counter actually executed (after the counter's own decompositions)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[Any] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.seen[getattr(func, "_overloadpacket", func)] += 1
        return func(*args, **(kwargs or {}))


def flop_counter_flops(
    model: nn.Module,
    shape: Sequence[int] = (3, 64, 64),
    *,
    batch: int = 1,
    timestep: int = 0,
    inputs: tuple[Any, ...] | None = None,
) -> FlopCounterCount:
    """`torch.utils.flop_counter.FlopCounterMode` FLOPs of one call, plus the ops it missed."""
    from torch.utils import flop_counter

    args = _inputs_for(model, shape, batch, timestep, inputs)
    recorder = _OpRecorder()
    counter = flop_counter.FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with recorder, counter:
            model(*args)
    registry = getattr(counter, "flop_registry", None) or flop_counter.flop_registry
    uncounted: dict[str, int] = {}
    zero_flop: dict[str, int] = {}
    for op, n in recorder.seen.items():
        if op in registry:
            continue
        name = str(op)
        (uncounted if _is_heavy(name) else zero_flop)[name] = n
    return FlopCounterCount(
        flops=int(counter.get_total_flops()),
        input_shape=_shape_of(args),
        uncounted_ops=dict(sorted(uncounted.items())),
        zero_flop_ops=dict(sorted(zero_flop.items())),
        nfe=read_nfe(model),
    )


_NO_TRAFFIC = frozenset({"view", "_unsafe_view", "reshape", "expand", "t", "transpose", "permute",
                         "detach", "alias", "as_strided", "slice", "select", "unsqueeze", "squeeze",
                         "split", "chunk", "unbind", "lift_fresh", "_reshape_alias", "empty",
                         "empty_strided", "empty_like"})
"""Ops that move no data (views and metadata, allocation without writing)."""


class _TrafficRecorder(TorchDispatchMode):
    """Bytes of every tensor an op reads or writes (views and metadata ops excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = str(getattr(func, "_overloadpacket", func)).split(".")[-1]
        if name not in _NO_TRAFFIC:
            for value in torch.utils._pytree.tree_leaves((args, kwargs or {}, out)):
                if isinstance(value, torch.Tensor):
                    self.bytes += value.numel() * value.element_size()
        return out


@dataclass(frozen=True)
class TrafficEstimate:
    """Bytes one call moves, as an UNFUSED upper bound: every operator reads each of its tensor
    inputs and writes each output once from memory (no cache reuse, no fusion; views free).
    Weights are part of `bytes` (read by the ops that use them)."""

    bytes: int
    input_shape: tuple[int, ...]


def bytes_moved(model: nn.Module, shape: Sequence[int] = (3, 64, 64), *, batch: int = 1,
                timestep: int = 0) -> TrafficEstimate:
    """The unfused byte traffic of one call (see `TrafficEstimate`), for arithmetic intensity."""
    args = _inputs_for(model, shape, batch, timestep, None)
    recorder = _TrafficRecorder()
    with eval_mode(model), torch.no_grad(), recorder:
        model(*args)
    return TrafficEstimate(bytes=int(recorder.bytes), input_shape=_shape_of(args))


COUNTERS: dict[str, Callable[..., ThopCount | FvcoreCount | FlopCounterCount]] = {
    "thop": thop_macs,
    "fvcore": fvcore_macs,
    "flop_counter": flop_counter_flops,
}


def per_evaluation_macs(
    model: nn.Module,
    func: nn.Module | str,
    shape: Sequence[int] = (3, 64, 64),
    *,
    counter: CounterName = "thop",
    batch: int = 1,
    timestep: int = 0,
) -> int:
    """MACs of ONE evaluation of the ODE function `func` (a submodule or its dotted name).

    Runs one call of `model`, captures the positional inputs `func` got at its first evaluation,
    and counts `func` alone on them with `counter` (flop_counter FLOPs are halved to MACs).
    """
    if counter not in COUNTERS:
        raise UsageError(f"unknown counter {counter!r}: use one of {', '.join(COUNTERS)}")
    target = _submodule(model, func)
    captured: list[tuple[Any, ...]] = []

    def capture(_module: nn.Module, args: tuple[Any, ...]) -> None:
        if not captured:
            captured.append(tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args))

    handle = target.register_forward_pre_hook(capture)
    try:
        args = _inputs_for(model, shape, batch, timestep, None)
        with eval_mode(model), torch.no_grad():
            model(*args)
    finally:
        handle.remove()
    if not captured:
        raise UsageError(f"ODE function {func!r} was never called during a forward of the model")
    return COUNTERS[counter](target, inputs=captured[0]).macs


def _submodule(model: nn.Module, func: nn.Module | str) -> nn.Module:
    if isinstance(func, str):
        try:
            return model.get_submodule(func)
        except AttributeError:
            raise UsageError(f"model has no submodule named {func!r}") from None
    if not any(m is func for m in model.modules()):
        raise UsageError(f"{type(func).__name__} is not a submodule of the model")
    return func


def _inputs_for(
    model: nn.Module,
    shape: Sequence[int],
    batch: int,
    timestep: int,
    inputs: tuple[Any, ...] | None,
) -> tuple[Any, ...]:
    if inputs is not None:
        return tuple(inputs)
    ref = next(model.parameters(), None)
    if ref is None:
        ref = next(model.buffers(), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return denoiser_inputs(shape, batch=batch, timestep=timestep, device=device, dtype=dtype)


def _shape_of(args: tuple[Any, ...]) -> tuple[int, ...]:
    tensors = [a for a in args if torch.is_tensor(a) and a.dim() > 0]
    return tuple(tensors[0].shape) if tensors else ()


@contextlib.contextmanager
def _quiet_logging(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


def _import_quietly(module: str) -> Any:
    """Import a third-party counter, hiding its import-time deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)
