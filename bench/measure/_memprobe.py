"""Fresh-process CPU memory probe: `python -m bench.measure._memprobe '<json>'`.

Runs ONE inference call or ONE training step of a freshly built model and prints one JSON line:
`{"ok": true, "baseline_bytes", "peak_bytes", "prior_peak_bytes", "weights_bytes"}` where
baseline = RSS right before the model is built (interpreter, torch and the model code already
imported), peak = the process's RSS high-water mark after the work (Linux: VmHWM, reset to the
current RSS right before the baseline through /proc/self/clear_refs; elsewhere ru_maxrss),
prior_peak = that high-water mark at baseline time (equal to baseline after a reset), reset =
whether the reset worked. On failure: `{"ok": false, "kind": "usage"|"error", "message": ...}`
and exit status 2 or 1.

JSON arguments: model (the stored configuration `ModelSource.config()`: a preset family's
configuration, or a factory reference and its kwargs; rebuilt with `models.source.build_stored`),
shape [C, H, W], batch, phase ("inference"|"train"), threads, schedule, prediction, lr, dtype.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable, Mapping
from typing import Any


def _high_water_bytes() -> int:
    """Peak RSS of this process: VmHWM from /proc (Linux), else `getrusage` ru_maxrss.

    ru_maxrss alone is not enough on Linux: after fork + exec it still holds the PARENT's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _reset_high_water() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _import_builder(stored: Mapping[str, Any]) -> None:
    """Import the code that builds the model before the baseline: the memory of importing a
    module is not the model's (a factory file is executed again when built, which costs only the
    objects it defines)."""
    if "factory" in stored:
        from models.factory import load_factory

        load_factory(str(stored["factory"]))
    else:
        import models.registry  # noqa: F401


def _build_in(build: Callable[[], Any], dtype: Any) -> tuple[Any, bool]:
    """(the model with its weights created in `dtype` (None: as built), whether it had to be cast
    after building): built under that default dtype, so no float32 copy of the weights ever exists
    to inflate a bfloat16 peak; a model whose construction cannot run in that dtype is built as it
    is and cast (its float32 weights then count, which the row's method says)."""
    import torch

    if dtype is None:
        return build(), False
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = build()
    except (RuntimeError, TypeError, ValueError):
        torch.set_default_dtype(before)
        return build().to(dtype), True
    finally:
        torch.set_default_dtype(before)
    return model.to(dtype), False  # (float buffers made in float32 explicitly)


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Do the measured work described by `spec`; return the byte counts (see module docstring)."""
    stored = spec["model"]
    _import_builder(stored)
    import psutil
    import torch

    import bench.measure.train_step  # noqa: F401 - imported before the baseline, not inside the work
    from bench.measure.memory import _do_work
    from bench.measure.workload import build_diffusion, denoiser_inputs
    from models.source import build_stored

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    train = spec["phase"] == "train"
    diffusion = build_diffusion(spec["schedule"], spec["prediction"]) if train else None
    x, t = denoiser_inputs(spec["shape"], batch=int(spec["batch"]))
    process = psutil.Process()
    reset = _reset_high_water()
    prior_peak = _high_water_bytes()
    baseline = process.memory_info().rss

    dtype = spec.get("dtype", "float32")
    cast = None if train or dtype == "float32" else getattr(torch, dtype)
    if cast is not None:
        x = x.to(cast)
    model, cast_after_build = _build_in(lambda: build_stored(stored), cast)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    _do_work(model, spec["phase"], x, t, diffusion, float(spec["lr"]), dtype)
    return {
        "ok": True,
        "baseline_bytes": baseline,
        "peak_bytes": _high_water_bytes(),
        "prior_peak_bytes": prior_peak,
        "weights_bytes": weights,
        "reset": reset,
        "cast_after_build": cast_after_build,
    }


def _is_usage_error(error: BaseException) -> bool:
    """Bad input (UsageError / ModelInputError); only looks at modules already imported."""
    kinds = [
        getattr(sys.modules.get(module), name, None)
        for module, name in (("bench.errors", "UsageError"), ("models.errors", "ModelInputError"))
    ]
    return any(isinstance(kind, type) and isinstance(error, kind) for kind in kinds)


def main(argv: list[str]) -> int:
    """Entry point: parse the JSON spec, run the probe, print one JSON line."""
    try:
        result = probe(json.loads(argv[0]))
    except Exception as error:  # reported to the parent as one line, not a traceback
        if _is_usage_error(error):
            print(json.dumps({"ok": False, "kind": "usage", "message": str(error)}))
            return 2
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        print(json.dumps({"ok": False, "kind": "error", "message": message}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
