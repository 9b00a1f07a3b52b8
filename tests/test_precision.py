"""Training precision (bfloat16 autocast where the hardware has it), the exact ReLU/pool rewrite, own-load threads."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
import torch.nn.functional as F

from core import models, runs
from core.checkpoints import load_checkpoint
from core.data import to_model_input
from core.training import (
    ConfigError,
    EpochEnd,
    RunStarted,
    autocast,
    engine,
    evaluate,
    load_train_data,
    loss_function,
    preset_config,
    resolve_precision,
    train,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_is_bfloat16_only_where_the_cpu_multiplies_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(engine, "cpu_computes_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("float32", CPU) == "float32"  # asked for: kept, whatever the hardware
    assert resolve_precision("bfloat16", CPU) == "bfloat16"


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_is_bfloat16_on_gpus_that_multiply_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(engine, "cpu_computes_bf16", lambda: False)
    monkeypatch.setattr(engine, "cuda_computes_bf16", lambda: native)  # pre-Ampere GPUs only emulate it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == expected


def test_where_autocast_does_not_exist_a_run_is_float32_whatever_it_asked():
    assert resolve_precision("bfloat16", torch.device("mps")) == "float32"


def test_the_probe_reads_torchs_cpu_capabilities(monkeypatch):
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": False, "amx_bf16": True})
    assert engine.cpu_computes_bf16()
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": False})
    assert not engine.cpu_computes_bf16()
    monkeypatch.delattr(torch._C._cpu, "_get_cpu_capability")  # an older or other torch: assume not
    assert not engine.cpu_computes_bf16()


def test_autocast_follows_the_precision_on_the_cpu():
    layer, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with autocast(CPU, "bfloat16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast(CPU, "float32"):
        assert layer(x).dtype == torch.float32
    assert layer.weight.dtype == torch.float32  # the weights themselves stay float32


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ConfigError, match="precision must be one of auto, float32, bfloat16, got 'float16'"):
        preset_config("fast", precision="float16")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_run_records_its_precision_and_scores_the_test_set_in_float32(mnist, tmp_path, precision):
    """The accuracy a run reports is the one its saved weights give later, in float32, whatever it trained in."""
    config = preset_config("seed002", device="cpu", train_subset=2560, test_subset=400, epochs=1, threads=1,
                           precision=precision)
    events = list(train(config, runs_root=tmp_path, dataset=mnist))
    started = next(event for event in events if isinstance(event, RunStarted))
    end = next(event for event in events if isinstance(event, EpochEnd))
    assert started.precision == precision
    assert runs.read_status(started.run_dir)["precision"] == precision
    loaded = load_checkpoint(started.run_dir / runs.LAST_CHECKPOINT)
    data = load_train_data(config, CPU, mnist)
    head = loaded.meta["head"]
    _, probs = evaluate(loaded.model, data, config.task, head, loss_function(config.task, head))
    assert probs.dtype == torch.float32
    assert float((probs.argmax(1) == data.test_labels).float().mean()) == pytest.approx(end.test_accuracy)
    assert end.test_accuracy > 0.8


def test_bfloat16_training_learns_as_float32_does(mnist, tmp_path):
    """One epoch of seed002's recipe on 6,400 images: the two precisions end within a point of each other."""
    accuracies = {}
    for precision in ("float32", "bfloat16"):
        config = preset_config("seed002", device="cpu", train_subset=6400, test_subset=2000, epochs=1, threads=1,
                               precision=precision)
        accuracies[precision] = next(e for e in train(config, runs_root=tmp_path, dataset=mnist)
                                     if isinstance(e, EpochEnd)).test_accuracy
    assert accuracies["float32"] > 0.9
    assert abs(accuracies["bfloat16"] - accuracies["float32"]) < 0.01


@pytest.mark.parametrize("arch", ["seed002", "seed003", "fastcnn", "bestcnn"])
@pytest.mark.parametrize(("memory_format", "precision"), [(torch.contiguous_format, "float32"),
                                                          (torch.channels_last, "float32"),
                                                          (torch.channels_last, "bfloat16")])
def test_relu_later_is_exact(arch, memory_format, precision):
    """The rewrite moves ReLU after MaxPool2d and Flatten: same outputs, gradients and state_dict keys,
    in float32 and under the bfloat16 autocast `fast` trains with."""
    torch.manual_seed(0)
    model = models.build_model(arch, 10).to(memory_format=memory_format)
    rewritten = engine.relu_later(models.build_model(arch, 10).to(memory_format=memory_format))
    rewritten.load_state_dict(model.state_dict())
    assert list(rewritten.state_dict()) == list(model.state_dict())
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=memory_format)
    x[0, 0, :8, :8] = 0.0  # a flat patch wider than any first kernel: ties inside pooling windows
    labels = torch.randint(0, 10, (16,))
    for net in (model, rewritten):
        net.train()
        torch.manual_seed(1)  # the same dropout masks
        with engine.autocast(torch.device("cpu"), precision):
            outputs = net(x)
        F.cross_entropy(outputs.float(), labels).backward()
    for (name, a), (_, b) in zip(model.named_parameters(), rewritten.named_parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), name
    model.eval()
    rewritten.eval()
    assert torch.equal(model(x), rewritten(x))


def test_the_rewrite_reaches_nested_sequentials_and_keeps_pools_that_return_indices():
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, padding=1,
                                                                                              ceil_mode=True))
    model = torch.nn.Sequential(inner, torch.nn.ReLU(), torch.nn.MaxPool2d(2, return_indices=True))
    reference = torch.nn.Sequential(*[torch.nn.Sequential(*m) if isinstance(m, torch.nn.Sequential) else m
                                      for m in model])
    reference.load_state_dict(model.state_dict())
    engine.relu_later(model)
    assert [type(m).__name__ for m in model[0]] == ["Conv2d", "MaxPool2d", "ReLU"]  # padded, ceil_mode: still exact
    assert [type(m).__name__ for m in model][1:] == ["ReLU", "MaxPool2d"]  # a pool that returns indices stays
    x = torch.randn(3, 1, 13, 13)
    x[:, :, :5, :5] = -1.0  # flat negative patches: ties and all-negative windows
    x[:, :, 6:, 6:] = 0.5
    for net in (model[0], reference[0]):
        out = net(x)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    assert torch.equal(model[0](x), reference[0](x))
    for (name, a), (_, b) in zip(model[0].named_parameters(), reference[0].named_parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), name  # padded, ceil_mode: the gradients too


def test_the_rewrite_moves_relu_after_the_pool_and_the_flatten_and_nothing_else():
    model = engine.relu_later(models.build_model("seed002", 10))
    assert [name for name, _ in model.named_children()] == [
        "conv1", "pool1", "relu1", "conv2", "flatten1", "relu2", "fc1", "relu3", "fc2", "logsoftmax1"]
    fastcnn = engine.relu_later(models.build_model("fastcnn", 10))
    assert [name for name, _ in fastcnn.named_children()][-4:] == ["pool3", "flatten1", "relu3", "fc1"]
    for other in (torch.nn.Dropout(0.5), torch.nn.AvgPool2d(2), torch.nn.AdaptiveAvgPool2d(1),
                  torch.nn.Unflatten(1, (1, 4))):  # none of these commute with ReLU as the rewrite needs
        stack = engine.relu_later(torch.nn.Sequential(torch.nn.ReLU(), other, torch.nn.Flatten()))
        assert [type(m) for m in stack] == [torch.nn.ReLU, type(other), torch.nn.Flatten]


def test_the_engine_trains_the_rewritten_copy_and_saves_the_network_as_defined(mnist):
    config = preset_config("seed002", device="cpu", train_subset=640, test_subset=200)
    parts = engine._prepare(config, mnist)
    assert [name for name, _ in parts.model.named_children()][3:6] == ["conv2", "flatten1", "relu2"]
    rebuilt = models.build_model(**parts.arch_config)
    rebuilt.load_state_dict(parts.model.state_dict())  # the same keys: a checkpoint loads into the plain network
    assert [name for name, _ in rebuilt.named_children()][3:6] == ["conv2", "relu2", "flatten1"]
    x = to_model_input(mnist.test_images[:64], parts.data.norm).contiguous(memory_format=engine.MEMORY_FORMAT)
    rebuilt = rebuilt.to(memory_format=engine.MEMORY_FORMAT).eval()  # the same layout: the same sums
    assert torch.equal(rebuilt(x), parts.model.eval()(x))  # and the loaded network computes what was trained


def test_other_work_is_the_machines_busy_time_less_this_processs(monkeypatch):
    clock = {"wall": 100.0, "busy": 1000.0, "own": 5.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(engine, "machine_busy_seconds", lambda: clock["busy"])
    other = engine.OtherWork()
    clock["wall"] += 10
    clock["busy"] += 20  # both cores busy for 10 s ...
    clock["own"] += 19  # ... nearly all of it this process (bench train's tutorial loop, say)
    assert other() == pytest.approx(0.1)
    clock["wall"] += 0.1
    clock["busy"] += 0.2
    assert other() == pytest.approx(0.1)  # too short a look: the last estimate stands
    clock["wall"] += 10
    clock["busy"] += 15  # another program: 1.5 cores
    assert other() == pytest.approx((0.2 + 15) / (0.1 + 10))  # the short look is counted in the next one
    clock["wall"] += 10
    clock["busy"] -= 50  # the counters went back (a CPU taken offline): the last estimate stands
    assert other() == pytest.approx((0.2 + 15) / (0.1 + 10))
    clock["wall"] += 10
    clock["busy"] += 5
    assert other() == pytest.approx(0.5)  # measured again from the look after


def test_without_proc_stat_other_work_is_the_load_average_less_this_processs_own(monkeypatch):
    clock = {"wall": 100.0, "own": 5.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(engine, "machine_busy_seconds", lambda: None)  # macOS, say
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.9, 1.9))
    other = engine.OtherWork()
    clock["wall"] += 10
    clock["own"] += 18  # this process kept 1.8 cores busy: most of the load is its own
    assert other() == pytest.approx(0.1)
    assert engine.free_cores(2, others=other()) == 2  # not stuck at one thread by its own work


def test_free_cores_takes_the_other_work_and_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.9, 1.9))
    assert engine.free_cores(2) == 1  # the load average: this process's own threads would count as others'
    assert engine.free_cores(2, others=0.1) == 2
    assert engine.free_cores(2, others=1.5) == 1
    assert engine.free_cores(2, others=7.0) == 1  # never below one


def test_machine_busy_seconds_reads_proc_stat():
    busy = engine.machine_busy_seconds()
    if not os.path.exists("/proc/stat"):
        assert busy is None
        return
    assert busy is not None and busy > 0
    start = time.process_time()
    while time.process_time() - start < 0.2:  # this process busy: the machine's busy time grows with it
        pass
    later = engine.machine_busy_seconds()
    assert later is not None and later - busy >= 0.1


@pytest.mark.slow
def test_the_bench_reports_the_floor_of_our_precision(capsys):
    from core.__main__ import main

    code = main(["bench", "train", "--preset", "seed002", "--train-subset", "640", "--test-subset", "300", "--json",
                 "--our-threads", "1", "--threads", "1"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["our_precision"] == resolve_precision("auto", CPU)
    if result["our_precision"] == "bfloat16":  # native bf16 multiplies faster: a lower floor
        assert 0 < result["our_floor_epoch_seconds"] < result["floor_epoch_seconds"]
    else:
        assert result["our_floor_epoch_seconds"] == result["floor_epoch_seconds"]
    floor, baseline = result["our_floor_epoch_seconds"], result["baseline_epoch_seconds"]
    assert result["our_floor_ratio"] == pytest.approx(floor / baseline)


def test_a_run_records_the_precision_it_resolved_and_an_old_record_resumes_in_float32(mnist, tmp_path, monkeypatch):
    """config.json keeps what "auto" became, so a resumed run never changes arithmetic halfway; a run recorded
    before the setting existed trained in float32 on a CPU and goes on that way."""
    monkeypatch.setattr(engine, "cpu_computes_bf16", lambda: True)
    config = preset_config("seed002", device="cpu", train_subset=640, test_subset=100, epochs=1, threads=1)
    started = next(e for e in list(train(config, runs_root=tmp_path, dataset=mnist)) if isinstance(e, RunStarted))
    record = json.loads((started.run_dir / runs.CONFIG_FILE).read_text())
    assert record["config"]["precision"] == "bfloat16"
    del record["config"]["precision"]  # as a run folder from before the setting
    (started.run_dir / runs.CONFIG_FILE).write_text(json.dumps(record))
    longer = preset_config("seed002", device="cpu", train_subset=640, test_subset=100, epochs=2, threads=1)
    events = list(train(longer, resume=started.run_id, runs_root=tmp_path, dataset=mnist))
    resumed = next(e for e in events if isinstance(e, RunStarted))
    assert resumed.start_epoch == 1 and resumed.precision == "float32"
    assert runs.read_config(started.run_dir)["config"]["precision"] == "float32"
