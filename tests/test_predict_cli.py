"""`python -m core predict`: a digit file, an empty image, and the errors a user can cause."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.__main__ import main
from core.checkpoints import save_checkpoint
from core.data import Dataset
from core.models import arch_config, build_model
from core.preprocess import render_as_canvas


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predicts_a_digit_file(mnist: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seven = int((mnist.test_labels == 7).nonzero()[0])  # the first 7 of the test set
    paper = 255 - render_as_canvas(mnist.test_images[seven])[..., 0]  # black ink on white paper, grey PNG
    code, out, _ = run_cli(capsys, "--image", str(write_png(tmp_path / "seven.png", paper)), "--json")
    record = json.loads(out)
    assert code == 0 and record["empty"] is False and record["prediction"] == 7
    assert len(record["probabilities"]) == 10 and sum(record["probabilities"]) == pytest.approx(1, abs=1e-4)
    code, out, _ = run_cli(capsys, "--image", str(tmp_path / "seven.png"))
    assert code == 0 and out.startswith("prediction: 7 (")


def test_empty_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = write_png(tmp_path / "blank.png", np.full((200, 200, 3), 255, np.uint8))
    code, out, _ = run_cli(capsys, "--image", str(blank), "--json")
    assert code == 0 and json.loads(out) == {"prediction": None, "probabilities": None, "empty": True,
                                             "task": "multiclass"}
    code, out, _ = run_cli(capsys, "--image", str(blank))
    assert code == 0 and "no ink" in out


def test_binary_checkpoint_gives_one_probability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = build_model("fastcnn", num_outputs=1)
    meta = {"arch_config": arch_config("fastcnn", 1), "task": "binary", "target_digit": 3, "dataset": "mnist",
            "normalization": {"preset": "half", "mean": 0.5, "std": 0.5}}
    checkpoint = save_checkpoint(tmp_path / "binary.pt", model, meta)
    canvas = np.zeros((100, 100), np.uint8)
    canvas[20:80, 45:55] = 255
    image = write_png(tmp_path / "one.png", canvas)
    code, out, _ = run_cli(capsys, "--image", str(image), "--checkpoint", str(checkpoint), "--json")
    record = json.loads(out)
    assert code == 0 and len(record["probabilities"]) == 1 and record["target_digit"] == 3
    assert record["prediction"] == int(record["probabilities"][0] >= 0.5)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), (b"just some text", "not an image"), (b"\x89PNG\r\n\x1a\nbroken", "not an image")],
)
def test_user_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    path = tmp_path / "input.png"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli(capsys, "--image", str(path))
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_bad_checkpoint_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = io.BytesIO()
    Image.new("L", (20, 20)).save(image, format="PNG")
    path = tmp_path / "x.png"
    path.write_bytes(image.getvalue())
    code, _, err = run_cli(capsys, "--image", str(path), "--checkpoint", str(tmp_path / "missing.pt"))
    assert code == 2 and "no checkpoint file" in err
