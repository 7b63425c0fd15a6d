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

import math
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

@dataclass(frozen=True)
class ClassifierSpec:
    """How a classifier extractor is trained: on which dataset's labels, at which input size,
    for how many epochs. A dataset with a fixed held-out split (`DatasetInfo.heldout`) trains on
    all of itself and reports its accuracy on that split; others hold out a seeded 20 %."""

    dataset: str
    input_size: int = 16
    epochs: int = 6
    width: int = 16
    """Channels of the first conv stage (the second has twice as many)."""
    shift: int = 0
    """Training augmentation: random translations of up to this many pixels (0: none)."""
    stages: int = 2
    """Conv + pool stages (3 keeps a 4x4 grid of a 32x32 input without averaging it away)."""
    cosine: bool = False
    """Cosine learning-rate decay to zero over the epochs (else a constant rate)."""
    norm: bool = False
    """Batch normalisation after every conv (in eval mode for the features)."""


CLASSIFIERS: dict[str, ClassifierSpec] = {
    "digits-classifier": ClassifierSpec("digits"),
    "mnist-classifier": ClassifierSpec("mnist"),
    # The 28x28 digits padded to 32: the classifier sees the exact pixels the denoisers generate.
    # Trained on all 4,000 training digits; measured on the 1,000 held-out ones (2 threads, CPU):
    # 96.3 % for the digits network at 15 epochs, 97.3 % with 32 channels and +-2 px shifts,
    # 97.9 % with a third stage, cosine decay and 30 epochs, 98.2 % with batch norm at 20 epochs.
    "mnist5k-classifier": ClassifierSpec("mnist5k", input_size=32, epochs=20, width=32, shift=2,
                                         stages=3, cosine=True, norm=True),
}
CLASSIFIER_EXTRACTORS: dict[str, str] = {name: spec.dataset for name, spec in CLASSIFIERS.items()}
"""Extractor name -> dataset whose labels train it (a view of CLASSIFIERS)."""
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

    def __init__(self, num_classes: int = 10, feature_dim: int = 64, width: int = 16,
                 stages: int = 2, norm: bool = False) -> None:
        super().__init__()
        sizes = [1, width, *([2 * width] * (stages - 1))]
        layers: list[nn.Module] = []
        for inputs, outputs in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Conv2d(inputs, outputs, 3, padding=1),
                       *([nn.BatchNorm2d(outputs)] if norm else []), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(
            *layers, nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim), nn.ReLU(),
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
        model = DigitClassifier(meta["num_classes"], meta["feature_dim"], meta.get("width", 16),
                                meta.get("stages", 2), meta.get("norm", False))
        model.load_state_dict(payload["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as error:
        detail = " ".join(str(error).split())[:200]
        raise UsageError(f"{path} is not a classifier file written by bench.quality.features "
                         f"({detail}); delete it to retrain") from None
    return model.eval(), meta


def ensure_classifier(dataset: str = "digits", *, root: str | Path | None = None,
                      input_size: int = 16, seed: int = 0, epochs: int = 6,
                      max_train: int = 20_000, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                      retrain: bool = False, width: int = 16, shift: int = 0, stages: int = 2,
                      cosine: bool = False, norm: bool = False) -> ClassifierInfo:
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
    if (width, shift, stages, cosine, norm) != (16, 0, 2, False, False):  # older files keep theirs
        settings.update(width=width, shift=shift, stages=stages, cosine=cosine, norm=norm)
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
    from bench.data.registry import dataset_info

    dataset = load_dataset(settings["dataset"], root=root, resolution=settings["input_size"],
                           channels=1, limit=settings["max_train"])
    if not dataset.has_labels:
        raise UsageError(f"{settings['dataset']}: no labels found; the classifier needs them")
    images, labels = dataset.stack()
    if len(images) < 10 or labels.min() < 0:
        raise UsageError(f"{settings['dataset']}: the classifier needs at least 10 labelled images")
    heldout_name = dataset_info(settings["dataset"]).heldout
    if heldout_name:  # a fixed held-out split: train on every training image, test on it
        heldout = load_dataset(heldout_name, root=root, resolution=settings["input_size"],
                               channels=1)
        test_images, test_labels = heldout.stack()
        images, labels = torch.cat([images, test_images]), torch.cat([labels, test_labels])
        n_test = len(test_images)
        split = torch.arange(len(images) - n_test), torch.arange(len(images) - n_test, len(images))
    else:
        split = None
    num_classes = int(labels.max()) + 1
    # One thread: the same float reductions everywhere (so the same weights for a seed), and no
    # OpenMP spinning on a small shared CPU, where this tiny network trains fastest anyway.
    with torch_threads(1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings["seed"])
            if split is None:
                order = torch.randperm(len(images))
                n_test = max(1, len(images) // 5)
                test, train = order[:n_test], order[n_test:]
            else:
                train, test = split
            model = DigitClassifier(num_classes, width=settings.get("width", 16),
                                    stages=settings.get("stages", 2),
                                    norm=settings.get("norm", False))
            optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
            batches = math.ceil(len(train) / 32) * settings["epochs"]
            decay = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, batches)
                     if settings.get("cosine") else None)
            model.train()
            for _ in range(settings["epochs"]):
                for batch in torch.randperm(len(train)).split(32):
                    index = train[batch]
                    inputs = _shifted(images[index], settings.get("shift", 0))
                    loss = F.cross_entropy(model(inputs), labels[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if decay is not None:
                        decay.step()
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(images[part]).argmax(1) for part in test.split(512)])
            square = torch.cat([model.features(images[part]).square() for part in train.split(512)])
            model.feature_scale.fill_(float(square.mean().clamp_min(1e-12).rsqrt()))
    accuracy = float((predicted == labels[test]).float().mean())
    return model, {**settings, "accuracy": accuracy, "n_train": len(train), "n_test": n_test,
                   "num_classes": num_classes, "feature_dim": model.head.in_features,
                   "feature_scale": float(model.feature_scale)}


def _shifted(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Each image translated by a random whole number of pixels in [-shift, shift] per axis,
    filled with the background value (-1); from torch's global generator (seeded by the caller)."""
    if shift <= 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * shift + 1, (len(images), 2))
    return torch.stack([padded[i, :, dy:dy + size, dx:dx + size]
                        for i, (dy, dx) in enumerate(offsets.tolist())])


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
    spec = CLASSIFIERS[extractor]
    return ensure_classifier(spec.dataset, root=data_root, input_size=spec.input_size,
                             epochs=spec.epochs, width=spec.width, shift=spec.shift,
                             stages=spec.stages, cosine=spec.cosine, norm=spec.norm,
                             cache_dir=cache_dir).path


register_extractors()

__all__ = [
    "CLASSIFIERS", "CLASSIFIER_EXTRACTORS", "ClassifierFeatureExtractor", "ClassifierInfo",
    "ClassifierSpec", "DEFAULT_CACHE_DIR",
    "DigitClassifier", "ENV_INCEPTION_WEIGHTS", "EXTRACTORS", "INCEPTION",
    "INCEPTION_LAYER", "INCEPTION_WEIGHTS_FILE", "INCEPTION_WEIGHTS_URL", "classifier_path",
    "default_feature_layer",
    "ensure_classifier", "load_classifier", "register_extractors", "resolve_inception_weights",
    "resolve_weights", "score_label",
]
