"""Feature extractors for FID/KID, all run through torch-fidelity's own registry.

- "inception-v3-compat": torch-fidelity's standard InceptionV3 (the FID/KID of the literature).
  Its weights must be a local file, never a download: pass a path, or set
  `BENCH_INCEPTION_WEIGHTS`, or leave torch-fidelity's own file in the torch hub checkpoint
  folder. The file is `weights-inception-2015-12-05-6726825d.pth` from `INCEPTION_WEIGHTS_URL`.
- "digits-classifier" / "mnist-classifier": a small CNN trained here, in seconds on a CPU, on the
  dataset's 10 labels; the feature is its 64-d penultimate layer. Numbers from it are *not*
  comparable with published FIDs, so `score_label` names the extractor in every label.
  Trained weights are cached as `runs/cache/<dataset>-classifier-r<input>-s<seed>.pt` and reused
  while the training settings match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from bench.errors import UsageError
from bench.files import atomic_path
from bench.measure.workload import torch_threads

INCEPTION = "inception-v3-compat"
INCEPTION_LAYER = "2048"  # the pool3 features of standard FID/KID
INCEPTION_WEIGHTS_URL: str = URL_INCEPTION_V3
INCEPTION_WEIGHTS_FILE: str = URL_INCEPTION_V3.rsplit("/", 1)[-1]
ENV_INCEPTION_WEIGHTS = "BENCH_INCEPTION_WEIGHTS"

# Extractor name -> dataset whose labels train it.
CLASSIFIER_EXTRACTORS: dict[str, str] = {
    "digits-classifier": "digits",
    "mnist-classifier": "mnist",
}
EXTRACTORS: tuple[str, ...] = (INCEPTION, *CLASSIFIER_EXTRACTORS)
DEFAULT_CACHE_DIR = Path("runs") / "cache"
CLASSIFIER_FEATURES = ("penultimate", "logits")
CLASSIFIER_FORMAT = 1  # bump when the network or training changes: cached files then retrain


def score_label(metric: str, extractor: str, feature_layer: str | None = None) -> str:
    """Column label for a score: plain "FID"/"KID" only with the standard Inception features.

    Anything else names its features, e.g. "FID (digits-classifier features)", or
    "FID (inception-v3-compat 64 features)" for a non-standard Inception layer.
    """
    name = metric.strip().upper()
    if extractor != INCEPTION:
        return f"{name} ({extractor} features)"
    if feature_layer not in (None, INCEPTION_LAYER):
        return f"{name} ({extractor} {feature_layer} features)"
    return name


def default_feature_layer(extractor: str) -> str:
    """The layer FID/KID use by default: Inception's 2048-d pool, a classifier's penultimate."""
    return INCEPTION_LAYER if extractor == INCEPTION else "penultimate"


# ----------------------------------------------------------------------------- Inception weights


def resolve_inception_weights(path: str | Path | None = None) -> Path:
    """The local InceptionV3 weights file; a one-line UsageError instead of any download.

    Looks at `path`, then `$BENCH_INCEPTION_WEIGHTS`, then torch-fidelity's own download
    location (the torch hub checkpoint folder).
    """
    how = (f"download {INCEPTION_WEIGHTS_URL} on a connected machine, copy it here and set "
           f"{ENV_INCEPTION_WEIGHTS}=/path/{INCEPTION_WEIGHTS_FILE} (or pass that path as the "
           "Inception weights path)")
    candidates = ((path, "given"), (os.environ.get(ENV_INCEPTION_WEIGHTS), ENV_INCEPTION_WEIGHTS))
    for given, origin in candidates:
        if given is not None and str(given).strip():
            candidate = Path(given).expanduser()
            if not candidate.is_file():
                raise UsageError(f"Inception weights file {candidate} ({origin}) does not exist; "
                                 f"expected torch-fidelity's {INCEPTION_WEIGHTS_FILE}: {how}")
            return candidate
    hub_copy = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if hub_copy.is_file():
        return hub_copy
    raise UsageError(f"standard FID needs the InceptionV3 weights {INCEPTION_WEIGHTS_FILE} and "
                     f"this machine may not download them: {how}")


# ----------------------------------------------------------------------------- classifier network


class DigitClassifier(nn.Module):
    """Small grey-image CNN: two conv+pool stages, a 64-d penultimate layer, a linear head.

    The adaptive pool makes any input size work (16 -> 4x4 grid unchanged, 28 -> 7 -> 4).
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        # Set after training so that embeddings have unit mean square on the training images:
        # KID's cubic kernel (x.y/d + 1)^3 then works in the same regime as with Inception
        # features instead of being dominated by the cubic term.
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, feature_dim) of grey images (N, 1, S, S) in [-1, 1]."""
        return self.body(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The FID/KID feature: penultimate activations times `feature_scale`."""
        return self.features(x) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def uint8_to_classifier_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> grey float (N, 1, S, S) in [-1, 1], the classifier's input."""
    grey = images.float().mean(dim=1, keepdim=True) / 127.5 - 1.0
    if grey.shape[-2:] != (input_size, input_size):
        grey = F.interpolate(grey, size=(input_size, input_size), mode="bilinear",
                             align_corners=False, antialias=True)
    return grey


@dataclass(frozen=True)
class ClassifierInfo:
    """A trained (or cached) classifier: where its weights are and how well it classifies."""

    path: Path
    extractor: str
    dataset: str
    input_size: int
    seed: int
    epochs: int
    max_train: int
    accuracy: float
    n_train: int
    n_test: int
    feature_dim: int
    feature_scale: float


def classifier_path(dataset: str, input_size: int, seed: int,
                    cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    return Path(cache_dir) / f"{dataset}-classifier-r{input_size}-s{seed}.pt"


def load_classifier(path: str | Path) -> tuple[DigitClassifier, dict]:
    """Network and metadata from a classifier file; UsageError if it is not one."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        meta = dict(payload["meta"])
        model = DigitClassifier(meta["num_classes"], meta["feature_dim"])
        model.load_state_dict(payload["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as error:
        detail = " ".join(str(error).split())[:200]
        raise UsageError(f"{path} is not a classifier file written by bench.quality.features "
                         f"({detail}); delete it to retrain") from None
    return model.eval(), meta


def ensure_classifier(dataset: str = "digits", *, root: str | Path | None = None,
                      input_size: int = 16, seed: int = 0, epochs: int = 6,
                      max_train: int = 20_000, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                      retrain: bool = False) -> ClassifierInfo:
    """Train the feature classifier for `dataset` once, deterministically, and cache it.

    A cached file is reused only if it was trained with the same settings. 20 % of the first
    `max_train` images (a seeded split) are held out to report accuracy.
    """
    extractor = f"{dataset}-classifier"
    if extractor not in CLASSIFIER_EXTRACTORS:
        raise UsageError(f"no classifier for dataset {dataset!r}; labelled datasets: "
                         f"{', '.join(CLASSIFIER_EXTRACTORS.values())}")
    settings = {"format": CLASSIFIER_FORMAT, "dataset": dataset, "input_size": input_size,
                "seed": seed, "epochs": epochs, "max_train": max_train}
    path = classifier_path(dataset, input_size, seed, cache_dir)
    if path.is_file() and not retrain:
        try:
            _, meta = load_classifier(path)
        except UsageError:
            meta = {}
        if all(meta.get(key) == value for key, value in settings.items()):
            return _info(path, meta)
    model, meta = _train(settings, root)
    # a concurrent reader never sees half a file; a handle keeps the bytes independent of the
    # temporary name (torch.save names the archive after a path's stem)
    with atomic_path(path) as partial, open(partial, "wb") as handle:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, handle)
    return _info(path, meta)


def _info(path: Path, meta: dict) -> ClassifierInfo:
    fields = {name: meta[name] for name in ClassifierInfo.__dataclass_fields__
              if name not in ("path", "extractor")}
    return ClassifierInfo(path=path, extractor=f"{meta['dataset']}-classifier", **fields)


def _train(settings: dict, root: str | Path | None) -> tuple[DigitClassifier, dict]:
    from bench.data import load_dataset

    dataset = load_dataset(settings["dataset"], root=root, resolution=settings["input_size"],
                           channels=1, limit=settings["max_train"])
    if not dataset.has_labels:
        raise UsageError(f"{settings['dataset']}: no labels found; the classifier needs them")
    images, labels = dataset.stack()
    if len(images) < 10 or labels.min() < 0:
        raise UsageError(f"{settings['dataset']}: the classifier needs at least 10 labelled images")
    num_classes = int(labels.max()) + 1
    # One thread: the same float reductions everywhere (so the same weights for a seed), and no
    # OpenMP spinning on a small shared CPU, where this tiny network trains fastest anyway.
    with torch_threads(1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings["seed"])
            order = torch.randperm(len(images))
            n_test = max(1, len(images) // 5)
            test, train = order[:n_test], order[n_test:]
            model = DigitClassifier(num_classes)
            optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
            model.train()
            for _ in range(settings["epochs"]):
                for batch in torch.randperm(len(train)).split(32):
                    index = train[batch]
                    loss = F.cross_entropy(model(images[index]), labels[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(images[part]).argmax(1) for part in test.split(512)])
            square = torch.cat([model.features(images[part]).square() for part in train.split(512)])
            model.feature_scale.fill_(float(square.mean().clamp_min(1e-12).rsqrt()))
    accuracy = float((predicted == labels[test]).float().mean())
    return model, {**settings, "accuracy": accuracy, "n_train": len(train), "n_test": n_test,
                   "num_classes": num_classes, "feature_dim": model.head.in_features,
                   "feature_scale": float(model.feature_scale)}


# ----------------------------------------------------------------------------- torch-fidelity glue


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor around a trained `DigitClassifier`.

    torch-fidelity builds it as `cls(name, features_list, **calculate_metrics_kwargs)`; the
    classifier file comes in as `feature_extractor_weights_path`. Input: uint8 (N, 3, H, W) of
    any size; it is greyed, resized to the classifier's input size and scaled to [-1, 1].
    Output: float32 features in the order of `features_list`.
    """

    def __init__(self, name: str, features_list, feature_extractor_weights_path=None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise UsageError(f"{name}: no classifier file given (feature_extractor_weights_path); "
                             "create one with bench.quality.features.ensure_classifier")
        self.classifier, meta = load_classifier(feature_extractor_weights_path)
        self.input_size = int(meta["input_size"])
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return CLASSIFIER_FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate",
                "prc": "penultimate"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3):
            raise ValueError(f"{self.name}: expected uint8 images (N, 3, H, W), got "
                             f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}")
        grey = uint8_to_classifier_input(x, self.input_size)
        penultimate = self.classifier.features(grey)
        outputs = {"penultimate": penultimate * self.classifier.feature_scale,
                   "logits": self.classifier.head(penultimate)}
        return tuple(outputs[name].float() for name in self.features_list)


def register_extractors() -> None:
    """Register the classifier extractors with torch-fidelity (safe to call repeatedly)."""
    for name in CLASSIFIER_EXTRACTORS:
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            torch_fidelity.register_feature_extractor(name, ClassifierFeatureExtractor)


def resolve_weights(extractor: str, weights_path: str | Path | None = None, *,
                    cache_dir: str | Path = DEFAULT_CACHE_DIR,
                    data_root: str | Path | None = None) -> Path:
    """The weights file `extractor` will load; trains/caches the default classifier if needed."""
    if extractor == INCEPTION:
        return resolve_inception_weights(weights_path)
    if extractor not in CLASSIFIER_EXTRACTORS:
        raise UsageError(f"unknown feature extractor {extractor!r}; choose one of "
                         f"{', '.join(EXTRACTORS)}")
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise UsageError(f"{extractor}: classifier file {path} does not exist")
        return path
    return ensure_classifier(CLASSIFIER_EXTRACTORS[extractor], root=data_root,
                             cache_dir=cache_dir).path


register_extractors()

__all__ = [
    "CLASSIFIER_EXTRACTORS", "ClassifierFeatureExtractor", "ClassifierInfo", "DEFAULT_CACHE_DIR",
    "DigitClassifier", "ENV_INCEPTION_WEIGHTS", "EXTRACTORS", "INCEPTION",
    "INCEPTION_LAYER", "INCEPTION_WEIGHTS_FILE", "INCEPTION_WEIGHTS_URL", "classifier_path",
    "default_feature_layer",
    "ensure_classifier", "load_classifier", "register_extractors", "resolve_inception_weights",
    "resolve_weights", "score_label",
]
