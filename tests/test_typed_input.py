"""Typed input everywhere: a value of the wrong type or range is one line naming the key, the value
and what is accepted, from the API (ModelInputError), a TOML matrix and every CLI flag (exit 2)."""

from __future__ import annotations

import pytest
import torch

import models
from bench.cli import main

BAD_OVERRIDES = [
    ("width", 4.5, "positive integer"),
    ("solver_steps", 1.5, "positive integer"),
    ("channels", 0, "positive integer"),
    ("channels", "3", "positive integer"),
    ("rtol", "tight", "positive number"),
    ("adjoint", 1, "true or false"),
]


@pytest.mark.parametrize(("key", "value", "accepted"), BAD_OVERRIDES)
def test_api(key, value, accepted) -> None:
    with pytest.raises(models.ModelInputError, match=f"{key}.* = {value!r} is not accepted.*{accepted}"):
        models.build("cunet", **{key: value})


def _toml_value(value) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


@pytest.mark.parametrize(("key", "value", "accepted"), BAD_OVERRIDES)
def test_toml(tmp_path, capsys, key, value, accepted) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[matrix]\nmodels = ["cunet"]\nmetrics = ["params"]\n'
                      f'[overrides]\ncunet = {{ {key} = {_toml_value(value)} }}\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key}" in err[0] and "is not accepted" in err[0] and accepted in err[0]
    assert not (tmp_path / "o" / "measurements.csv").exists()


@pytest.mark.parametrize(("extra", "message"), [
    ('seed = 1.5', "matrix.seed = 1.5"),
    ('seed = "x"', "matrix.seed = 'x'"),
    ('channels = "3"', "matrix.channels = '3'"),
    ('cpu_max_batch_pixels = 0.5', "cpu_max_batch_pixels = 0.5"),
    ('[sampling]\nsteps = { unet = [1.5] }', "[sampling] steps"),
    ('[sampling]\nsteps = { unet = [3] }\nrepeats = "2"', "[sampling] repeats = '2'"),
    ('[latency]\nbudget_s = "2"', "[latency] budget_s = '2'"),
])
def test_toml_matrix_keys_and_tables(tmp_path, capsys, extra, message) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[matrix]\nmodels = ["unet"]\nmetrics = ["params", "sample_time_s"]\n{extra}\n')
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize(("key", "value", "accepted"), BAD_OVERRIDES)
def test_cli_flags(tmp_path, capsys, key, value, accepted) -> None:
    # on a command line 3 and "3" are the same text; a word is what cannot be a count there
    text = "three" if value == "3" else str(value)
    code = main(["check", "--skip-latency", "--models", "cunet", "--override", f"cunet:{key}={text}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not accepted" in err[0] and accepted in err[0]
    code = main(["train", "--model", "cunet", "--dataset", "digits", "--steps", "1", "--device", "cpu",
                 "--model-arg", f"{key}={text}", "--out", str(tmp_path / "t"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert ("is not accepted" in err[0]) if key != "channels" else ("--channels N instead" in err[0])


def test_resolution_errors_suggest_an_accepted_value() -> None:
    net = models.build("cunet", width=4)
    with pytest.raises(models.ModelInputError, match="use e.g. 32"):
        net(torch.randn(1, 3, 8, 8), torch.tensor([1]))
    with pytest.raises(models.ModelInputError, match="multiple of 16 and at least 32"):
        models.check_resolution("cunet", 16)
