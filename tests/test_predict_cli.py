"""`python -m core predict`: a digit file, an empty image, and the errors a user can cause."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import core.inference
from core.__main__ import main
from core.checkpoints import LoadedCheckpoint, load_checkpoint, save_checkpoint
from core.data import Dataset
from core.models import arch_config, build_model
from core.preprocess import render_as_canvas
from core.runs import BEST_CHECKPOINT

pytest_plugins = ["tests.compare_fixtures"]  # tiny_runs: real run folders, trained once per session


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_HEADER_AND_A_BIT = png_bytes(np.full((50, 50), 255, np.uint8))[:60]  # a real PNG cut short


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
    assert code == 0 and record["image"] == str(tmp_path / "seven.png")
    assert record["empty"] is False and record["prediction"] == 7
    assert len(record["probabilities"]) == 10 and sum(record["probabilities"]) == pytest.approx(1, abs=1e-4)
    code, out, _ = run_cli(capsys, "--image", str(tmp_path / "seven.png"))
    assert code == 0 and out.startswith("prediction: 7 (")


def test_empty_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = write_png(tmp_path / "blank.png", np.full((200, 200, 3), 255, np.uint8))
    code, out, _ = run_cli(capsys, "--image", str(blank), "--json")
    assert code == 0 and json.loads(out) == {"image": str(blank), "prediction": None, "probabilities": None,
                                             "empty": True, "task": "multiclass"}
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


def test_a_fashion_mnist_checkpoint_names_its_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.data import DATASETS

    torch.manual_seed(0)
    names = list(DATASETS["fashion-mnist"].classes)
    meta = {"arch_config": arch_config("fastcnn", 10), "task": "multiclass", "dataset": "fashion-mnist",
            "classes": names, "normalization": {"preset": "dataset", "mean": 0.286, "std": 0.353}}
    checkpoint = save_checkpoint(tmp_path / "fashion.pt", build_model("fastcnn", num_outputs=10), meta)
    canvas = np.zeros((100, 100), np.uint8)
    canvas[20:80, 30:70] = 255
    image = write_png(tmp_path / "shirt.png", canvas)
    code, out, _ = run_cli(capsys, "--image", str(image), "--checkpoint", str(checkpoint), "--json")
    record = json.loads(out)
    assert code == 0 and record["classes"] == names and record["class"] == names[record["prediction"]]
    code, out, _ = run_cli(capsys, "--image", str(image), "--checkpoint", str(checkpoint))
    assert code == 0 and out.startswith(f"prediction: {names[record['prediction']]} (")
    assert sum(name in out for name in names) == 4  # the answer and the next three, by name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"just some text", "not a PNG or JPEG image"),
        (b"\x89PNG\r\n\x1a\nbroken", "not a PNG or JPEG image"),
        (PNG_HEADER_AND_A_BIT, "damaged or truncated"),
    ],
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


@pytest.fixture()
def digit_folder(mnist: Dataset, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Real test digits rendered to PNG (the first 3, 0 and 9 of the test set) plus a broken PNG and a note."""
    folder = tmp_path / "digits"
    folder.mkdir()
    labels = {}
    for name, digit in (("a-three.png", 3), ("b-zero.PNG", 0), ("d-nine.png", 9)):
        index = int((mnist.test_labels == digit).nonzero()[0][0])
        paper = 255 - render_as_canvas(mnist.test_images[index])[..., 0]  # dark ink on white paper
        write_png(folder / name, paper)
        labels[name] = digit
    (folder / "c-broken.png").write_bytes(PNG_HEADER_AND_A_BIT)
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder, labels


def counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every checkpoint path the CLI loads, recorded as it loads it."""
    loads: list[str] = []

    def load(path: Path | str, device: str = "cpu") -> LoadedCheckpoint:
        loads.append(str(path))
        return load_checkpoint(path, device)

    monkeypatch.setattr(core.inference, "load_checkpoint", load)
    return loads


def test_a_folder_and_extra_images_with_one_broken_file(
    digit_folder: tuple[Path, dict[str, int]], mnist: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, labels = digit_folder
    seven = int((mnist.test_labels == 7).nonzero()[0][0])
    extra = write_png(tmp_path / "seven.png", render_as_canvas(mnist.test_images[seven])[..., 0])  # white on black
    loads = counting_loads(monkeypatch)
    code, out, _ = run_cli(capsys, "--image", str(extra), "--folder", str(folder), "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert loads == [str(core.inference.DEFAULT_CHECKPOINT)]  # the model was loaded once for all five images
    assert [Path(record["image"]).name for record in records] == [
        "seven.png", "a-three.png", "b-zero.PNG", "c-broken.png", "d-nine.png"]  # the folder sorted, no .txt
    broken = records[3]
    assert set(broken) == {"image", "error"} and "damaged or truncated" in broken["error"]
    answered = {Path(r["image"]).name: r["prediction"] for r in records if "error" not in r}
    assert answered == {"seven.png": 7, **labels}
    # The same probabilities as the Draw page's pipeline gives each image.
    loaded = load_checkpoint(core.inference.DEFAULT_CHECKPOINT)
    _, reference = core.inference.predict_image(loaded.model, loaded.normalization,
                                                core.inference.read_image_file(folder / "d-nine.png"))
    assert reference is not None
    assert records[4]["probabilities"] == pytest.approx(reference.probabilities, abs=1e-6)
    assert code == core.inference.EXIT_SOME_FAILED == 1


def test_human_output_names_each_image_and_errors_go_to_stderr(
    digit_folder: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = digit_folder
    code, out, err = run_cli(capsys, "--folder", str(folder))
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith(f"{folder / 'a-three.png'}: prediction: 3 (")
    assert lines[2].startswith(f"{folder / 'd-nine.png'}: prediction: 9 (")
    assert err.startswith(f"error: {folder / 'c-broken.png'}: the image is damaged or truncated")
    assert "Traceback" not in err


def test_every_image_answered_exits_0_and_nothing_to_do_exits_2(
    digit_folder: tuple[Path, dict[str, int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = digit_folder
    code, out, _ = run_cli(capsys, "--image", str(folder / "a-three.png"), "--image", str(folder / "d-nine.png"),
                           "--json")
    assert code == 0 and [json.loads(line)["prediction"] for line in out.splitlines()] == [3, 9]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli(capsys, "--folder", str(empty))
    assert code == 2 and out == "" and "no image in" in err and ".png, .jpg, .jpeg" in err
    code, _, err = run_cli(capsys, "--folder", str(tmp_path / "missing"))
    assert code == 2 and "cannot list the folder" in err
    code, _, err = run_cli(capsys)
    assert code == 2 and "nothing to predict" in err
    code, out, _ = run_cli(capsys, "--image", str(folder / "c-broken.png"), "--json")
    assert code == 2 and "error" in json.loads(out)  # the only image failed: none answered


def test_an_image_path_that_is_a_folder_reads_like_folder(
    digit_folder: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = digit_folder
    as_image = run_cli(capsys, "--image", str(folder), "--json")
    as_folder = run_cli(capsys, "--folder", str(folder), "--json")
    assert as_image == as_folder and as_image[0] == 1 and len(as_image[1].splitlines()) == 4


def test_image_paths_as_arguments_read_like_image(
    digit_folder: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = digit_folder
    three, nine = str(folder / "a-three.png"), str(folder / "d-nine.png")
    assert run_cli(capsys, three) == run_cli(capsys, "--image", three)  # the user's `predict img.png`
    assert run_cli(capsys, "--json", three, nine) == run_cli(capsys, "--image", three, "--image", nine, "--json")
    assert run_cli(capsys, str(folder), "--json") == run_cli(capsys, "--folder", str(folder), "--json")
    for argv, order in (([nine, "--image", three], [9, 3]), (["--image", nine, three], [9, 3]),
                        (["--image", three, nine], [3, 9])):
        code, out, _ = run_cli(capsys, *argv, "--json")
        assert code == 0 and [json.loads(line)["prediction"] for line in out.splitlines()] == order  # as given


def test_a_run_folder_as_checkpoint_reads_its_best(
    tiny_runs: tuple[Path, list[str]], digit_folder: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, run_ids = tiny_runs
    run = root / run_ids[0]
    assert load_checkpoint(run).path == run / BEST_CHECKPOINT  # the one loader every --checkpoint goes through
    folder, _ = digit_folder
    by_folder = run_cli(capsys, str(folder), "--checkpoint", str(run), "--json")
    by_file = run_cli(capsys, str(folder), "--checkpoint", str(run / BEST_CHECKPOINT), "--json")
    assert by_folder == by_file and len(by_folder[1].splitlines()) == 4


@pytest.mark.parametrize("command", [["predict", "--image"], ["writers", "score"], ["export", "--format", "onnx"]])
def test_a_folder_without_a_checkpoint_names_what_was_looked_for(
    digit_folder: tuple[Path, dict[str, int]], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    folder, _ = digit_folder
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    extra = {"predict": [str(folder / "a-three.png")], "export": ["--output", str(tmp_path / "model.onnx")]}
    code = main([*command, *extra.get(command[0], []), "--checkpoint", str(empty)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "Traceback" not in captured.err
    assert f"no checkpoint in the folder {empty}: looked for {BEST_CHECKPOINT}" in captured.err
