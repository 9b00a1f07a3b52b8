"""The GPU path on a CPU-only machine: CUDA is chosen only when torch sees it, and everything falls back cleanly."""

from __future__ import annotations

import os

import pytest
import torch

from core import gpu
from core.__main__ import main
from core.data import Augmentation, random_affine
from core.training import ConfigError, RunStarted, autocast, engine, preset_config, resolve_device, train, uses_cuda


def test_auto_picks_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert uses_cuda(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert not uses_cuda(torch.device("cuda"))
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_autocast_is_bf16_on_cuda_and_nothing_for_float32(monkeypatch):
    layer, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with autocast(torch.device("cpu"), "float32"):
        assert layer(x).dtype == torch.float32
    made = []  # torch.autocast("cuda") itself initializes CUDA, which this machine has not: record the call
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype: made.append((device_type, dtype)) or "ctx")
    assert autocast(torch.device("cuda"), "bfloat16") == "ctx"
    assert made == [("cuda", torch.bfloat16)]
    with autocast(torch.device("cuda"), "float32"):  # a float32 run: no autocast
        assert layer(x).dtype == torch.float32


def test_stopwatch_falls_back_to_the_wall_clock_without_cuda():
    watch = gpu.Stopwatch(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert watch.cuda == torch.cuda.is_available()
    assert watch.seconds() >= 0


def test_bench_gpu_without_cuda_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu", "--json"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_a_run_on_auto_without_cuda_trains_on_the_cpu(mnist, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = preset_config("fast", device="auto", train_subset=640, test_subset=200, threads=1)
    events = list(train(config, runs_root=tmp_path, dataset=mnist))
    started = next(event for event in events if isinstance(event, RunStarted))
    assert started.device == "cpu"
    assert type(events[-1]).__name__ == "Finished"


def test_the_lean_gpu_loop_runs_on_the_cpu_too(mnist, monkeypatch):
    """train_to_99 is device-agnostic: on the CPU it trains in float32 and reports its accuracy."""
    from core.training import load_train_data

    config = preset_config("fast", device="cpu", train_subset=3200, test_subset=500)
    data = load_train_data(config, torch.device("cpu"), mnist)
    precisions = []
    real_autocast = gpu.autocast
    monkeypatch.setattr(gpu, "autocast", lambda device, precision: precisions.append(precision)
                        or real_autocast(device, precision))
    run = gpu.train_to_99(config, data, torch.device("cpu"), target=0.5)
    assert run.epochs == 1 and run.test_accuracy >= 0.5 and run.seconds_to_99 is not None
    assert precisions and set(precisions) == {"float32"}  # bf16 autocast is for CUDA only in this loop


def test_augmentation_warps_on_the_images_device_with_the_same_draws():
    images = torch.rand(8, 1, 28, 28)
    first = random_affine(images, Augmentation(), torch.Generator().manual_seed(3))
    again = random_affine(images.clone(), Augmentation(), torch.Generator().manual_seed(3))
    assert first.device == images.device and torch.equal(first, again)


@pytest.mark.parametrize(("load", "expected"), [(0.1, 2), (9.0, 1), (1.2, 1)])
def test_free_cores_leaves_the_busy_cores_to_others(monkeypatch, load, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert engine.free_cores(2) == expected  # no measure of other work: the load average
    assert engine.free_cores(2, others=load) == expected
    assert engine.free_cores(1) == 1  # never above the ceiling


def test_a_run_without_fixed_threads_takes_the_idle_cores_each_epoch(mnist, tmp_path, monkeypatch):
    """Config threads 0: a busy machine gets one thread, and status.json says so; threads set in the config win."""
    from core import runs

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(engine, "OTHER_WORK", lambda: 7.5)  # other programs keep 7.5 cores' worth busy
    torch.set_num_threads(2)
    seen = []
    config = preset_config("fast", device="cpu", train_subset=640, test_subset=100, epochs=2)
    for event in train(config, runs_root=tmp_path, dataset=mnist):
        if type(event).__name__ == "BatchEnd":
            seen.append(torch.get_num_threads())
        if isinstance(event, RunStarted):
            run_dir = event.run_dir
    assert set(seen) == {1}
    assert runs.read_status(run_dir)["threads"] == 1
    assert torch.get_num_threads() == 2  # put back afterwards
    fixed = preset_config("fast", device="cpu", train_subset=640, test_subset=100, threads=2)
    seen.clear()
    for event in train(fixed, runs_root=tmp_path, dataset=mnist):
        if type(event).__name__ == "BatchEnd":
            seen.append(torch.get_num_threads())
    assert set(seen) == {2}
