"""Image-quality scoring for the quality harness.

`features` registers the feature extractors with torch-fidelity (standard InceptionV3 from a
local weights file, or a small classifier trained on a labelled dataset) and names each score
honestly (`score_label`); `scoring.score` computes FID and KID through torch-fidelity.
"""
