"""Why a network gives its answer: robustness sweeps, nearest training images, Grad-CAM, 2-D embeddings.

Everything takes an `nn.Module` in eval mode (core.checkpoints.load_checkpoint returns it so) and a
preprocessed input (1, 1, 28, 28) from core.preprocess, and follows core.inference's rules for a model
that many sessions share: plain forward passes need no lock; passes that hook the model hold its
`hook_lock`, record only their own thread's forward, and remove their hooks and restore every module's
train/eval flag in a `finally:`. The thread count is the serving code's (set once per process).

The "penultimate layer" is the input of the model's last `nn.Linear` (its output head): for our
registry networks the flattened conv features, for an MLP its hidden layer.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.checkpoints import write_atomically
from core.data import Normalization, to_model_input
from core.inference import conv_blocks, evaluating, hook_lock, require_eval
from core.models import output_kind, probabilities

if TYPE_CHECKING:  # sklearn's decomposition and manifold load only when a map is made
    from sklearn.decomposition import PCA

# The robustness sweep: each transform's amounts, identity included (so every curve passes through the answer).
SHIFTS_PX = (-6, -4, -2, 0, 2, 4, 6)  # pixels right (x) or down (y)
ROTATIONS_DEG = (-60, -40, -20, 0, 20, 40, 60)  # degrees clockwise
SCALES = (0.5, 0.67, 0.83, 1.0, 1.17, 1.33, 1.5)  # size factor about the image center
STROKES_PX = (-2, -1, 0, 1, 2)  # negative: thinned (eroded) by that many px; positive: thickened (dilated)
SWEEP = {"shift_x": SHIFTS_PX, "shift_y": SHIFTS_PX, "rotate": ROTATIONS_DEG, "scale": SCALES, "stroke": STROKES_PX}
IDENTITY = {"shift_x": 0.0, "shift_y": 0.0, "rotate": 0.0, "scale": 1.0, "stroke": 0.0}

FEATURE_BATCH = 1000  # images per forward pass when embedding a whole split
NEIGHBOURS = 8  # training images shown nearest to the drawing
FEATURES_DIR = ".features"  # the neighbour indexes' disk cache, in the runs root (hidden: list_runs skips it)
TSNE_POINTS = 2000  # test images in the t-SNE map (t-SNE's cost grows faster than linearly)
TSNE_PLACE_NEIGHBOURS = 10  # the drawing sits at the mean map position of this many nearest points


# ---------------------------------------------------------------------------------------------
# Robustness: the drawing transformed, one batched forward pass


@dataclass(frozen=True)
class Transform:
    kind: str  # one of SWEEP
    amount: float  # px for shifts and stroke, degrees clockwise for rotate, factor for scale

    @property
    def identity(self) -> bool:
        return self.amount == IDENTITY[self.kind]


def blank_value(norm: Normalization | None) -> float:
    """What a pixel without ink is worth in the model's input (0 unnormalized; -mean/std normalized)."""
    zero = torch.zeros((1, 1, 1), dtype=torch.uint8)
    return float(to_model_input(zero, norm or Normalization("none", 0.0, 1.0)).flatten()[0])


def as_ink(images: torch.Tensor, norm: Normalization | None) -> torch.Tensor:
    """Model inputs (normalized by `norm`, or not) back to ink in [0, 1], for display."""
    blank, full = blank_value(norm), (1.0 - (norm.mean if norm else 0.0)) / (norm.std if norm else 1.0)
    return ((images - blank) / (full - blank)).clamp(0, 1)


def shift(images: torch.Tensor, dx: int, dy: int, blank: float) -> torch.Tensor:
    """(B, 1, H, W) moved dx px right and dy px down; what comes in from the edge is blank."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return images
    height, width = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad), value=blank)
    return padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]


def rotate_and_scale(images: torch.Tensor, degrees: float, scale: float, blank: float) -> torch.Tensor:
    """(B, 1, H, W) turned `degrees` clockwise and enlarged by `scale` about the center, bilinear; blank outside."""
    theta = math.radians(degrees)
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    # affine_grid maps each output position to where it reads the input: the inverse rotation and scale.
    matrix = torch.tensor([[cos, sin, 0.0], [-sin, cos, 0.0]], dtype=images.dtype).expand(len(images), 2, 3)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    ink = F.grid_sample(images - blank, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return ink + blank


def restroke(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """(B, 1, H, W) with every stroke thickened (pixels > 0, a square max-filter) or thinned (< 0, min-filter).

    Max- and min-pooling commute with any increasing map, so this works on normalized inputs as well.
    """
    if pixels == 0:
        return images
    size = 2 * abs(pixels) + 1
    if pixels > 0:
        return F.max_pool2d(images, size, stride=1, padding=abs(pixels))
    return -F.max_pool2d(-images, size, stride=1, padding=abs(pixels))


def apply_transform(images: torch.Tensor, transform: Transform, blank: float) -> torch.Tensor:
    """(B, 1, H, W) with one transform applied; the identity returns the very same tensor."""
    if transform.identity:
        return images
    if transform.kind in ("shift_x", "shift_y"):
        step = int(transform.amount)
        return shift(images, step if transform.kind == "shift_x" else 0, step if transform.kind == "shift_y" else 0,
                     blank)
    if transform.kind == "rotate":
        return rotate_and_scale(images, transform.amount, 1.0, blank)
    if transform.kind == "scale":
        return rotate_and_scale(images, 0.0, transform.amount, blank)
    if transform.kind == "stroke":
        return restroke(images, int(transform.amount))
    raise ValueError(f"unknown transform {transform.kind!r}")


def sweep_transforms() -> list[Transform]:
    """Every transform of the sweep, kind by kind, amounts in increasing order."""
    return [Transform(kind, float(amount)) for kind, amounts in SWEEP.items() for amount in amounts]


@dataclass(frozen=True)
class Sweep:
    """How the answer changes as the input is transformed."""

    transforms: tuple[Transform, ...]
    images: torch.Tensor  # (N, 1, 28, 28) the transformed model inputs
    probabilities: torch.Tensor  # (N, K) every answer's probability; binary models: (P(not), P(target))
    answer: int  # the class predicted for the untransformed input

    @property
    def labels(self) -> torch.Tensor:
        return self.probabilities.argmax(1)

    def curve(self, kind: str) -> tuple[list[float], list[float], list[int]]:
        """(amounts, P(answer), predicted class) of one transform, in increasing amount."""
        rows = [i for i, t in enumerate(self.transforms) if t.kind == kind]
        return ([self.transforms[i].amount for i in rows], [float(self.probabilities[i, self.answer]) for i in rows],
                [int(self.labels[i]) for i in rows])



def class_probabilities(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """(B, K) probabilities of every answer, in one forward pass, by a model in eval mode; (B, 2) for one logit."""
    require_eval(model)
    with torch.inference_mode():
        probs = probabilities(model(inputs), output_kind(model))  # (B, K)
    return torch.cat([1 - probs, probs], dim=1) if probs.shape[1] == 1 else probs


def robustness_sweep(model: nn.Module, model_input: torch.Tensor, blank: float, answer: int | None = None) -> Sweep:
    """The input shifted, rotated, scaled, thinned and thickened (see SWEEP), all in one batched forward pass.

    `blank` is the value of a pixel without ink (`blank_value`): what a shift or a rotation brings in.
    `answer` is the class predicted for the untransformed input (default: the identity row's argmax).
    The identity rows hold the input itself; their probabilities match a single-image `predict` up to the
    float rounding of a batched forward pass (about 1e-8).
    """
    transforms = sweep_transforms()
    batch = torch.cat([apply_transform(model_input[:1], t, blank) for t in transforms])  # (N, 1, 28, 28)
    probs = class_probabilities(model, batch)
    if answer is None:
        answer = int(probs[next(i for i, t in enumerate(transforms) if t.identity)].argmax())
    return Sweep(tuple(transforms), batch, probs, answer)


# ---------------------------------------------------------------------------------------------
# Penultimate-layer features


def head_layer(model: nn.Module) -> nn.Linear | None:
    """The model's last nn.Linear, in module order: its output head (None if it has none)."""
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def penultimate_features(model: nn.Module, inputs: torch.Tensor,
                         batch_size: int = FEATURE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (B, D), probabilities (B, K)) of model inputs (B, 1, 28, 28), `batch_size` per forward pass.

    The features are what enters the last Linear layer; probabilities are (P(not), P(target)) for a binary
    model. Holds the model's `hook_lock` while its hook is attached; the hook records only this thread's
    forward passes.
    """
    batches = [inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size)]
    return _head_inputs(model, batches)


def image_features(model: nn.Module, images: torch.Tensor, norm: Normalization,
                   batch_size: int = FEATURE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """`penultimate_features` of uint8 images (N, 28, 28), normalized batch by batch as the model was trained."""
    batches = (to_model_input(images[start : start + batch_size], norm) for start in range(0, len(images), batch_size))
    return _head_inputs(model, batches)


def _head_inputs(model: nn.Module, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward each batch with a pre-hook on the head collecting its inputs: (features, probabilities)."""
    head = head_layer(model)
    if head is None:
        raise ValueError("the model has no Linear layer, so it has no penultimate-layer features")
    captured: list[torch.Tensor] = []
    owner = threading.get_ident()

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if threading.get_ident() == owner:  # a plain prediction from another thread stays unrecorded
            captured.append(inputs[0].detach().flatten(1).clone())  # (b, D)

    with hook_lock(model), evaluating(model), torch.inference_mode():
        handle = head.register_forward_pre_hook(hook)
        try:
            outputs = torch.cat([model(batch) for batch in batches])  # (N, K)
        finally:
            handle.remove()
    probs = probabilities(outputs, output_kind(model))
    if probs.shape[1] == 1:
        probs = torch.cat([1 - probs, probs], dim=1)
    return torch.cat(captured), probs


# ---------------------------------------------------------------------------------------------
# Nearest training images (cosine similarity of penultimate features)


def unit_rows(features: torch.Tensor) -> torch.Tensor:
    """(N, D) rows scaled to length 1 (an all-zero row stays zero): dot products become cosine similarities."""
    return features / features.norm(dim=1, keepdim=True).clamp(min=1e-12)


@dataclass(frozen=True)
class Neighbours:
    indices: tuple[int, ...]  # into the indexed images, most similar first
    similarities: tuple[float, ...]  # cosine similarity, 1 = same direction
    labels: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class NeighbourIndex:
    """Unit-length penultimate features of many images, searched by cosine similarity, brute force.

    The rows are stored in float16: half the memory (60,000 x 576 features: 66 MiB), and the scan over
    all of them, bound by memory bandwidth, about twice as fast. The scan's best `RERANK` x k candidates
    are then ranked again in float32, so the similarities returned are those of the stored rows, within
    2^-11 (float16's rounding of unit vectors) of the float32 features' own.
    """

    unit: torch.Tensor  # (N, D) float16, unit rows
    labels: torch.Tensor  # (N,) int64

    RERANK = 8  # candidates per neighbour taken from the float16 scan

    @classmethod
    def build(cls, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, norm: Normalization,
              batch_size: int = FEATURE_BATCH) -> NeighbourIndex:
        """Embed every uint8 image (N, 28, 28), `batch_size` per forward pass; built once per model."""
        features, _ = image_features(model, images, norm, batch_size)
        return cls.of(features, labels)

    @classmethod
    def of(cls, features: torch.Tensor, labels: torch.Tensor) -> NeighbourIndex:
        """The index of features (N, D) already computed."""
        return cls(unit_rows(features.float()).half().contiguous(), labels)

    def query(self, feature: torch.Tensor, k: int = NEIGHBOURS) -> Neighbours:
        """The k indexed images whose features point most nearly the same way as `feature` (D,)."""
        direction = unit_rows(feature.float().reshape(1, -1))[0]  # (D,)
        scan = (self.unit @ direction.half()).float()  # (N,) float16 products, float16 rounding
        candidates = scan.topk(min(self.RERANK * k, len(scan))).indices
        exact = self.unit[candidates].float() @ direction  # (C,) float32
        top = exact.topk(min(k, len(exact)))
        indices = candidates[top.indices].tolist()
        return Neighbours(tuple(indices), tuple(top.values.tolist()), tuple(self.labels[indices].tolist()))


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's weights in memory, in hex: the identity of what was loaded, whatever its file does since."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


KEPT_INDEXES = 4  # index files kept per cache folder, newest first (one is ~66 MiB for 60,000 images)


def cached_index(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, norm: Normalization,
                 cache_dir: Path, tag: str) -> NeighbourIndex:
    """`NeighbourIndex.build`, kept on disk under `cache_dir` by the weights' SHA-256 and `tag` (the images).

    A file that cannot be read or does not fit is rebuilt; a folder that cannot be written only means
    no cache; only the KEPT_INDEXES newest files are kept. Read back with weights_only=True, like every checkpoint.
    """
    file = cache_dir / f"{weights_digest(model)[:32]}-{tag}.pt"
    try:
        saved = torch.load(file, weights_only=True)
        if saved["unit"].shape[0] == len(labels) and torch.equal(saved["labels"], labels):
            os.utime(file)  # used now: the last to be pruned
            return NeighbourIndex(saved["unit"], saved["labels"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        pass
    index = NeighbourIndex.build(model, images, labels, norm)
    try:
        write_atomically(file, lambda handle: torch.save({"unit": index.unit, "labels": index.labels}, handle))
        older = sorted(cache_dir.glob("*.pt"), key=lambda path: path.stat().st_mtime, reverse=True)[KEPT_INDEXES:]
        for stale in older:
            stale.unlink(missing_ok=True)
    except (OSError, RuntimeError):  # a full disk or a read-only folder: the index works without its copy
        pass
    return index


# ---------------------------------------------------------------------------------------------
# Grad-CAM


@dataclass(frozen=True)
class GradCam:
    layer: str  # the conv block it looks at, e.g. "conv3 → bn3 → relu3"
    coarse: torch.Tensor  # (h, w) ReLU(sum_c alpha_c A_c) at the block's own resolution
    heatmap: torch.Tensor  # (28, 28) the coarse map upsampled (bilinear) and divided by its maximum: [0, 1]
    class_index: int  # the output whose score was explained


def grad_cam(model: nn.Module, model_input: torch.Tensor, class_index: int | None = None) -> GradCam | None:
    """Grad-CAM (Selvaraju et al. 2017) on the last conv block for one input (1, 1, 28, 28); None without a conv.

    A_c are the block's output channels (after its BatchNorm and activation), alpha_c the mean over
    positions of d score / d A_c: how much the score rises with channel c as a whole. The map
    ReLU(sum_c alpha_c A_c) marks where the channels that speak for the class are active. The score is
    the network's output for `class_index` (default: the predicted class; a binary model's one logit).
    Holds the model's `hook_lock`; the weights' gradients are not touched.
    """
    blocks = conv_blocks(model)
    if not blocks:
        return None
    label, module = blocks[-1]
    captured: list[torch.Tensor] = []
    owner = threading.get_ident()

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            captured.append(output)

    with hook_lock(model), evaluating(model), torch.enable_grad():
        handle = module.register_forward_hook(hook)
        try:
            outputs = model(model_input[:1].detach())  # (1, K)
        finally:
            handle.remove()
        if class_index is None:
            class_index = int(outputs[0].argmax()) if outputs.shape[1] > 1 else 0
        activations = captured[0]  # (1, C, h, w)
        (gradients,) = torch.autograd.grad(outputs[0, class_index], activations)
    weights = gradients[0].mean(dim=(1, 2))  # (C,)
    coarse = torch.relu((weights[:, None, None] * activations[0].detach()).sum(0))  # (h, w)
    size = model_input.shape[-2:]
    heatmap = F.interpolate(coarse[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = float(heatmap.max())
    return GradCam(label, coarse, heatmap / peak if peak > 0 else heatmap, class_index)


# ---------------------------------------------------------------------------------------------
# Embedding projector: penultimate features of the test set in 2-D


def subsample(count: int, size: int, seed: int = 0) -> np.ndarray:
    """`size` sorted indices out of range(count), drawn without replacement with a fixed seed (all when fewer)."""
    if size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def fit_pca(features: torch.Tensor) -> tuple[PCA, np.ndarray]:
    """sklearn PCA to 2 components fitted on features (N, D); (the fitted PCA, the points (N, 2))."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0)
    points = pca.fit_transform(features.double().numpy())
    return pca, points


def pca_place(pca: PCA, feature: torch.Tensor) -> np.ndarray:
    """Where the fitted PCA puts one more feature vector (D,): (2,)."""
    return np.asarray(pca.transform(feature.double().numpy().reshape(1, -1))[0])


def fit_tsne(features: torch.Tensor, seed: int = 0) -> np.ndarray:
    """sklearn t-SNE of features (n, D) to 2-D (perplexity 30, PCA start, fixed seed): the points (n, 2)."""
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=min(30.0, max(1.0, (len(features) - 1) / 3)), init="pca",
                random_state=seed)
    return np.asarray(tsne.fit_transform(features.double().numpy()))


def tsne_place(points: np.ndarray, features: torch.Tensor, feature: torch.Tensor,
               k: int = TSNE_PLACE_NEIGHBOURS) -> tuple[np.ndarray, tuple[int, ...]]:
    """t-SNE cannot place a new point: the mean map position of its k nearest mapped points (cosine), and those.

    `points` (n, 2) are the map positions of `features` (n, D).
    """
    similarity = unit_rows(features.float()) @ unit_rows(feature.float().reshape(1, -1))[0]  # (n,) exact cosine
    nearest = similarity.topk(min(k, len(similarity))).indices.tolist()
    return points[nearest].mean(0), tuple(nearest)
