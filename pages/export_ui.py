"""Download buttons for a checkpoint's exports (ONNX, TorchScript, a standalone train.py), shared by pages.

Each file is built only when its button is clicked (a deferred download) and cached per checkpoint
file and modification time, so a second click, or another page's button, costs nothing.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from core import export
from core.checkpoints import CheckpointError, read_checkpoint
from core.i18n import N_
from pages.lang import _, num

MIME_TYPES = {"onnx": "application/octet-stream", "torchscript": "application/octet-stream", "script": "text/x-python"}
HELP = {
    "onnx": N_("For onnxruntime and other ONNX runtimes: pixels in [0, 1], shape (N, 1, 28, 28); normalization "
               "inside."),
    "torchscript": N_("For torch.jit.load in Python or libtorch in C++: same input and output as the ONNX file."),
    "script": N_("One train.py needing only torch and torchvision that trains this recipe from scratch."),
}


@st.cache_data(show_spinner=False, max_entries=24)
def export_file(checkpoint: str, modified_ns: int, run_folder: str | None, fmt: str) -> bytes:
    """A verified export's bytes; `modified_ns` ties the cached copy to the checkpoint's version on disk."""
    source = export.load_source(Path(checkpoint), Path(run_folder) if run_folder else None)
    return export.export_bytes(source, fmt)


@st.cache_data(show_spinner=False, max_entries=64)
def _has_training_config(checkpoint: str, modified_ns: int) -> bool:
    return isinstance(read_checkpoint(checkpoint)["meta"].get("config"), dict)


def download_name(checkpoint_path: Path, run_dir: Path | None, fmt: str) -> str:
    """model.onnx-style names carrying the run (or the checkpoint's folder), e.g. 20261122-fast.onnx."""
    stem = run_dir.name if run_dir is not None else checkpoint_path.parent.name or checkpoint_path.stem
    return {"onnx": f"{stem}.onnx", "torchscript": f"{stem}.torchscript.pt", "script": f"train_{stem}.py"}[fmt]


def export_buttons(checkpoint_path: Path, run_dir: Path | None, key: str) -> None:
    """One download button per export format for a checkpoint (a run's best.pt with `run_dir`, or any file).

    `run_dir` supplies the training config for train.py (else the checkpoint's own copy); `key`
    keeps the buttons apart when a page shows several checkpoints.
    """
    try:
        modified = checkpoint_path.stat().st_mtime_ns
        has_config = run_dir is not None or _has_training_config(str(checkpoint_path), modified)
    except (OSError, CheckpointError) as error:
        st.info(_("Nothing to export: {error}").format(error=_(str(error))))
        return
    folder = str(run_dir) if run_dir is not None else None
    for column, fmt in zip(st.columns(len(export.FORMATS)), export.FORMATS, strict=True):
        no_script = fmt == "script" and not has_config
        column.download_button(
            _(export.FORMAT_TITLES[fmt]),
            data=partial(export_file, str(checkpoint_path), modified, folder, fmt),
            file_name=download_name(checkpoint_path, run_dir, fmt),
            mime=MIME_TYPES[fmt],
            key=f"{key}_export_{fmt}",
            help=_("This checkpoint carries no training config.") if no_script else _(HELP[fmt]),
            on_click="ignore",
            icon=":material/download:",
            disabled=no_script,
            width="stretch",
        )
    st.caption(_("Each file is checked against the PyTorch model on {count} test images before it downloads.").format(
        count=num(1000)))
