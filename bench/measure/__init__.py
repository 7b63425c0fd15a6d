"""Pure measuring functions of the efficiency harness: a model and settings in, numbers out.

One module per job: `params` (parameter counts), `compute` (MACs/FLOPs per denoiser call and per
ODE evaluation), `memory` (peak memory of one inference call / one training step), `latency`
(timing loop and per-call denoiser latency), `sampling` (wall time per generated sample),
`machine` (measured float32 matmul peak). No module here writes files or plots.
"""
