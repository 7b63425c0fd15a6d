"""Image-quality scoring for the quality harness.

`features` registers the feature extractors with torch-fidelity (standard InceptionV3 from a
local weights file, or a small classifier trained on a labelled dataset) and names each score
honestly (`score_label`); `scoring.score` computes FID and KID through torch-fidelity.
`statistics` holds the pure numbers on feature matrices and per-seed scores: FD, FD-infinity,
KID with a sampling spread, the real-vs-real floor, seed intervals and a better/worse verdict.
"""
