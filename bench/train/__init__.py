"""Training denoisers with the DDPM objective: `train(TrainConfig(...))` or `python -m bench train`.

Single process or torchrun (DistributedDataParallel: gloo on CPU, NCCL on CUDA); Adam with the
paper's betas, EMA, gradient clipping, bf16 autocast on CUDA, checkpoints in `bench.checkpoint`'s
format with exact resume (batches and noise are functions of seed, step and rank).
"""

from bench.measure.train_step import TrainingDiverged, make_optimizer, train_step
from bench.train.checkpoints import latest_checkpoint, load_for_sampling
from bench.train.config import TrainConfig
from bench.train.distributed import DistContext, init_distributed
from bench.train.loop import TrainResult, train

__all__ = [
    "DistContext",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "init_distributed",
    "latest_checkpoint",
    "load_for_sampling",
    "make_optimizer",
    "train",
    "train_step",
]
