"""Denoisers from anywhere: a factory reference `"package.module:callable"` (a module in the working
directory or on PYTHONPATH) or `"path/to/file.py:callable"`, called with keyword arguments, must
return an `nn.Module` satisfying the denoiser protocol:

    model(x, t) -> tensor shaped like x (same dtype)    x: (B, C, H, W) float, t: (B,) int64

Optional capabilities the suite asks for instead of guessing from types:
- `last_nfe() -> {"block": n, ..., "total": n}`: ODE-function evaluations of the last call
  (continuous models); then `nfe` is measured;
- `capture_safe: bool`: whether a forward reads nothing on the host (CUDA-graph capturable);
- `breakdown_blocks() -> [(name, module), ...]`: blocks `bench breakdown` times (`profile_blocks`,
  its former name, is still read);
- `ode_functions() -> [(name, module), ...]`: the ODE function of each block (then the MACs of
  one evaluation, `macs_per_eval`, are counted).

`user_model` builds one and checks it with one tiny forward before anything is measured, so a
factory that does not import, raises, returns something else, or a model that cannot take the
requested input fails in one line naming the factory (`ModelInputError`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from models.errors import ModelInputError


def is_factory_reference(text: str) -> bool:
    """'module:callable' or 'file.py:callable' (a preset name has no colon)."""
    module, sep, attr = str(text).rpartition(":")
    return bool(sep and module and attr)


def load_factory(reference: str) -> Callable[..., Any]:
    """The callable a factory reference names; ModelInputError when it cannot be imported."""
    if not is_factory_reference(reference):
        raise ModelInputError(f"factory {reference!r}: expected 'package.module:callable' or "
                              "'path/to/file.py:callable'")
    module_name, _, attr = reference.rpartition(":")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise FileNotFoundError(f"no file {module_name}")
            spec = importlib.util.spec_from_file_location(f"_factory_{abs(hash(module_name))}",
                                                          module_name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())  # a module in the working directory
            module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is the user's to fix
        raise ModelInputError(f"factory {reference}: cannot import {module_name} "
                              f"({type(error).__name__}: {_first_line(error)}); put the module in "
                              "the working directory or on PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelInputError(f"factory {reference}: {module_name} has no callable {attr!r}")
    return factory


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""


def build_factory_model(reference: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Call the factory with `kwargs`; the result must be an nn.Module."""
    factory = load_factory(reference)
    try:
        model = factory(**dict(kwargs or {}))
    except Exception as error:  # noqa: BLE001 - the factory's failure, named
        raise ModelInputError(f"factory {reference} raised {type(error).__name__}: "
                              f"{_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ModelInputError(f"factory {reference} returned {type(model).__name__}, not a "
                              "torch.nn.Module; return the denoiser module")
    return model


def check_user_model(model: nn.Module, reference: str, *, channels: int, resolution: int) -> None:
    """One tiny forward (batch 1, t = 0) checking the protocol: output a tensor shaped like x."""
    x = torch.randn(1, channels, resolution, resolution)
    t = torch.zeros(1, dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x, t)
    except Exception as error:  # noqa: BLE001 - what the model cannot take, named
        raise ModelInputError(f"factory {reference}: the model cannot take x of shape "
                              f"{tuple(x.shape)} with t of shape (1,) ({type(error).__name__}: "
                              f"{_first_line(error)}); check channels and resolution") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ModelInputError(f"factory {reference}: model(x, t) returned {type(out).__name__}, not "
                              "a tensor; return the prediction tensor (e.g. unwrap .sample)")
    if tuple(out.shape) != tuple(x.shape) or out.dtype != x.dtype:
        raise ModelInputError(f"factory {reference}: model(x, t) returned {tuple(out.shape)} "
                              f"{out.dtype} for x {tuple(x.shape)} {x.dtype}; a denoiser returns a "
                              "tensor shaped like x")


def user_model(reference: str, kwargs: dict[str, Any] | None = None, *, channels: int = 3,
               resolution: int = 64) -> nn.Module:
    """Build a user's denoiser and check it with one tiny forward (see the module docstring)."""
    model = build_factory_model(reference, kwargs)
    check_user_model(model, reference, channels=channels, resolution=resolution)
    return model
