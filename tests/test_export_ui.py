"""The export buttons the Train and Compare pages show: three downloads, built on click and cached."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.inference import DEFAULT_CHECKPOINT


def buttons_page(checkpoint: str, run_dir: str | None) -> None:
    """A tiny page that calls the shared function, as the Train and Compare pages do."""
    from pathlib import Path

    from pages.export_ui import export_buttons

    export_buttons(Path(checkpoint), Path(run_dir) if run_dir else None, key="finished")


def test_three_download_buttons_appear_for_a_checkpoint():
    at = AppTest.from_function(buttons_page, args=(str(DEFAULT_CHECKPOINT), None), default_timeout=60).run()
    assert not at.exception
    labels = [button.label for button in at.download_button]
    assert labels == ["ONNX", "TorchScript", "standalone train.py"]
    assert [button.key for button in at.download_button] == [f"finished_export_{f}" for f in
                                                             ("onnx", "torchscript", "script")]
    assert not any(button.disabled for button in at.download_button)


def test_a_missing_checkpoint_says_so_instead_of_buttons(tmp_path):
    at = AppTest.from_function(buttons_page, args=(str(tmp_path / "best.pt"), str(tmp_path))).run()
    assert not at.exception and not at.download_button
    assert "Nothing to export" in at.info[0].value


def test_the_files_are_built_verified_and_cached(monkeypatch):
    from core import export
    from pages import export_ui

    real, built = export.export_bytes, []

    def counting(source: export.ExportSource, fmt: str) -> bytes:
        built.append(fmt)
        return real(source, fmt)

    monkeypatch.setattr(export, "export_bytes", counting)
    export_ui.export_file.clear()
    modified = DEFAULT_CHECKPOINT.stat().st_mtime_ns
    script = export_ui.export_file(str(DEFAULT_CHECKPOINT), modified, None, "script")
    shipped_run = json.loads((DEFAULT_CHECKPOINT.parent / "config.json").read_text())["run_id"]
    assert script.startswith(f'"""Train bestcnn on MNIST with the recipe of run {shipped_run}.'.encode())
    assert export_ui.export_file(str(DEFAULT_CHECKPOINT), modified, None, "script") == script
    assert len(built) == 1  # the second click came from the cache
    export_ui.export_file(str(DEFAULT_CHECKPOINT), modified + 1, None, "script")  # a new checkpoint version
    assert len(built) == 2
    assert export_ui.download_name(DEFAULT_CHECKPOINT, None, "onnx") == "default.onnx"
    assert export_ui.download_name(Path("runs/r1/best.pt"), Path("runs/r1"), "script") == "train_r1.py"
