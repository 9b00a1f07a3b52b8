"""A personal hard set: drawings a user saved with their true label, and how every model scores on them.

Stored with the runs, under `<runs root>/.hardset/` (a hidden folder, so it is never taken for a run):
one `<item id>.npz` per item, written atomically (temp file, then rename), holding
    pixels  (28, 28) uint8: the drawing after the standard preprocessing (every step on), white on black,
            before any model's normalization; each model normalizes it its own way when scored
    raw     (H, W, 4) uint8: the drawing or upload as it came, RGBA
    meta    a JSON string: dataset, label, source ("draw", "upload"), saved_at, version
The item id is a hash of the dataset and the 28x28 pixels: saving the same drawing twice, or importing an
item already there, is a duplicate, never a second copy. Labels follow the dataset: every item says which
dataset its label belongs to (a digit for MNIST, a fashion item for Fashion-MNIST), and a model is
scored only on the items of its own dataset. A file that cannot be read is reported with the reason and
left where it is: nothing is deleted without the user asking.

Export is one zip: `manifest.json` (format, version, the items' metadata) and `items/<id>.npz` as on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.checkpoints import load_checkpoint, write_atomically
from core.data import DATASETS, Normalization, to_model_input
from core.i18n import N_, Message
from core.inference import DEFAULT_CHECKPOINT
from core.models import output_kind, probabilities
from core.preprocess import MNIST_SIZE, prepare
from core.runs import BEST_CHECKPOINT, list_runs, runs_root

FOLDER = ".hardset"  # under the runs root
FORMAT = "mnist-lab-hardset"  # an export's manifest says this
VERSION = 1
MAX_EXPORT_BYTES = 64 * 1024 * 1024  # larger uploads are refused before unzipping
MAX_ITEMS = 5000  # items read from one export
MAX_RAW_SIDE = 4096  # a raw image's longest side, px (as core.preprocess reads at most)
MAX_ITEM_BYTES = MAX_RAW_SIDE * MAX_RAW_SIDE * 4 + 2**20  # one item's arrays, unpacked
SOURCES = ("draw", "upload")


class HardSetError(ValueError):
    """Something the user can fix (an empty drawing, a file that is not an export); `messages` for the pages."""

    def __init__(self, *messages: Message) -> None:
        self.messages = messages
        super().__init__("; ".join(message.english() for message in messages))


@dataclass(frozen=True)
class HardItem:
    """One saved drawing and its true label."""

    item_id: str  # hash of dataset + pixels; also the file name
    dataset: str  # key in core.data.DATASETS: which classes `label` counts in
    label: int  # the true class index
    pixels: np.ndarray  # (28, 28) uint8, preprocessed, white on black, not normalized
    raw: np.ndarray  # (H, W, 4) uint8, the drawing or upload as given
    source: str  # "draw" or "upload"
    saved_at: str  # ISO time, to the microsecond (the set's order)


@dataclass(frozen=True)
class HardSet:
    """Every readable item (oldest first) and a message for each file that could not be read."""

    items: tuple[HardItem, ...]
    problems: tuple[Message, ...]  # one per damaged file, which stays on disk

    def of_dataset(self, dataset: str) -> tuple[HardItem, ...]:
        return tuple(item for item in self.items if item.dataset == dataset)


@dataclass(frozen=True)
class SaveResult:
    item: HardItem  # the stored item: the new one, or the one already there
    duplicate_of: HardItem | None  # the item already stored with the same drawing (nothing was written)


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int  # items already in the set, skipped
    problems: tuple[Message, ...]  # entries of the export that were refused, each with its reason


@dataclass(frozen=True)
class ItemAnswer:
    """One model's answer for one item."""

    item_id: str
    label: int  # the true class
    predicted: int  # the model's class; for a one-vs-rest model 1 = "is the target", 0 = "is not"
    correct: bool
    confidence: float  # probability of the predicted answer


@dataclass(frozen=True)
class HardSetScore:
    """A model's answers on the items of its dataset."""

    dataset: str
    answers: tuple[ItemAnswer, ...]

    @property
    def right(self) -> int:
        return sum(answer.correct for answer in self.answers)

    @property
    def accuracy(self) -> float | None:
        """Fraction right, or None when the set has no item of this model's dataset."""
        return self.right / len(self.answers) if self.answers else None


# ---------------------------------------------------------------------------------------------
# Items on disk


def hardset_dir(root: Path | str | None = None) -> Path:
    """The folder of the hard set under the runs root (not created here)."""
    return runs_root(root) / FOLDER


def preprocessed_pixels(raw: np.ndarray) -> np.ndarray | None:
    """The standard pipeline's 28x28 image of `raw` as uint8, or None when it has no ink."""
    prepared = prepare(raw)
    return None if prepared is None else np.rint(prepared.centered * 255.0).astype(np.uint8)


def item_id_of(dataset: str, pixels: np.ndarray) -> str:
    """The id of an item: 16 hex digits of SHA-256 over its dataset and its 28x28 pixels."""
    return hashlib.sha256(dataset.encode() + b"\0" + np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]


def _check_label(dataset: str, label: int) -> None:
    if dataset not in DATASETS:
        raise HardSetError(Message(N_("unknown dataset %(dataset)s"), {"dataset": dataset}))
    classes = len(DATASETS[dataset].classes)
    if not 0 <= label < classes:
        raise HardSetError(Message(N_("label %(label)s is not one of the %(count)d classes of %(dataset)s"),
                                   {"label": label, "count": classes, "dataset": DATASETS[dataset].title}))


def _item_bytes(item: HardItem) -> bytes:
    meta = {"dataset": item.dataset, "label": item.label, "source": item.source, "saved_at": item.saved_at,
            "version": VERSION}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, pixels=item.pixels, raw=item.raw, meta=np.array(json.dumps(meta)))
    return buffer.getvalue()


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """`data` into `path` so that a reader never sees half an item (core.checkpoints.write_atomically)."""
    write_atomically(path, lambda f: f.write(data))


def as_rgba(image: np.ndarray) -> np.ndarray:
    """A grey (H, W), grey+alpha (H, W, 2), RGB or RGBA uint8 image as RGBA (H, W, 4); opaque where it had no alpha."""
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[2]
    colour = pixels[..., :3] if channels >= 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    alpha = pixels[..., -1:] if channels in (2, 4) else np.full_like(pixels[..., :1], 255)
    return np.concatenate([colour, alpha], axis=-1)


class ItemError(ValueError):
    """What is wrong with one stored or imported item; `message` renders in any language, str() is English."""

    def __init__(self, template: str, **params: object) -> None:
        self.message = Message(template, dict(params))
        super().__init__(self.message.english())


def reason_of(error: BaseException) -> Message | str:
    """The reason to show for a refused item: its Message, or the system's own words (an OSError)."""
    return error.message if isinstance(error, ItemError) else str(error)


def _check_sizes(data: bytes) -> None:
    """Refuse an .npz whose arrays would unpack to more than MAX_ITEM_BYTES (a zip bomb), before unpacking."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as error:
        raise ItemError(N_("not a readable item (%(error)s)"), error=str(error)) from error
    if unpacked > MAX_ITEM_BYTES:
        raise ItemError(N_("it would unpack to %(size).0f MB; an item is at most %(limit).0f MB"),
                        size=unpacked / 1e6, limit=MAX_ITEM_BYTES / 1e6)


def item_from_bytes(data: bytes, name: str) -> HardItem:
    """An item from its .npz bytes, checked through; ValueError saying what is wrong."""
    _check_sizes(data)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            pixels, raw, meta_text = archive["pixels"], archive["raw"], str(archive["meta"])
    except Exception as error:  # np.load raises anything from BadZipFile to KeyError on a damaged file
        raise ItemError(N_("not a readable item (%(error)s)"), error=f"{type(error).__name__}: {error}") from error
    if pixels.shape != (MNIST_SIZE, MNIST_SIZE) or pixels.dtype != np.uint8:
        raise ItemError(N_("its image is %(kind)s, not uint8 28×28"), kind=f"{pixels.dtype} {pixels.shape}")
    if raw.ndim != 3 or raw.shape[2] != 4 or raw.dtype != np.uint8 or max(raw.shape[:2]) > MAX_RAW_SIDE:
        raise ItemError(N_("its raw drawing is %(kind)s, not an RGBA image"), kind=f"{raw.dtype} {raw.shape}")
    try:
        meta = json.loads(meta_text)
        dataset, label, source, saved_at = meta["dataset"], meta["label"], meta["source"], meta["saved_at"]
    except (ValueError, KeyError, TypeError) as error:
        raise ItemError(N_("its metadata is damaged (%(error)s)"), error=str(error)) from error
    if dataset not in DATASETS or not isinstance(label, int) or not 0 <= label < len(DATASETS[dataset].classes):
        raise ItemError(N_("its label %(label)s is not a class of dataset %(dataset)s"), label=repr(label),
                        dataset=repr(dataset))
    item_id = item_id_of(dataset, pixels)
    if item_id != name:
        raise ItemError(N_("its content does not match its name (expected %(expected)s)"), expected=item_id)
    return HardItem(item_id, dataset, label, pixels, raw, str(source), str(saved_at))


def hardset_stamp(root: Path | str | None = None) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime_ns, size) of every item file: changes whenever an item is added, replaced or deleted."""
    folder = hardset_dir(root)
    if not folder.is_dir():
        return ()
    stamps = []
    for path in sorted(folder.glob("*.npz")):
        try:
            stat = path.stat()
        except OSError:  # deleted meanwhile
            continue
        stamps.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def load_hardset(root: Path | str | None = None) -> HardSet:
    """Every item under the root, oldest first; damaged files reported (and left in place), never dropped silently."""
    folder = hardset_dir(root)
    if not folder.is_dir():
        return HardSet((), ())
    items, problems = [], []
    for path in sorted(folder.glob("*.npz")):
        try:
            items.append(item_from_bytes(path.read_bytes(), path.stem))
        except (OSError, ValueError) as error:
            problems.append(Message(N_("%(file)s in the hard set cannot be read and was skipped: %(reason)s. "
                                       "It is left on disk; delete it there or import a good copy."),
                                    {"file": str(path), "reason": reason_of(error)}))
    return HardSet(tuple(sorted(items, key=lambda item: (item.saved_at, item.item_id))), tuple(problems))


def save_item(raw: np.ndarray, dataset: str, label: int, source: str = "draw",
              root: Path | str | None = None) -> SaveResult:
    """Add a drawing (RGBA/RGB/grey uint8) with its true label; a drawing already there is not stored twice."""
    _check_label(dataset, label)
    pixels = preprocessed_pixels(raw)
    if pixels is None:
        raise HardSetError(Message(N_("the drawing has no ink: there is nothing to save")))
    item_id = item_id_of(dataset, pixels)
    path = hardset_dir(root) / f"{item_id}.npz"
    if path.is_file():
        try:
            stored = item_from_bytes(path.read_bytes(), item_id)
            return SaveResult(stored, duplicate_of=stored)
        except (OSError, ValueError):
            pass  # a damaged copy of the same drawing: the good one replaces it
    item = HardItem(item_id, dataset, label, pixels, as_rgba(raw), source if source in SOURCES else "draw",
                    datetime.now().astimezone().isoformat(timespec="microseconds"))
    write_bytes_atomically(path, _item_bytes(item))
    return SaveResult(item, duplicate_of=None)


def delete_item(item_id: str, root: Path | str | None = None) -> bool:
    """Remove one item; False when it was not there. Only ids of the set's own form are accepted."""
    if len(item_id) != 16 or any(char not in "0123456789abcdef" for char in item_id):
        raise HardSetError(Message(N_("%(id)s is not the id of a hard-set item"), {"id": item_id}))
    path = hardset_dir(root) / f"{item_id}.npz"
    try:
        path.unlink()
    except FileNotFoundError:  # never there, or deleted a moment ago by another session or a double click
        return False
    return True


def set_fingerprint(items: Iterable[HardItem]) -> str:
    """A short hash of the items' ids and labels: changes whenever the set's content does (a cache key)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.item_id}:{item.dataset}:{item.label};".encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Export and import


def export_hardset(items: Sequence[HardItem]) -> bytes:
    """A zip of the items: manifest.json and items/<id>.npz, the same bytes as on disk."""
    manifest = {"format": FORMAT, "version": VERSION, "items": [
        {"id": item.item_id, "dataset": item.dataset, "label": item.label,
         "class": DATASETS[item.dataset].classes[item.label], "source": item.source, "saved_at": item.saved_at}
        for item in items]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # .npz files are compressed already
        archive.writestr("manifest.json", json.dumps(manifest, indent=1))
        for item in items:
            archive.writestr(f"items/{item.item_id}.npz", _item_bytes(item))
    return buffer.getvalue()


def _open_export(data: bytes) -> zipfile.ZipFile:
    """The export's zip with its manifest checked; HardSetError when it is not one."""
    not_export = Message(N_("this file is not a hard-set export of MNIST Lab (a .zip with manifest.json)"))
    if len(data) > MAX_EXPORT_BYTES:
        raise HardSetError(Message(N_("the file is %(size)s MB; at most %(limit)s MB is read"),
                                   {"size": f"{len(data) / 1e6:.1f}", "limit": f"{MAX_EXPORT_BYTES / 1e6:.0f}"}))
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        manifest = json.loads(archive.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise HardSetError(not_export) from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise HardSetError(not_export)
    if manifest.get("version") != VERSION:
        raise HardSetError(Message(N_("this export has version %(version)s; this code reads version %(expected)s"),
                                   {"version": str(manifest.get("version")), "expected": VERSION}))
    return archive


def import_hardset(data: bytes, root: Path | str | None = None) -> ImportResult:
    """Add the items of an export: each checked as a stored item is; duplicates skipped; refusals listed."""
    archive = _open_export(data)
    names = [name for name in archive.namelist() if name.startswith("items/") and name.endswith(".npz")]
    if len(names) > MAX_ITEMS:
        raise HardSetError(Message(N_("this export holds %(count)d items; at most %(limit)d are read"),
                                   {"count": len(names), "limit": MAX_ITEMS}))
    folder = hardset_dir(root)
    added = duplicates = 0
    problems: list[Message] = []
    for name in names:
        stem = Path(name).stem
        try:
            if archive.getinfo(name).file_size > MAX_ITEM_BYTES:
                raise ItemError(N_("it is larger than an item can be (%(limit).0f MB)"), limit=MAX_ITEM_BYTES / 1e6)
            item = item_from_bytes(archive.read(name), stem)
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            problems.append(Message(N_("%(entry)s was not imported: %(reason)s"),
                                    {"entry": name, "reason": reason_of(error)}))
            continue
        path = folder / f"{item.item_id}.npz"
        if path.is_file():
            duplicates += 1
            continue
        write_bytes_atomically(path, _item_bytes(item))
        added += 1
    return ImportResult(added, duplicates, tuple(problems))


# ---------------------------------------------------------------------------------------------
# Scoring


def score_model(model: nn.Module, norm: Normalization, dataset: str, task: str, target_digit: int,
                items: Sequence[HardItem]) -> HardSetScore:
    """The model's answers on the items of its dataset, in one batched forward pass (model in eval mode)."""
    own = [item for item in items if item.dataset == dataset]
    if not own:
        return HardSetScore(dataset, ())
    if any(module.training for module in model.modules()):
        raise ValueError("the model must be in eval mode (load_checkpoint returns it so)")
    pixels = torch.from_numpy(np.stack([item.pixels for item in own]))  # (B, 28, 28) uint8
    with torch.inference_mode():
        probs = probabilities(model(to_model_input(pixels, norm)), output_kind(model))  # (B, K)
    answers = []
    for item, row in zip(own, probs, strict=True):
        if task == "binary":
            target = float(row[0])
            predicted = int(target >= 0.5)
            truth = int(item.label == target_digit)
            confidence = target if predicted else 1.0 - target
        else:
            predicted, truth, confidence = int(row.argmax()), item.label, float(row.max())
        answers.append(ItemAnswer(item.item_id, item.label, predicted, predicted == truth, confidence))
    return HardSetScore(dataset, tuple(answers))


@dataclass(frozen=True)
class ModelToScore:
    """A checkpoint the hard set is scored on: the shipped model or a run's best."""

    key: str  # "default" or the run id
    path: Path  # the checkpoint file


def models_to_score(root: Path | str | None = None) -> list[ModelToScore]:
    """The default model, then every run (newest first) that has a best checkpoint."""
    found = [ModelToScore("default", DEFAULT_CHECKPOINT)]
    for run in list_runs(root):
        best = run.run_dir / BEST_CHECKPOINT
        if best.is_file():
            found.append(ModelToScore(run.run_id, best))
    return found


def score_checkpoint(path: Path | str, items: Sequence[HardItem]) -> HardSetScore:
    """Load a checkpoint (weights_only) and score it on the items of its dataset; CheckpointError if it cannot."""
    loaded = load_checkpoint(path)
    return score_model(loaded.model, loaded.normalization, loaded.dataset, loaded.task, loaded.target_digit, items)
