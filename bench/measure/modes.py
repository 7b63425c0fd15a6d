"""Execution modes: how a denoiser call is run when it is timed.

- `eager`: the paper's way: one Python call per layer (today's measurement).
- `compile`: `torch.compile` (inductor, default options) of the denoiser. The first call compiles;
  its wall time is `compile_s`, never a latency sample. Graph breaks are counted with
  `torch._dynamo.explain` and reported with where they happen.
- `cudagraph` (CUDA only): the whole call captured once in a CUDA graph for the given input shape
  and dtype, then replayed from static buffers (a call = copy the input into the static buffer +
  one replay). Models that read tensors on the host during a forward cannot be captured; a model
  that says so (`capture_safe = False`, e.g. the cU-Net on torchdiffeq) is refused up front.

A faster mode counts only when its output matches eager: every prepared mode is compared with the
eager output on the same input, and a relative error (max |mode - eager| / max |eager|) above
`TOLERANCE[dtype]` fails it with the number in the message.

A new mode is one function `(net, x, t) -> Prepared` plus one line in `MODES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import models
from bench.errors import UsageError

TOLERANCE = {"float32": 5e-3, "bfloat16": 5e-2, "float16": 1e-2}
"""Largest accepted max |mode - eager| / max |eager| per dtype. float32: on Ampere and newer GPUs
cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa), in eager and compiled code
alike, and inductor orders their accumulations differently; measured on an H100 the compiled
cU-Net (36 ODE evaluations) differed from eager by 1.3e-3 and the U-Net by 7.9e-4. A wrong
graph differs by O(1). bfloat16: its 8-bit mantissa."""


class ModeError(UsageError):
    """A mode cannot run here (wrong device, uncapturable model, output differs from eager)."""


@dataclass
class Prepared:
    """A denoiser ready to be timed in one mode on fixed inputs."""

    mode: str
    call: Callable[[], torch.Tensor]
    """One denoiser call on the prepared inputs; returns the output."""
    compile_s: float | None = None
    """Wall seconds of the compiling first call (compile mode only)."""
    notes: str = ""
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare_eager(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Prepared:
    return Prepared("eager", lambda: net(x, t))


def graph_breaks(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> tuple[int, str]:
    """(number of graph breaks, 'reason @ where; ...') from `torch._dynamo.explain`."""
    try:
        explained = torch._dynamo.explain(net)(x, t)
    except Exception as error:  # noqa: BLE001 - explain is diagnostics; compile itself may still work
        return -1, f"torch._dynamo.explain failed: {type(error).__name__}"
    reasons = []
    for br in explained.break_reasons[:5]:
        frame = br.user_stack[-1] if getattr(br, "user_stack", None) else None
        where = f" @ {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
        reasons.append(f"{str(br.reason).splitlines()[0][:120]}{where}")
    return int(explained.graph_break_count), "; ".join(reasons)


COMPILE_CACHE_LIMIT = 256
"""Dynamo's per-code-object cache limit is raised so that many models and shapes in one run never
silently fall back to eager (the default limit of 8 would, for the cU-Net variants sharing
`ContinuousUNet.forward`)."""


def _raise_cache_limit() -> None:
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name),
                                                    COMPILE_CACHE_LIMIT))


def prepare_compile(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Prepared:
    _raise_cache_limit()
    breaks, where = graph_breaks(net, x, t)
    # A dynamic batch dimension: one compiled graph serves every batch size above 1 (dynamo
    # specialises size 1), and fresh instances of an architecture reuse it across cells.
    torch._dynamo.maybe_mark_dynamic(x, 0)
    torch._dynamo.maybe_mark_dynamic(t, 0)
    compiled = torch.compile(net)
    _sync(x.device)
    begin = time.perf_counter()
    compiled(x, t)
    _sync(x.device)
    seconds = time.perf_counter() - begin
    notes = (f"graph breaks: {breaks}" + (f" ({where})" if where else "")
             + "; inductor, dynamic batch; compile_s is small when an earlier cell compiled the same "
               "architecture and dtype (dynamo reuses it)")
    return Prepared("compile", lambda: compiled(x, t), compile_s=seconds, notes=notes)


def check_capturable(net: nn.Module, device: torch.device) -> None:
    """Raise ModeError (one line) unless `net` can be captured in a CUDA graph on `device`: the one
    check for a denoiser call here and for a sampling run (`bench.measure.graphed_sampling`)."""
    if device.type != "cuda":
        raise ModeError("mode cudagraph needs a CUDA device; use modes eager or compile on the CPU")
    if models.capture_safe(net) is False:
        raise ModeError("mode cudagraph: this model reads tensors on the host during a forward and "
                        "cannot be captured (for the cU-Nets set solver_backend = 'native')")


def prepare_cudagraph(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> Prepared:
    check_capturable(net, x.device)
    static_x, static_t = x.clone(), t.clone()
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
        for _ in range(3):
            net(static_x, static_t)
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            static_out = net(static_x, static_t)
    except Exception as error:  # noqa: BLE001 - a capture failure is the cell's answer
        raise ModeError(f"mode cudagraph: capture failed: {type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200] if str(error) else ''}") from None

    def call() -> torch.Tensor:
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        return static_out

    return Prepared("cudagraph", call, notes="whole call captured once; input copied + 1 replay")


MODES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], Prepared]] = {
    "eager": prepare_eager,
    "compile": prepare_compile,
    "cudagraph": prepare_cudagraph,
}
"""Mode name -> preparation. The matrix's `modes` axis takes these names."""


def check_modes(modes: list[str]) -> None:
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise UsageError(f"unknown mode(s) {', '.join(map(str, bad))}; available: {', '.join(MODES)}")


def output_error(output: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max |output - reference|, that divided by max |reference|), computed in float32."""
    diff = (output.float() - reference.float()).abs().max().item()
    scale = reference.float().abs().max().item()
    return diff, diff / scale if scale > 0 else diff


def prepare(net: nn.Module, mode: str, x: torch.Tensor, t: torch.Tensor,
            reference: torch.Tensor | None = None) -> Prepared:
    """`net` ready to be timed in `mode` on (x, t), checked against the eager output `reference`
    (computed here when not given). Call inside `torch.inference_mode()` with `net` in eval mode."""
    check_modes([mode])
    if mode == "eager":
        return prepare_eager(net, x, t)
    if reference is None:
        reference = net(x, t).clone()
    prepared = MODES[mode](net, x, t)
    output = prepared.call()
    _sync(x.device)
    prepared.max_abs_err, prepared.max_rel_err = output_error(output, reference)
    dtype = str(x.dtype).removeprefix("torch.")
    limit = TOLERANCE.get(dtype, 1e-3)
    if not prepared.max_rel_err <= limit:
        raise ModeError(f"mode {mode} output differs from eager: max relative error "
                        f"{prepared.max_rel_err:.3g} > {limit:g} allowed for {dtype} "
                        f"(max abs error {prepared.max_abs_err:.3g})")
    return prepared
