"""What a trained network says about one image: probabilities, feature maps, saliency.

Everything takes an `nn.Module` and a preprocessed input (1, 1, 28, 28) from core.preprocess.

A dashboard shares one cached model between all its browser sessions, so the rules are:
- The model is put in eval mode once, when it is loaded (core.checkpoints.load_checkpoint does).
  Plain forward passes (`predict`, `saliency`, `smoothgrad`) need no lock and never switch modes:
  they only read the weights, and refuse a model that is not in eval mode.
- Forward passes that attach hooks (`feature_maps`) take a lock that belongs to that one model, so
  two of them never see each other's hooks; their hooks also record only their own thread's forward,
  so a plain prediction running meanwhile is neither blocked nor recorded. As torchinfo does, hooks
  are removed and every module's train/eval flag restored in a `finally:`.
- The intra-op thread count is a process setting: a server sets it once (`set_serving_threads`),
  never per call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.checkpoints import CheckpointError, LoadedCheckpoint, load_checkpoint
from core.data import DIGITS, Normalization
from core.i18n import ENGLISH, N_, Message, Translator
from core.models import output_kind, probabilities
from core.preprocess import ImageError, Preprocessed, PreprocessOptions, decode_image, preprocess
from core.runs import BEST_CHECKPOINT

# One lock per model object, for forward passes that hook it; a model that is garbage-collected drops its lock.
_HOOK_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_HOOK_LOCKS_GUARD = threading.Lock()  # only while looking up or creating an entry
SERVING_THREADS = 1  # intra-op threads for a server answering one 28x28 image at a time (see set_serving_threads)
SMOOTHGRAD_SAMPLES = 32  # noisy copies averaged by smoothgrad
SMOOTHGRAD_NOISE = 0.15  # their noise's std, as a fraction of the input's value range (max - min)

# The shipped model the Draw page and `predict` use unless told otherwise.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "default" / "model.pt"

UNSURE_TOP = 0.6  # a top probability below this is a guess
# Top two probabilities closer than this: the model hesitates between two answers. Above 0.2 on
# purpose: with a top of at least 0.6 the runner-up is at most 0.4, so a 0.2 margin could never fire.
UNSURE_MARGIN = 0.3
# Layers that act on a conv's output value by value; a feature map is shown after them.
_ELEMENTWISE = (nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid)


@dataclass(frozen=True)
class Prediction:
    """A network's answer for one image."""

    probabilities: tuple[float, ...]  # 10 class probabilities, or (P(target),) for a binary model
    label: int  # most probable class; binary models: 1 = "is the target digit", 0 = "is not"

    @property
    def binary(self) -> bool:
        return len(self.probabilities) == 1

    @property
    def class_probabilities(self) -> tuple[float, ...]:
        """Probabilities of every answer: (P(not), P(target)) for a binary model."""
        if self.binary:
            return (1.0 - self.probabilities[0], self.probabilities[0])
        return self.probabilities

    @property
    def confidence(self) -> float:
        """Probability of the predicted answer."""
        return self.class_probabilities[self.label]

    @property
    def margin(self) -> float:
        """Gap between the top two probabilities."""
        top, second = sorted(self.class_probabilities, reverse=True)[:2]
        return top - second


@dataclass(frozen=True)
class FeatureMaps:
    """The activations after one conv block, for one image."""

    name: str  # the modules they come out of, e.g. "conv1 → bn1 → relu1"
    maps: torch.Tensor  # (C, H, W)


def set_serving_threads(threads: int = SERVING_THREADS) -> None:
    """Set this process's torch intra-op thread count once, for serving single-image predictions.

    One 28x28 image is far too little work to split: with two threads on a 2-core CPU that is busy
    with anything else, every op waits at the team's barrier for a descheduled peer (measured on
    the default model: p95 100 ms with two threads, 1.6 ms with one). Call it at start-up, before the
    threads that predict are created: torch copies the count into each new thread on its first op.
    Training runs in its own processes, which set their own counts.
    """
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def hook_lock(model: nn.Module) -> threading.Lock:
    """The lock that forward passes attaching hooks to `model` hold; other models have their own."""
    with _HOOK_LOCKS_GUARD:
        lock = _HOOK_LOCKS.get(model)
        if lock is None:
            lock = _HOOK_LOCKS[model] = threading.Lock()
        return lock


def require_eval(model: nn.Module) -> None:
    """Raise ValueError unless every module is in eval mode (plain forward passes never switch modes)."""
    if any(module.training for module in model.modules()):
        raise ValueError("the model must be in eval mode (load_checkpoint returns it so); call model.eval() once")


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; every module's train/eval flag restored after, as torchinfo does.

    Only for code that holds the model's `hook_lock`: switching modes is not safe while another
    thread runs the same model. A model loaded for serving is already in eval mode, so this changes nothing.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def predict(model: nn.Module, model_input: torch.Tensor) -> Prediction:
    """Probabilities and label for one preprocessed image (1, 1, 28, 28), by a model in eval mode; no lock."""
    require_eval(model)
    with torch.inference_mode():
        probs = probabilities(model(model_input), output_kind(model))[0]  # (K,)
    values = tuple(float(p) for p in probs)
    label = int(values[0] >= 0.5) if len(values) == 1 else int(probs.argmax())
    return Prediction(values, label)


def predict_image(
    model: nn.Module, norm: Normalization, image: np.ndarray, options: PreprocessOptions | None = None
) -> tuple[Preprocessed, Prediction | None]:
    """The whole trip for an RGBA/RGB/grey array: preprocess, then predict unless there is no ink."""
    stages = preprocess(image, norm, options)
    if stages.model_input is None:
        return stages, None
    return stages, predict(model, stages.model_input)


def unsure_reason(prediction: Prediction, min_top: float = UNSURE_TOP, min_margin: float = UNSURE_MARGIN,
                  translator: Translator = ENGLISH) -> str | None:
    """Why the prediction should not be trusted, in words (the translator's language), or None when it is clear."""
    top, margin = prediction.confidence, prediction.margin
    if top < min_top:
        return translator.gettext("its top probability is only {top} (below {limit})").format(
            top=translator.percent(top, 0), limit=translator.percent(min_top, 0))
    if margin < min_margin:
        return translator.gettext("its top two answers are only {margin} apart (less than {limit})").format(
            margin=translator.percent(margin, 0), limit=translator.percent(min_margin, 0))
    return None


def conv_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(label, module whose output to show) per Conv2d: after its BatchNorm/activation when they follow it."""
    blocks: list[tuple[str, nn.Module]] = []
    for parent in model.modules():
        children = list(parent.named_children())
        for index, (name, child) in enumerate(children):
            if not isinstance(child, nn.Conv2d):
                continue
            names = [name]
            last: nn.Module = child
            for follower_name, follower in children[index + 1 :]:
                if not isinstance(follower, _ELEMENTWISE):
                    break
                names.append(follower_name)
                last = follower
            blocks.append((" → ".join(names), last))
    return blocks


def feature_maps(model: nn.Module, model_input: torch.Tensor) -> list[FeatureMaps]:
    """The feature maps of every conv block for one image (1, 1, 28, 28), in forward order.

    Holds the model's `hook_lock` while its hooks are attached. The hooks record only this thread's
    forward pass: a plain `predict` on the same model from another thread runs meanwhile, unrecorded.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    owner = threading.get_ident()

    def keep(label: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            if threading.get_ident() == owner:  # hooks run in the thread of the forward pass that fires them
                captured[label] = output[0].detach().clone()  # (C, H, W); clone: a later ReLU may be in-place

        return hook

    with hook_lock(model), evaluating(model), torch.inference_mode():
        try:
            for label, module in conv_blocks(model):
                handles.append(module.register_forward_hook(keep(label)))
            model(model_input)
        finally:
            for handle in handles:
                handle.remove()
    return [FeatureMaps(label, maps) for label, maps in captured.items()]


def _input_gradients(model: nn.Module, inputs: torch.Tensor, class_index: int | None) -> tuple[torch.Tensor, int]:
    """d score / d input for a batch (B, 1, 28, 28) in one forward and one backward pass; and the class used.

    The score is the network's output for `class_index` (default: the class it predicts for the first
    image; the single logit for a binary model) before any softmax. Each image's score depends only on
    that image in eval mode, so the gradient of their sum gives every image its own. The weights'
    gradients are not touched: only the inputs' are computed.
    """
    require_eval(model)
    pixels = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        outputs = model(pixels)  # (B, K)
        if class_index is None:
            class_index = int(outputs[0].argmax()) if outputs.shape[1] > 1 else 0
        (gradients,) = torch.autograd.grad(outputs[:, class_index].sum(), pixels)
    return gradients, class_index


def saliency(model: nn.Module, model_input: torch.Tensor, class_index: int | None = None) -> torch.Tensor:
    """|d score / d input| over the 28x28 input: which pixels would move the answer most. (28, 28).

    The score is the network's own output for `class_index` (default: the predicted class; the
    single logit for a binary model) before any softmax the caller applies.
    """
    gradients, _ = _input_gradients(model, model_input, class_index)
    return gradients[0, 0].abs()


def smoothgrad(
    model: nn.Module,
    model_input: torch.Tensor,
    class_index: int | None = None,
    samples: int = SMOOTHGRAD_SAMPLES,
    noise: float = SMOOTHGRAD_NOISE,
    seed: int = 0,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the `saliency` map averaged over noisy copies of the image. (28, 28).

    The plain gradient of a ReLU network jumps from pixel to pixel; averaged over `samples` copies
    with Gaussian noise of std `noise` x the input's value range, what remains is what holds in the
    image's whole neighbourhood. As in the paper, the map itself (|gradient|) is averaged: averaging
    signed gradients first would keep their sign flips as speckle. The copies go through one batched
    forward and backward pass; the noise comes from its own generator seeded with `seed`, so the
    same image gives the same map. The score is that of `class_index`, by default the class
    predicted for the clean image.
    """
    image = model_input.detach()[:1]  # (1, 1, 28, 28)
    sigma = noise * float(image.max() - image.min())
    generator = torch.Generator().manual_seed(seed)
    jitter = torch.randn((samples, *image.shape[1:]), generator=generator) * sigma  # (N, 1, 28, 28)
    # The clean image first: its prediction picks the class. (N + 1, 1, 28, 28)
    batch = torch.cat([image, image + jitter.to(image.device, image.dtype)])
    gradients, _ = _input_gradients(model, batch, class_index)
    return gradients[1:, 0].abs().mean(0)


def total_variation(image: torch.Tensor) -> float:
    """Sum of absolute differences between neighbouring pixels of a (H, W) map, over the map's sum: scale-free."""
    variation = (image[1:] - image[:-1]).abs().sum() + (image[:, 1:] - image[:, :-1]).abs().sum()
    return float(variation / image.sum().clamp(min=1e-12))


def saliency_summary(gradient: torch.Tensor, count: int = 10) -> tuple[float, float, float]:
    """(mean row, mean column) of the `count` largest values of a (H, W) map, and their share of its total."""
    top = gradient.flatten().topk(count)
    width = gradient.shape[1]
    share = float(top.values.sum() / gradient.sum().clamp(min=1e-12))
    return float((top.indices // width).float().mean()), float((top.indices % width).float().mean()), share


# ---------------------------------------------------------------------------------------------
# Speed: preprocessing + prediction per image, as the Draw page does it on every stroke


@dataclass(frozen=True)
class PredictTiming:
    """Wall time of preprocess + predict for one canvas-sized image, over many images."""

    count: int  # predictions timed (after the warm-up), over one or more passes
    p50_ms: float
    p95_ms: float
    max_ms: float
    accuracy: float  # fraction of the timed predictions that were right (a sanity check, not a metric)


def time_predictions(
    model: nn.Module,
    norm: Normalization,
    images: list[np.ndarray],
    labels: list[int],
    warmup: int = 20,
    min_seconds: float = 0.0,
) -> PredictTiming:
    """Time `predict_image` on each RGBA image, after `warmup` untimed calls.

    Passes over the images repeat until at least `min_seconds` have gone by, so that a short list
    still samples a long enough stretch of whatever else the machine is doing.
    """
    for image in images[:warmup]:
        predict_image(model, norm, image)
    times: list[float] = []
    right = 0
    end = time.perf_counter() + min_seconds
    while not times or time.perf_counter() < end:
        for image, label in zip(images, labels, strict=True):
            start = time.perf_counter()
            _, prediction = predict_image(model, norm, image)
            times.append(time.perf_counter() - start)
            right += prediction is not None and prediction.label == label
    millis = np.array(times) * 1000.0
    return PredictTiming(
        count=len(times),
        p50_ms=float(np.percentile(millis, 50)),
        p95_ms=float(np.percentile(millis, 95)),
        max_ms=float(millis.max()),
        accuracy=right / len(times),
    )


# ---------------------------------------------------------------------------------------------
# Command line: `python -m core predict [PATH ...] [--image FILE ...] [--folder DIR] [--checkpoint PATH] [--json]`

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what `predict --folder` reads (any case); other files are skipped
EXIT_ALL_ANSWERED, EXIT_SOME_FAILED, EXIT_NOTHING_ANSWERED = 0, 1, 2  # `predict`'s exit codes


def prediction_record(prediction: Prediction | None, task: str, target_digit: int,
                      classes: tuple[str, ...] = DIGITS) -> dict[str, object]:
    """The JSON the CLI prints: prediction, probabilities (10, or 1 for binary), empty; for a model of named
    classes (Fashion-MNIST) also `class`, the predicted class's name, and `classes`, every name in output order."""
    record: dict[str, object] = {
        "prediction": None if prediction is None else prediction.label,
        "probabilities": None if prediction is None else [round(p, 6) for p in prediction.probabilities],
        "empty": prediction is None,
        "task": task,
    }
    if task == "binary":
        record["target_digit"] = target_digit  # prediction 1 = "is this digit", 0 = "is not"
    elif classes != DIGITS:
        record["class"] = None if prediction is None else classes[prediction.label]
        record["classes"] = list(classes)
    return record


def _describe(record: dict[str, object]) -> str:
    """The human-readable line(s) for one CLI answer."""
    probabilities = record["probabilities"]
    if not isinstance(probabilities, list):
        return "no ink found: nothing to predict (draw or scan a digit, light on dark or dark on light)"
    if record["task"] == "binary":
        target = record["target_digit"]
        verdict = "is" if record["prediction"] == 1 else "is not"
        return f"{verdict} a {target}: P({target}) = {probabilities[0]:.1%}"
    names = record.get("classes")
    name = names.__getitem__ if isinstance(names, list) else str  # a class index -> what to print
    ranked = sorted(enumerate(probabilities), key=lambda item: -item[1])
    others = ", ".join(f"{name(index)}: {p:.1%}" for index, p in ranked[1:4])
    return f"prediction: {name(ranked[0][0])} ({ranked[0][1]:.1%}); next: {others}"


def images_in(folder: Path) -> list[Path]:
    """The image files directly in `folder` (IMAGE_SUFFIXES, any case), sorted by name; OSError if unreadable."""
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def read_image_file(path: Path) -> np.ndarray:
    """An image file as an RGBA array; ImageError (never OSError) saying why it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ImageError(Message(N_("cannot read the file: %(reason)s"), {"reason": reason})) from error
    return decode_image(data)


def predict_file(loaded: LoadedCheckpoint, path: Path) -> dict[str, object]:
    """One CLI record for one file: `image` plus the prediction's fields, or `image` and `error`."""
    try:
        image = read_image_file(path)
    except ImageError as error:
        return {"image": str(path), "error": str(error)}
    _, prediction = predict_image(loaded.model, loaded.normalization, image)
    return {"image": str(path), **prediction_record(prediction, loaded.task, loaded.target_digit, loaded.classes)}


def _cmd_predict(args: argparse.Namespace) -> int:
    """Answer every image path (positional or `--image`) and every image in each `--folder`, one line each,
    with the model loaded once.

    Exit code: 0 every image answered (an image with no ink counts: it is answered "empty"); 1 some could
    not be read (their lines carry `error`; the others were answered); 2 none answered, or nothing to do
    (a bad checkpoint, no image given, a folder that cannot be listed).
    """
    given = [Path(image) for image in args.image or []]
    paths = [path for path in given if not path.is_dir()]  # an --image that is a folder reads as --folder
    for folder in [path for path in given if path.is_dir()] + [Path(folder) for folder in args.folder or []]:
        try:
            found = images_in(folder)
        except OSError as error:
            return _fail(f"cannot list the folder {folder}: {error.strerror or error}")
        if not found:
            return _fail(f"no image in {folder} (read: {', '.join(IMAGE_SUFFIXES)}, any case)")
        paths += found
    if not paths:
        return _fail("nothing to predict: give image files or folders (PATH ... or --image FILE, repeatable) "
                     "and/or --folder DIR")
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        return _fail(f"{args.checkpoint}: {error}")
    failed = 0
    for path in paths:
        record = predict_file(loaded, path)
        failed += "error" in record
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"error: {path}: {record['error']}", file=sys.stderr)
        else:
            print(_describe(record) if len(paths) == 1 else f"{path}: {_describe(record)}", flush=True)
    if failed == 0:
        return EXIT_ALL_ANSWERED
    return EXIT_NOTHING_ANSWERED if failed == len(paths) else EXIT_SOME_FAILED


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_NOTHING_ANSWERED


class _ExtendImages(argparse.Action):
    """Positional paths join the `--image` list, so both forms keep the order they were given in."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), *(values or [])])  # nargs="*": a list


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core predict [PATH ...] [--image FILE ...] [--folder DIR ...] [--checkpoint PATH] [--json]`."""
    parser = subparsers.add_parser(
        "predict", help="run the Draw page's pipeline on image files and print one prediction per image",
        description="Reads the images given as PATH or --image (files, or folders of them) and in each --folder. "
        "Prints one line per image (with --json: one JSON object per line, with `image`, `prediction`, "
        "`probabilities`, `empty`, `task`, or `image` and `error`). The model is loaded once. Exit code: 0 every "
        "image answered, 1 some could not be read (the rest were answered), 2 none answered or nothing to do.",
    )
    parser.add_argument("image", nargs="*", action=_ExtendImages, metavar="PATH",
                        help="image files or folders to read, the same as --image (the two may be mixed; order kept)")
    parser.add_argument("--image", action="append", metavar="FILE",
                        help="a PNG or JPEG of one digit, any size and polarity, or a folder of them (as --folder); "
                        "repeat for several")
    parser.add_argument("--folder", action="append", metavar="DIR",
                        help=f"every image file directly in DIR ({', '.join(IMAGE_SUFFIXES)}, any case), by name")
    parser.add_argument(
        "--checkpoint", default=str(DEFAULT_CHECKPOINT),
        help=f"a checkpoint file, or a run folder for its {BEST_CHECKPOINT} (default: the shipped model)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.set_defaults(func=_cmd_predict)
