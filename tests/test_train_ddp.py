"""Two CPU processes under torchrun (gloo): DDP training through the CLI, and sampling split
across ranks giving exactly the images one process makes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.quality.sweep import generate
from bench.train import latest_checkpoint, load_for_sampling

TRAIN_ARGS = ["train", "--model", "unet", "--dataset", "digits", "--resolution", "16",
              "--width", "8", "--model-arg", "attn_heads=1", "--model-arg", "attn_dim_head=8",
              "--steps", "4", "--batch-size", "8", "--limit", "64", "--checkpoint-every", "2",
              "--device", "cpu", "--no-progress"]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    from bench.cli import main
    from bench.quality.sweep import generate
    from bench.train import init_distributed, latest_checkpoint, load_for_sampling

    out = Path(sys.argv[1])
    dist = init_distributed("cpu")  # the CLI below joins this group instead of making its own
    assert dist.world_size == 2
    code = main([*sys.argv[2:], "--out", str(out / "run")])
    assert code == 0, code
    model, diffusion, _ = load_for_sampling(latest_checkpoint(out / "run"))
    images = generate(model, diffusion, (1, 16, 16), n=6, steps=3, sampler="ddpm", seed=5,
                      chunk=2, device=torch.device("cpu"), dist=dist)
    if dist.rank == 0:
        torch.save(images, out / "samples.pt")
    else:
        assert images is None
    dist.close()
""")


def _torchrun(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_two_process_training_and_split_sampling(tmp_path):
    script = tmp_path / "ddp_job.py"
    script.write_text(SCRIPT)
    done = _torchrun([str(script), str(tmp_path), *TRAIN_ARGS], cwd=Path.cwd())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    checkpoint = latest_checkpoint(tmp_path / "run")
    state = load_checkpoint(checkpoint)
    assert state["step"] == 4 and state["meta"]["world_size"] == 2

    torch.set_num_threads(1)
    model, diffusion, _ = load_for_sampling(checkpoint)
    alone = generate(model, diffusion, (1, 16, 16), n=6, steps=3, sampler="ddpm", seed=5,
                     chunk=2, device=torch.device("cpu"))
    split = torch.load(tmp_path / "samples.pt")
    assert split.shape == (6, 1, 16, 16) and split.dtype == torch.uint8
    assert torch.equal(split, alone)


@pytest.mark.slow
def test_torchrun_module_command(tmp_path):
    """The literal user command: torchrun --nproc_per_node 2 -m bench train ..."""
    done = _torchrun(["-m", "bench", *TRAIN_ARGS, "--out", str(tmp_path / "run")], cwd=Path.cwd())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained unet on digits: step 4" in done.stdout
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["meta"]["world_size"] == 2
