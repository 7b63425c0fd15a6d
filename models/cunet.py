"""The continuous U-Net (docs/paper.md, "The networks"): a U-Net whose blocks are neural ODEs.

Layout at a 64x64 input (nf = num_filters = 16, level widths 32, 64, 128, 256, bottleneck 512):
lift 3 -> nf -> 2nf; encoder level l: ODE(c_l) [attention] then, except after the bottleneck,
Conv1x1 c_l -> c_{l+1}, softplus, bilinear x1/2; decoder level: bilinear x2, concat the skip,
Conv1x1 -> c, softplus, ODE(c) [attention]; Conv1x1 2nf -> out_channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import CUNetConfig
from models.layers import FullAttention, sinusoidal_table
from models.ode import ODEBlock, ODEFunction
from models.validation import check_denoiser_inputs

LEVELS = 4


class Lift(nn.Module):
    """The 'initial velocity' lift: norm -> conv3x3 (in -> nf) -> softplus -> norm -> conv1x1
    (nf -> 2nf) -> [+ time] -> softplus. The ODE state is this 2nf-channel tensor."""

    def __init__(self, in_channels: int, num_filters: int) -> None:
        super().__init__()
        self.norm1 = nn.InstanceNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, num_filters, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, 1)

    def forward(self, x: torch.Tensor, time_shift: torch.Tensor | None) -> torch.Tensor:
        h = self.conv2(self.norm2(F.softplus(self.conv1(self.norm1(x)))))
        return F.softplus(h if time_shift is None else h + time_shift[:, :, None, None])


class Transition(nn.Module):
    """Conv1x1 -> [+ time] -> softplus: changes the width between ODE blocks."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in, dim_out, 1)

    def forward(self, x: torch.Tensor, time_shift: torch.Tensor | None) -> torch.Tensor:
        h = self.conv(x)
        return F.softplus(h if time_shift is None else h + time_shift[:, :, None, None])


class TimeMLP(nn.Module):
    """Linear(E, c) -> SiLU -> Linear(c, c): the wo/R variant's additive time vector."""

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, channels), nn.SiLU(), nn.Linear(channels, channels))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


class Stage(nn.Module):
    """One ODE block with its optional attention (whose output replaces the state: no residual)."""

    def __init__(self, channels: int, attention: bool, config: CUNetConfig) -> None:
        super().__init__()
        film_dim = config.time_embed_dim if config.time_conditioning == "film" else None
        func = ODEFunction(channels, residual=config.ode_residual, norm=config.norm, film_dim=film_dim)
        self.ode = ODEBlock(func, config)
        self.attn = (
            FullAttention(channels, config.attn_heads, config.attn_dim_head) if attention else None
        )

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        x = self.ode(x, condition)
        return self.attn(x) if self.attn is not None else x


def resolution_rule(config: CUNetConfig) -> tuple[int, int]:
    """(multiple, minimum) of the input resolution: LEVELS halvings, and at least 2x2 at the
    bottom. The one rule: the family's resolution check and the forward's input check read it."""
    multiple = 2**LEVELS
    return multiple, 2 * multiple


class ContinuousUNet(nn.Module):
    """cU-Net. `time_conditioning` decides whether (and how) the output depends on t."""

    def __init__(self, config: CUNetConfig) -> None:
        super().__init__()
        self.config = c = config
        nf = c.num_filters
        widths = [2 * nf * 2**level for level in range(LEVELS + 1)]  # 32, 64, 128, 256, 512
        self.multiple, self.min_size = resolution_rule(c)
        # Frozen sinusoidal table: a parameter (counted, saved) that never trains.
        self.time_table = nn.Parameter(
            sinusoidal_table(c.num_timesteps, c.time_embed_dim), requires_grad=False
        )
        self.lift = Lift(c.in_channels, nf)
        self.encoder = nn.ModuleList(
            Stage(widths[i], f"enc{i + 1}" in c.attention, c) for i in range(LEVELS)
        )
        self.down = nn.ModuleList(Transition(widths[i], widths[i + 1]) for i in range(LEVELS))
        self.bottleneck = Stage(widths[LEVELS], "mid" in c.attention, c)
        self.up = nn.ModuleList(
            Transition(widths[LEVELS - i] + widths[LEVELS - i - 1], widths[LEVELS - i - 1])
            for i in range(LEVELS)
        )
        self.decoder = nn.ModuleList(
            Stage(widths[LEVELS - i - 1], f"dec{i + 1}" in c.attention, c) for i in range(LEVELS)
        )
        self.head = nn.Conv2d(widths[0], c.out_channels, 1)
        self.time_mlps = None
        if c.time_conditioning == "additive":
            # Added to the lift, the four encoder and the four decoder transitions.
            sites = [widths[0], *widths[1:], *reversed(widths[:-1])]
            self.time_mlps = nn.ModuleList(TimeMLP(c.time_embed_dim, w) for w in sites)

    def stages(self) -> list[tuple[str, Stage]]:
        """The ODE stages in execution order, with their names."""
        named = [(f"enc{i + 1}", s) for i, s in enumerate(self.encoder)]
        named.append(("mid", self.bottleneck))
        named += [(f"dec{i + 1}", s) for i, s in enumerate(self.decoder)]
        return named

    @property
    def capture_safe(self) -> bool:
        """True when a forward reads nothing on the host (every block on the native solver), so
        that it can be captured in a CUDA graph."""
        return all(stage.ode.backend == "native" for _, stage in self.stages())

    def breakdown_blocks(self) -> list[tuple[str, nn.Module]]:
        """Blocks for the profiler, in execution order. Each ODE block is listed with its ODE
        function inside it, so the block's own time is the solver's bookkeeping."""
        blocks: list[tuple[str, nn.Module]] = [("time embedding", m) for m in self.time_mlps or []]
        blocks.append(("lift", self.lift))

        def stage(name: str, item: Stage) -> list[tuple[str, nn.Module]]:
            named = [(f"{name} ODE solver", item.ode), (f"{name} ODE function", item.ode.func)]
            return named + ([(f"{name} attention", item.attn)] if item.attn is not None else [])

        for i, (item, down) in enumerate(zip(self.encoder, self.down, strict=True)):
            blocks += stage(f"enc{i + 1}", item) + [(f"down{i + 1} transition", down)]
        blocks += stage("mid", self.bottleneck)
        for i, (up, item) in enumerate(zip(self.up, self.decoder, strict=True)):
            blocks += [(f"up{i + 1} transition", up)] + stage(f"dec{i + 1}", item)
        return blocks + [("head", self.head)]

    def ode_functions(self) -> list[tuple[str, nn.Module]]:
        """The ODE function of every block (what one evaluation runs), for `macs_per_eval`."""
        return [(name, stage.ode.func) for name, stage in self.stages()]

    def last_nfe(self) -> dict[str, int]:
        """ODE-function evaluations of the last forward, per block and in total."""
        counts = {name: stage.ode.last_nfe for name, stage in self.stages()}
        counts["total"] = sum(counts.values())
        return counts

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.config
        check_denoiser_inputs(
            "cunet", x, t, in_channels=c.in_channels, multiple=self.multiple,
            num_timesteps=c.num_timesteps, min_size=self.min_size,
        )
        embedding = self.time_table[t] if c.time_conditioning != "none" else None
        shifts = [mlp(embedding) for mlp in self.time_mlps] if self.time_mlps is not None else None
        condition = embedding if c.time_conditioning == "film" else None

        def shift(index: int) -> torch.Tensor | None:
            return shifts[index] if shifts is not None else None

        x = self.lift(x, shift(0))
        skips = []
        for i, (stage, down) in enumerate(zip(self.encoder, self.down, strict=True)):
            x = stage(x, condition)
            skips.append(x)
            x = F.interpolate(down(x, shift(1 + i)), scale_factor=0.5, mode="bilinear")
        x = self.bottleneck(x, condition)
        for i, (up, stage) in enumerate(zip(self.up, self.decoder, strict=True)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear")
            x = up(torch.cat((x, skips.pop()), dim=1), shift(1 + LEVELS + i))
            x = stage(x, condition)
        return self.head(x)
