"""Checkpoint format, atomic save, one-line errors on load, and the checkpoint-MiB measure."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from bench import checkpoint as ckpt
from bench.errors import UsageError


class StandInDiffusion(nn.Module):
    """Tiny stand-in with a 1000-step schedule buffer and an epsilon-prediction loss."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("alphas_cumprod", torch.linspace(0.999, 0.01, 1000))

    def training_loss(self, model, x0, generator=None):
        t = torch.randint(0, 1000, (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return ((model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t) - noise) ** 2).mean()


class Net(nn.Module):
    def __init__(self, frozen: int = 0) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 64, 3, padding=1)
        self.b = nn.Conv2d(64, 3, 3, padding=1)
        self.table = nn.Parameter(torch.randn(frozen), requires_grad=False)

    def forward(self, x, t):
        return self.b(torch.relu(self.a(x))) + self.table.sum() * 0


def expected_mib(model: nn.Module) -> float:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return (16 * trainable + 8 * frozen) / 2**20


@pytest.mark.parametrize("frozen", [0, 100_000])
def test_checkpoint_mib_is_16_bytes_per_trainable_and_8_per_frozen(frozen):
    model = Net(frozen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mib = ckpt.checkpoint_mib(model, shape=(3, 8, 8), diffusion=StandInDiffusion())
    # overhead: the 4,000-byte schedule buffer plus zip/pickle headers of a few tensors
    assert 0 <= (mib - expected_mib(model)) * 2**20 < 24 * 1024
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_mib_with_the_real_diffusion():
    pytest.importorskip("models.diffusion")
    model = Net()
    mib = ckpt.checkpoint_mib(model, shape=(3, 8, 8))
    assert 0 <= (mib - expected_mib(model)) * 2**20 < 128 * 1024


def _training_state(tmp_path):
    model = Net()
    diffusion = StandInDiffusion()
    optimizer = torch.optim.Adam(model.parameters())
    ema = ckpt.make_ema(model, 0.5)
    return model, diffusion, optimizer, ema


def test_save_and_load_round_trip_atomically(tmp_path):
    model, diffusion, optimizer, ema = _training_state(tmp_path)
    path = ckpt.save_checkpoint(
        tmp_path / "c.pt", model=model, diffusion=diffusion, ema=ema, optimizer=optimizer,
        step=7, meta={"preset": "net"},
    )
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]  # no temp file left behind
    state = ckpt.load_checkpoint(path)
    assert state["format"] == "beyond-u-bench/1" and state["step"] == 7
    assert set(state) == set(ckpt.KEYS) and state["meta"] == {"preset": "net"}
    assert torch.equal(state["model"]["a.weight"], model.a.weight)
    assert torch.equal(state["schedule"]["alphas_cumprod"], diffusion.alphas_cumprod)
    assert "module.a.weight" in state["ema"]


def test_ema_averages_with_the_given_decay():
    model = nn.Linear(1, 1, bias=False)
    ema = ckpt.make_ema(model, 0.75)
    with torch.no_grad():
        model.weight.fill_(1.0)
        ema.update_parameters(model)  # first update copies
        model.weight.fill_(5.0)
        ema.update_parameters(model)
    assert ema.module.weight.item() == pytest.approx(0.75 * 1.0 + 0.25 * 5.0)


def test_load_errors_are_one_line_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UsageError, match="not a readable checkpoint") as error:
        ckpt.load_checkpoint(corrupt)
    assert "\n" not in str(error.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UsageError, match="not a beyond-u-bench/1 checkpoint"):
        ckpt.load_checkpoint(foreign)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(UsageError, match="not a beyond-u-bench/1 checkpoint"):
        ckpt.load_checkpoint(tmp_path / "tensor.pt")


def test_save_into_missing_folder_is_a_usage_error(tmp_path):
    model, diffusion, optimizer, ema = _training_state(tmp_path)
    with pytest.raises(UsageError):
        ckpt.save_checkpoint(
            tmp_path / "no" / "c.pt", model=model, diffusion=diffusion, ema=ema,
            optimizer=optimizer, step=0,
        )
