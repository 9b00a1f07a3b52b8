"""Export a checkpoint for use outside this project: ONNX, TorchScript, or a standalone train.py.

The ONNX and TorchScript models are self-contained: they take raw pixels scaled to [0, 1],
float32 (N, 1, 28, 28) for any N, apply the checkpoint's normalization inside the graph, and
return the network's own scores: (N, 10) for ten classes (logits, or probabilities /
log-probabilities when the network ends in Softmax / LogSoftmax), (N, 1) for a one-vs-rest
checkpoint (one logit; positive means "yes"). Class names, dataset, normalization and the
source run travel inside the file (ONNX metadata_props, a TorchScript extra file `meta.json`).

Every export is written to a temp file beside the output, verified against the PyTorch model
on the first 1,000 test images of the checkpoint's dataset (same answers, scores within 1e-4),
and only then renamed into place: a failed export leaves no file at the output path.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import runs
from core.checkpoints import LoadedCheckpoint, load_checkpoint
from core.data import get_spec, load_dataset
from core.export_script import render_script
from core.i18n import N_
from core.models import output_kind
from core.training import config_from_dict

FORMATS = ("onnx", "torchscript", "script")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "script": "train.py"}
# The pages translate the titles (N_ marks the one that is words, not a name).
FORMAT_TITLES = {"onnx": "ONNX", "torchscript": "TorchScript", "script": N_("standalone train.py")}
VERIFY_IMAGES = 1000  # test images every export is checked on
TOLERANCE = 1e-4  # largest allowed |exported score - PyTorch score|
INPUT_NAME, OUTPUT_NAME = "pixels", "scores"  # the ONNX graph's input and output
METADATA_FILE = "meta.json"  # the TorchScript extra file holding the metadata
SCRIPT_IMPORTS = {"argparse", "collections", "torch", "torchvision"}  # all a generated train.py may import


class ExportError(ValueError):
    """An export that cannot be made or did not verify; the message says why and what to do."""


@dataclass(frozen=True)
class ExportSource:
    """A checkpoint to export and, when known, the training config and run it came from."""

    checkpoint: LoadedCheckpoint
    config: dict[str, Any] | None  # core.training.config_to_dict form; None when neither run nor checkpoint has it
    run_id: str  # the run that trained it; "" when unknown
    label: str  # how messages and the script's docstring name it: "run ID", else the checkpoint's file name


@dataclass(frozen=True)
class ExportResult:
    """A verified export at `path`."""

    path: Path
    format: str  # one of FORMATS
    size_bytes: int
    write_seconds: float  # building and writing the file
    verify_seconds: float  # loading it back and scoring the test images
    verified_images: int
    max_difference: float  # largest |exported - PyTorch| score over the verified images


def load_source(checkpoint: Path | str, run_folder: Path | None = None) -> ExportSource:
    """A checkpoint file; its run folder's config.json (when given) is the training config, else its own."""
    loaded = load_checkpoint(checkpoint)
    config = runs.read_config(run_folder)["config"] if run_folder is not None else loaded.meta.get("config")
    run_id = run_folder.name if run_folder is not None else str(loaded.meta.get("run_id", ""))
    label = f"run {run_id}" if run_id else loaded.path.name
    return ExportSource(loaded, config if isinstance(config, dict) else None, run_id, label)


def run_source(run_id: str, runs_dir: Path | str | None = None) -> ExportSource:
    """A run's best.pt with the run's config; RunError for an unknown run, ExportError before its first epoch."""
    folder = runs.run_dir(run_id, runs_dir)
    best = folder / runs.BEST_CHECKPOINT
    if not best.is_file():
        raise ExportError(f"run {run_id} has no {runs.BEST_CHECKPOINT} yet: it is written after its first epoch")
    return load_source(best, folder)


# ---------------------------------------------------------------------------------------------
# The exported network and its metadata


class PixelsToScores(nn.Module):
    """Normalization, then the network: what a consumer calls with pixels in [0, 1]."""

    def __init__(self, network: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.network = network
        self.mean, self.std = mean, std  # plain floats: constants in the exported graph

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network((pixels - self.mean) / self.std)  # (N, 1, 28, 28) in [0, 1] -> (N, K) scores


def exportable(source: ExportSource) -> PixelsToScores:
    """The checkpoint's network behind its own normalization, in eval mode."""
    norm = source.checkpoint.normalization
    return PixelsToScores(source.checkpoint.model, norm.mean, norm.std).eval()


def output_description(source: ExportSource) -> str:
    """What the exported model's output means, for its metadata and the README."""
    loaded = source.checkpoint
    classes = _classes(source)
    if loaded.task == "binary":
        return (f"(N, 1): one logit for 'is it {classes[loaded.target_digit]}?' (class {loaded.target_digit}); "
                "sigmoid(logit) is its probability, a logit >= 0 means yes")
    kind = output_kind(loaded.model)
    meaning = {"logits": "logits (softmax gives probabilities)", "softmax": "probabilities (the network ends in "
               "Softmax)", "log_softmax": "log-probabilities (the network ends in LogSoftmax)"}[kind]
    return f"(N, {len(classes)}): {meaning}, one per class in the order of 'classes'; the argmax is the answer"


def _classes(source: ExportSource) -> list[str]:
    meta_classes = source.checkpoint.meta.get("classes")
    return [str(c) for c in meta_classes] if meta_classes else list(get_spec(source.checkpoint.dataset).classes)


def metadata(source: ExportSource) -> dict[str, str]:
    """Plain string metadata stored in every exported model."""
    loaded = source.checkpoint
    return {
        "producer": "MNIST Lab",
        "input": "float32 (N, 1, 28, 28): raw pixels scaled to [0, 1] (white strokes on black, as the dataset); "
                 "the normalization below is applied inside the model",
        "output": output_description(source),
        "classes": json.dumps(_classes(source)),
        "dataset": loaded.dataset,
        "task": loaded.task,
        "target_digit": str(loaded.target_digit),
        "normalization": json.dumps(asdict(loaded.normalization)),
        "architecture": json.dumps(loaded.arch_config),
        "source_run": source.run_id,
        "source_checkpoint": loaded.path.name,
        "epoch": str(loaded.epoch),
        "test_accuracy": str(loaded.metrics.get("test_accuracy", "")),
        "torch_version": torch.__version__,
    }


# ---------------------------------------------------------------------------------------------
# Writers: one per format, each writing the file at `path`


def _write_onnx(model: nn.Module, path: Path, source: ExportSource) -> None:
    """torch.onnx.export (the torch.export-based exporter, torch's default; needs onnxscript), weights inside."""
    import onnx

    example = torch.rand(2, 1, 28, 28)  # batch 2: a batch of 1 would be fixed as a constant
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False,
            )
    except Exception as error:  # the exporter raises its own error types for an op it cannot translate
        raise ExportError(f"the ONNX exporter failed on {source.label}: {error}") from error
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, metadata(source))
    proto.doc_string = f"MNIST Lab export of {source.label}: {metadata(source)['output']}"
    onnx.save(proto, str(path))


def _write_torchscript(model: nn.Module, path: Path, source: ExportSource) -> None:
    """torch.jit.script (any batch size), with the metadata as the extra file meta.json."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks jit deprecated; libtorch still loads it
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(metadata(source), indent=1)})


def _write_script(model: nn.Module, path: Path, source: ExportSource) -> None:
    """The standalone train.py (the network comes from the checkpoint, so `model` adds nothing here)."""
    path.write_text(script_text(source))


def script_text(source: ExportSource) -> str:
    """The standalone train.py of a source; ExportError when it has no training config."""
    if source.config is None:
        raise ExportError(f"{source.label} carries no training config, so no train.py can be written; "
                          "export a run (--run) or a checkpoint saved by a training run")
    config = config_from_dict(source.config)
    return render_script(source.checkpoint.model, config, source.checkpoint.normalization, source.label)


# ---------------------------------------------------------------------------------------------
# Verification: the written file against the PyTorch model


def verification_pixels(dataset: str, count: int = VERIFY_IMAGES) -> torch.Tensor:
    """The first `count` test images of a dataset as float32 (N, 1, 28, 28) in [0, 1]."""
    images = load_dataset(dataset).test_images[:count]
    return images.unsqueeze(1).to(torch.float32) / 255.0


def compare_scores(reference: torch.Tensor, exported: torch.Tensor, what: str) -> float:
    """The largest score difference; ExportError when over TOLERANCE or when a clear answer differs."""
    if exported.shape != reference.shape:
        raise ExportError(f"{what} gives scores of shape {tuple(exported.shape)}, PyTorch {tuple(reference.shape)}")
    worst = float((exported - reference).abs().max()) if torch.isfinite(exported).all() else float("inf")
    if reference.shape[1] == 1:
        differ = (exported[:, 0] >= 0) != (reference[:, 0] >= 0)
        differ &= reference[:, 0].abs() > TOLERANCE  # a logit within rounding of 0 is a tie
    else:
        picked = exported.argmax(dim=1, keepdim=True)
        margin = reference.max(dim=1).values - reference.gather(1, picked)[:, 0]
        differ = margin > TOLERANCE  # the exported pick is worse than PyTorch's by more than rounding
    if worst > TOLERANCE or differ.any():
        raise ExportError(
            f"{what} disagrees with the PyTorch model on the test images: {int(differ.sum())} of "
            f"{len(reference)} answers differ and scores differ by up to {worst:.3g} (allowed {TOLERANCE:g}); "
            "the file was not written"
        )
    return worst


def _onnx_scores(path: Path, pixels: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: pixels.numpy()})[0])


def _torchscript_scores(path: Path, pixels: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return loaded(pixels)


def _script_scores(path: Path, pixels: torch.Tensor, source: ExportSource) -> torch.Tensor:
    """Run the written script's build_model() with the checkpoint's weights (after checking its imports)."""
    text = path.read_text()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(text))
                 if isinstance(node, ast.ImportFrom) and node.module}
    if not imported <= SCRIPT_IMPORTS:
        raise ExportError(f"the train.py written imports {sorted(imported - SCRIPT_IMPORTS)}; it must stand alone")
    namespace: dict[str, Any] = {"__name__": "mnist_lab_exported_script"}  # not "__main__": defines, trains nothing
    exec(compile(text, str(path), "exec"), namespace)
    network = namespace["build_model"]()
    network.load_state_dict(source.checkpoint.model.state_dict(), strict=True)
    norm = source.checkpoint.normalization
    with torch.inference_mode():
        return network.eval()((pixels - norm.mean) / norm.std)


# ---------------------------------------------------------------------------------------------
# Export


Writer = Callable[[nn.Module, Path, ExportSource], None]
WRITERS: dict[str, Writer] = {"onnx": _write_onnx, "torchscript": _write_torchscript, "script": _write_script}


def _verify(fmt: str, path: Path, model: nn.Module, source: ExportSource) -> tuple[int, float]:
    """(images checked, largest score difference) for the file at `path`; ExportError if it disagrees."""
    pixels = verification_pixels(source.checkpoint.dataset)
    with torch.inference_mode():
        reference = model(pixels)
    what = f"the {FORMAT_TITLES[fmt]} export"
    if fmt == "script":
        return len(pixels), compare_scores(reference, _script_scores(path, pixels, source), what)
    scores = _onnx_scores if fmt == "onnx" else _torchscript_scores
    worst = compare_scores(reference, scores(path, pixels), what)
    worst = max(worst, compare_scores(reference[:1], scores(path, pixels[:1]), f"{what} on a single image"))
    return len(pixels), worst


def export(source: ExportSource, fmt: str, output: Path | str) -> ExportResult:
    """Write `source` as `fmt` to `output` (temp file beside it, verify, rename); ExportError on any failure."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    output = Path(output)
    if output.is_dir():
        raise ExportError(f"{output} is a folder; give the file to write, e.g. {output / FILE_NAMES[fmt]}")
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    model = exportable(source)
    try:
        started = time.perf_counter()
        WRITERS[fmt](model, temp, source)
        written = time.perf_counter()
        checked, worst = _verify(fmt, temp, model, source)
        verified = time.perf_counter()
        os.chmod(temp, 0o644)  # mkstemp makes it private; an exported model is for sharing
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)
    return ExportResult(output, fmt, output.stat().st_size, written - started, verified - written, checked, worst)


def export_bytes(source: ExportSource, fmt: str) -> bytes:
    """The verified file's bytes (for a download button): exported into a scratch folder, read back."""
    with tempfile.TemporaryDirectory(prefix="mnist-lab-export-") as scratch:
        return export(source, fmt, Path(scratch) / FILE_NAMES[fmt]).path.read_bytes()


# ---------------------------------------------------------------------------------------------
# Command line


def _describe(result: ExportResult, source: ExportSource) -> str:
    title = get_spec(source.checkpoint.dataset).title
    return (f"{FORMAT_TITLES[result.format]} export of {source.label} written to {result.path} "
            f"({result.size_bytes / 1024:.1f} KiB, {result.write_seconds:.2f} s); verified on "
            f"{result.verified_images:,} {title} test images in {result.verify_seconds:.2f} s: same answers, "
            f"scores within {result.max_difference:.1e} of PyTorch")


def _cmd_export(args: argparse.Namespace) -> int:
    source = run_source(args.run, args.runs_dir) if args.run else load_source(args.checkpoint)
    result = export(source, args.format, args.output)
    if args.json:
        print(json.dumps({**asdict(result), "path": str(result.path), "source": source.label}))
    else:
        print(_describe(result, source))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core export (--checkpoint PATH | --run RUN_ID [--runs-dir DIR]) --format F --output PATH`."""
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as ONNX, TorchScript or a standalone train.py, verified on test images"
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a checkpoint file, e.g. checkpoints/default/model.pt, or a run folder "
                       f"for its {runs.BEST_CHECKPOINT}")
    which.add_argument("--run", help="a run id: exports its best.pt with its config")
    parser.add_argument("--runs-dir", help="the folder of run folders (default: $DIGITS_RUNS_DIR or checkpoints/runs)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="the file to write (replaced only by a verified export)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(func=_cmd_export)
