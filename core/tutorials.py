"""The four source tutorials, step by step, with the live numbers of exactly their code and their mistakes measured.

Each tutorial (seed000..seed003) is quoted in short excerpts of its own code, one per step (data, loader,
network, loss and optimizer, loop, evaluation). Everything shown beside an excerpt is computed here from
the registry network (core.models), the dataset (core.data) and the preset (core.training): shapes and
parameter counts, normalization values, batches per epoch, and what the loss sees on a real batch.

Numbers that need training come from `measure`, run by scripts/measure_tutorials.py on a small fixed
budget; it writes docs/tutorial-results.json, which `read_results` reads back.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core import models, runs
from core.checkpoints import load_checkpoint
from core.data import Dataset, Normalization, normalization, to_model_input
from core.i18n import N_
from core.summary import LayerRow, ModelSummary, summarize_architecture
from core.training import (
    BatchEnd,
    EpochEnd,
    Failed,
    TrainConfig,
    build_optimizer,
    config_to_dict,
    preset_config,
    train,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = PROJECT_ROOT / "docs" / "tutorial-results.json"

STEP_TITLES = {
    "data": N_("Data and transforms"),
    "loader": N_("DataLoader"),
    "network": N_("Network"),
    "loss": N_("Loss and optimizer"),
    "loop": N_("Training loop"),
    "eval": N_("Evaluation"),
}


@dataclass(frozen=True)
class Excerpt:
    """A few lines of one tutorial's own code for one step, and what to notice in them."""

    step: str  # a key of STEP_TITLES
    code: str  # quoted verbatim from the tutorial
    note: str  # one or two sentences on what the code does (English, whole sentences)


@dataclass(frozen=True)
class Tutorial:
    """One source tutorial and the preset that reproduces its recipe."""

    key: str  # the preset and registry name, e.g. "seed001"
    number: str  # "001"
    title: str  # what we call it
    source: str  # the tutorial's own title (Chinese), or the words it opens with when it has no title
    titled: bool  # whether `source` is a title (True) or its opening words (False)
    excerpts: tuple[Excerpt, ...]
    test_batch_size: int  # its test DataLoader's batch size
    loss_as_written: str  # Markdown: the loss call in its code (in backticks) and, where it matters, what it is given
    loss_meant: str  # the same for the loss that matches its network's output; words in either are marked N_


TUTORIALS: dict[str, Tutorial] = {
    "seed000": Tutorial(
        "seed000", "000", N_("Is it an 8?"), "要使用PyTorch编写一个识别数字8的代码", False, (
            Excerpt("data", "transform = transforms.Compose([\n    transforms.ToTensor(),\n"
                            "    transforms.Normalize((0.5,), (0.5,))\n])",
                    N_("ToTensor scales the pixels to [0, 1]; Normalize((0.5,), (0.5,)) then maps them to [-1, 1].")),
            Excerpt("loader", "train_loader = DataLoader(dataset=train_dataset, batch_size=64, shuffle=True)\n"
                              "test_loader = DataLoader(dataset=test_dataset, batch_size=64, shuffle=False)",
                    N_("Batches of 64 images; only the training set is shuffled.")),
            Excerpt("network", "self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1)\n"
                               "self.conv2 = nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1)\n"
                               "self.fc1 = nn.Linear(64 * 7 * 7, 128)\n"
                               "self.fc2 = nn.Linear(128, 1)  # 输出为1，表示是否为数字8",
                    N_("Two 3×3 convolutions with padding 1, each followed by ReLU and 2×2 max-pooling, then two "
                    "Linear layers; the last one has a single output.")),
            Excerpt("loss", "criterion = nn.BCEWithLogitsLoss()  # 二分类交叉熵损失\n"
                            "optimizer = optim.Adam(model.parameters(), lr=0.001)",
                    N_("The single output is a logit; BCEWithLogitsLoss applies the sigmoid itself.")),
            Excerpt("loop", "for epoch in range(num_epochs):\n    model.train()\n"
                            "    for images, labels in train_loader:\n"
                            "        labels = (labels == 8).float().view(-1, 1)\n"
                            "        outputs = model(images)\n        loss = criterion(outputs, labels)",
                    N_("Five epochs; every label becomes 1 for an 8 and 0 for any other digit.")),
            Excerpt("eval", "preds = torch.sigmoid(outputs) > 0.5  # 将输出转换为二进制预测\n...\n"
                            "accuracy = accuracy_score(all_labels, all_preds)",
                    N_("An image counts as an 8 when its probability is above 0.5.")),
        ), test_batch_size=64, loss_as_written="`nn.BCEWithLogitsLoss()`",
        loss_meant="`nn.BCEWithLogitsLoss()`"),
    "seed001": Tutorial(
        "seed001", "001", "DemoModel", "思路步骤", False, (
            Excerpt("data", "test_ds = torchvision.datasets.MNIST('data', \ntrain=True, \n"
                            "transform=torchvision.transforms.ToTensor(), \ndownload=True)",
                    N_("The first example loads its test set with train=True, that is, the 60,000 training images; "
                    "the tutorial's own code further down uses train=False. ToTensor only: pixels in [0, 1].")),
            Excerpt("loader", "train_dataloader = DataLoader(\n    dataset=train_dataset,\n    batch_size=32,\n"
                              "    shuffle=True,\n    num_workers=0,\n    drop_last=False\n)",
                    N_("Batches of 32 images, the last smaller batch kept (drop_last=False).")),
            Excerpt("network", "nn.Conv2d(in_channels=1, out_channels=8, kernel_size=3, padding='same'),\n"
                               "nn.AvgPool2d(kernel_size=2),  # （32,1,14,14）\nnn.BatchNorm2d(num_features=8),\n"
                               "nn.ReLU(),\nnn.Conv2d(in_channels=8, out_channels=16, kernel_size=3, padding='same'),\n"
                               "nn.ReLU(),\nnn.Flatten(),\nnn.Linear(in_features=14 * 14 * 16, out_features=10),\n"
                               "nn.Softmax()",
                    N_("One nn.Sequential that ends with Softmax, so the network outputs probabilities. The comment "
                    "(32,1,14,14) is off: after the first convolution there are 8 channels, not 1.")),
            Excerpt("loss", "creation = nn.CrossEntropyLoss()\nlearning_rate = 1e-2\n"
                            "optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(beta1, beta2))\n"
                            "lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=32)",
                    N_("CrossEntropyLoss expects raw scores (logits) and applies its own log-softmax. The cosine "
                    "scheduler is created here and never stepped in the loop below.")),
            Excerpt("loop", "EPOCHS = 50\n...\n        train_predictions = model(train_image)\n"
                            "        batch_train_loss = creation(train_predictions, train_label)\n"
                            "        optimizer.zero_grad()  # 梯度清零\n        batch_train_loss.backward()\n"
                            "        optimizer.step()",
                    N_("Fifty epochs of Adam steps; lr_scheduler.step() appears nowhere in the loop.")),
            Excerpt("eval", "batch_test_acc = (predictions.argmax(dim=1) == test_label).sum()\n"
                            "epoch_test_acc += batch_test_acc\n...\nepoch_test_acc / len(test_dataset)",
                    N_("The accuracy is the share of right answers on whatever test_dataset holds.")),
        ), test_batch_size=32, loss_as_written=N_("`nn.CrossEntropyLoss()` on the Softmax output"),
        loss_meant=N_("`nn.CrossEntropyLoss()` on logits (no Softmax layer)")),
    "seed002": Tutorial(
        "seed002", "002", "Digit", "PyTorch——MNIST数据集手写数字识别", True, (
            Excerpt("data", "pipeline=transforms.Compose([\n    transforms.ToTensor(), \n"
                            "    transforms.Normalize((0.1307),(0.3081)) \n])",
                    N_("Normalize with 0.1307 and 0.3081, the mean and standard deviation of MNIST's training "
                       "pixels.")),
            Excerpt("loader", "BATCH_SIZE=64\n...\n"
                              "train_loader=DataLoader(train_dataset,batch_size=BATCH_SIZE,shuffle=True)\n"
                              "test_loader=DataLoader(test_dataset,batch_size=BATCH_SIZE,shuffle=True)",
                    N_("Batches of 64 images for training and testing.")),
            Excerpt("network", "self.conv1=nn.Conv2d(1,10,kernel_size=5)\nself.conv2=nn.Conv2d(10,20,kernel_size=3)\n"
                               "self.fc1=nn.Linear(20*10*10,500)\nself.fc2=nn.Linear(500,10)\n...\n"
                               "output=F.log_softmax(x,dim=1)",
                    N_("Convolutions without padding shrink the image; the network ends with log_softmax, so it "
                    "outputs log-probabilities.")),
            Excerpt("loss", "optimizer=optim.Adam(model.parameters(),lr=0.001)\n...\n"
                            "loss=F.cross_entropy(output,target) # 多分类用交叉验证",
                    N_("F.cross_entropy applies log_softmax to what it is given, here to log-probabilities that "
                    "already went through log_softmax. The comment says 交叉验证, cross-validation (splitting data "
                    "to validate a model); the loss is cross-entropy, 交叉熵.")),
            Excerpt("loop", "EPOCHS=20 # 训练次数\n...\nfor epoch in range(1,EPOCHS+1):\n"
                            "    train_model(model,DEVICE,train_loader,optimizer,epoch)\n"
                            "    test_model(model,DEVICE,test_loader)",
                    N_("Twenty epochs, each followed by a pass over the test set.")),
            Excerpt("eval", "test_loss+=F.cross_entropy(output,target).item()\npred=output.argmax(1)\n...\n"
                            "test_loss/=len(test_loader.dataset)",
                    N_("test_loss adds up one mean per batch and is then divided by the number of images, not "
                    "the number of batches.")),
        ), test_batch_size=64, loss_as_written=N_("`F.cross_entropy(output, target)` on the log_softmax output"),
        loss_meant="`F.nll_loss(output, target)`"),
    "seed003": Tutorial(
        "seed003", "003", "LeNet", "理解和构建用于MNIST分类的卷积神经网络", True, (
            Excerpt("data", "transforms.Normalize((0.1307,), (0.3081,))\n...\ndef imshow(img):\n"
                            "    img = img / 2 + 0.5  # 反归一化\n...\ndataiter = iter(train_loader)\n"
                            "images, labels = dataiter.next()",
                    N_("Normalized with MNIST's mean and standard deviation; imshow then un-normalizes as if "
                    "Normalize(0.5, 0.5) had been used.")),
            Excerpt("loader", "train_loader = torch.utils.data.DataLoader(\n    datasets.MNIST(root='./data', "
                              "train=True, ...),\n    batch_size=64, shuffle=True)",
                    N_("Batches of 64 images for training and testing.")),
            Excerpt("network", "self.conv1 = nn.Conv2d(1, 6, 5)\nself.conv2 = nn.Conv2d(6, 16, 5)\n"
                               "self.fc1 = nn.Linear(16 * 4 * 4, 120)\nself.fc2 = nn.Linear(120, 84)\n"
                               "self.fc3 = nn.Linear(84, 10)",
                    N_("LeNet-5 style: two 5×5 convolutions without padding, each followed by 2×2 max-pooling, "
                    "then three Linear layers ending in logits.")),
            Excerpt("loss", "criterion = nn.CrossEntropyLoss()\n...\noptimizer = optim.SGD(net.parameters(), lr=0.01)",
                    N_("Logits into CrossEntropyLoss, as it expects; plain SGD without momentum.")),
            Excerpt("loop", "def train(epoch):\n    net.train()\n    ...\n        if i % 100 == 0:\n"
                            "            print('[%d, %5d] loss: %.3f' %\n"
                            "                  (epoch + 1, i + 1, running_loss / 100))\n...\ntrain(1)",
                    N_("A single epoch. At i = 0 the printed loss is one batch's loss divided by 100.")),
            Excerpt("eval", "_, predicted = torch.max(outputs.data, 1)\n...\n"
                            "print('网络在10000个测试图像上的准确率为：%d %%' % (100 * correct / total))",
                    N_("The %d format prints the accuracy cut down to a whole percent.")),
        ), test_batch_size=64, loss_as_written="`nn.CrossEntropyLoss()`",
        loss_meant="`nn.CrossEntropyLoss()`"),
}


def tutorial(key: str) -> Tutorial:
    return TUTORIALS[key]


# ---------------------------------------------------------------------------------------------
# Live numbers of each step, for exactly the tutorial's code


def recipe(key: str, **overrides: Any) -> TrainConfig:
    """The tutorial's preset (core.training), with flat-named overrides."""
    return preset_config(key, **overrides)


def num_outputs(config: TrainConfig) -> int:
    return 1 if config.task.kind == "binary" else 10


def network_summary(key: str, options: dict[str, Any] | None = None) -> ModelSummary:
    """Per-layer shapes and parameters of the tutorial's network, from hooks on a real forward pass."""
    config = recipe(key)
    return summarize_architecture(config.model.arch, num_outputs(config), options or config.model.options)


@dataclass(frozen=True)
class LoaderNumbers:
    """How the tutorial's DataLoaders cut the data into batches."""

    batch_size: int  # training batch size
    train_images: int
    train_batches: int  # optimizer steps per epoch
    last_train_batch: int  # images in the last (smaller) batch
    test_batch_size: int
    test_images: int
    test_batches: int
    last_test_batch: int
    epochs: int
    total_steps: int  # optimizer steps in the whole recipe
    train_as_test_batches: int  # test batches if the test loader held the training images (train=True)


def loader_numbers(key: str, dataset: Dataset) -> LoaderNumbers:
    config, tut = recipe(key), TUTORIALS[key]
    train_n, test_n, size = len(dataset.train_labels), len(dataset.test_labels), config.data.batch_size
    batches = math.ceil(train_n / size)
    test_batches = math.ceil(test_n / tut.test_batch_size)
    return LoaderNumbers(size, train_n, batches, train_n - (batches - 1) * size, tut.test_batch_size, test_n,
                         test_batches, test_n - (test_batches - 1) * tut.test_batch_size, config.epochs,
                         batches * config.epochs, math.ceil(train_n / tut.test_batch_size))


TYPED_MEAN, TYPED_STD = 0.1307, 0.3081  # the constants tutorials 002 and 003 type into Normalize


def data_normalization(key: str, dataset: Dataset) -> Normalization:
    """The mean and std the tutorial's transform applies (core.data's preset of the recipe)."""
    return normalization(recipe(key).data.normalization, dataset)


@dataclass(frozen=True)
class LossView:
    """What the loss sees on one real batch (the first training images) of an untrained network (seed 0)."""

    head: str  # "logits" (raw scores), "softmax" (probabilities) or "log_softmax" (log-probabilities)
    batch: int  # images in the batch
    label: int  # the first image's label
    first_output: tuple[float, ...]  # the network's output for the first image
    output_sum: float  # sum of that output row
    exp_sum: float  # sum of exp of that row (1 for log-probabilities)
    loss_as_written: float  # the tutorial's loss on the batch
    loss_meant: float  # the loss that matches the output, on the same batch and weights
    extra: dict[str, float] = field(default_factory=dict)  # tutorial-specific numbers, named


def _first_batch(key: str, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    config = recipe(key)
    size = config.data.batch_size
    x = to_model_input(dataset.train_images[:size], data_normalization(key, dataset))  # (B, 1, 28, 28)
    return x, dataset.train_labels[:size]


def _seeded_model(key: str) -> nn.Module:
    config = recipe(key)
    torch.manual_seed(0)
    return models.build_model(config.model.arch, num_outputs(config), config.model.options).eval()


@torch.no_grad()
def loss_view(key: str, dataset: Dataset) -> LossView:
    """The tutorial's loss on its first batch, beside the loss its output calls for."""
    x, y = _first_batch(key, dataset)
    model = _seeded_model(key)
    out = model(x)
    head = models.output_kind(model)
    extra: dict[str, float] = {}
    if key == "seed000":
        target = (y == 8).float().view(-1, 1)
        as_written = meant = float(F.binary_cross_entropy_with_logits(out, target))
        extra["probability_first"] = float(torch.sigmoid(out[0, 0]))
        extra["eights_in_batch"] = float((y == 8).sum())
    elif key == "seed001":
        as_written = float(F.cross_entropy(out, y))
        assert isinstance(model, nn.Sequential)
        logits = model[:-1](x)  # the same weights without the final Softmax
        meant = float(F.cross_entropy(logits, y))
        extra["smallest_possible_loss"] = smallest_loss_on_probabilities()
        extra["largest_probability_gap"] = 1.0  # probabilities differ by at most 1: softmax's input range
    elif key == "seed002":
        as_written, meant = float(F.cross_entropy(out, y)), float(F.nll_loss(out, y))
        extra["logsumexp_first"] = float(torch.logsumexp(out[0], 0))
        extra["largest_change"] = float((F.log_softmax(out, 1) - out).abs().max())
        extra["loss_difference"] = abs(as_written - meant)
    else:
        as_written = meant = float(F.cross_entropy(out, y))
        extra["probability_first"] = float(torch.softmax(out[0], 0)[y[0]])
    row = out[0]
    return LossView(head, len(y), int(y[0]), tuple(float(v) for v in row), float(row.sum()), float(row.exp().sum()),
                    as_written, meant, extra)


def smallest_loss_on_probabilities(classes: int = 10) -> float:
    """CrossEntropyLoss of a perfectly sure Softmax output (1 for the right class, 0 elsewhere): log(1 + 9/e)."""
    perfect = torch.zeros(1, classes)
    perfect[0, 0] = 1.0
    return float(F.cross_entropy(perfect, torch.tensor([0])))


def share_of(dataset: Dataset, digit: int, train: bool) -> float:
    """Fraction of a split's images labelled `digit`."""
    labels = dataset.train_labels if train else dataset.test_labels
    return float((labels == digit).double().mean())


# ---------------------------------------------------------------------------------------------
# The mistakes that need no training


@dataclass(frozen=True)
class Conv1Count:
    """Tutorial 000's parameter count of conv1, worked three ways."""

    printed: int  # what the tutorial prints: (3×3×1)×32+32 = 896
    formula: int  # the same formula worked out: 3·3·1·32 + 32
    rgb: int  # the count for a 3-channel input: 3·3·3·32 + 32
    model: int  # conv1's trainable parameters in the built network
    kernel: int
    in_channels: int
    out_channels: int


def conv1_count(summary: ModelSummary | None = None) -> Conv1Count:
    summary = summary or network_summary("seed000")
    row: LayerRow = next(r for r in summary.layers if r.name == "conv1")
    assert row.kernel is not None and row.in_channels is not None
    k, c_in, c_out = row.kernel[0], row.in_channels, row.output_shape[0]
    return Conv1Count(896, k * k * c_in * c_out + c_out, k * k * 3 * c_out + c_out, row.params, k, c_in, c_out)


@dataclass(frozen=True)
class LearningRates:
    """Tutorial 001's learning rate per epoch: as CosineAnnealingLR would set it, and as it really is."""

    epochs: tuple[int, ...]  # 1-based
    scheduled: tuple[float, ...]  # if lr_scheduler.step() were called after every epoch
    actual: tuple[float, ...]  # as written: the scheduler is never stepped
    t_max: int

    @property
    def lowest(self) -> tuple[int, float]:
        """(epoch, learning rate) at the bottom of the scheduled curve."""
        index = min(range(len(self.scheduled)), key=self.scheduled.__getitem__)
        return self.epochs[index], self.scheduled[index]


def tutorial_learning_rates(epochs: int = 50, lr: float = 1e-2, t_max: int = 32,
                            steps_per_epoch: int = 3) -> LearningRates:
    """Both schedules from torch itself: Adam with CosineAnnealingLR, a few real optimizer steps per epoch."""
    curves: list[list[float]] = []
    for step_scheduler in (True, False):
        weight = nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.Adam([weight], lr=lr, betas=(0.9, 0.999))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)
        rates = []
        for _ in range(epochs):
            rates.append(float(optimizer.param_groups[0]["lr"]))  # the rate this epoch trains with
            for _ in range(steps_per_epoch):
                optimizer.zero_grad()
                (weight - 1.0).pow(2).sum().backward()
                optimizer.step()
            if step_scheduler:
                scheduler.step()
        curves.append(rates)
    return LearningRates(tuple(range(1, epochs + 1)), tuple(curves[0]), tuple(curves[1]), t_max)


@dataclass(frozen=True)
class ImshowGrids:
    """Tutorial 003's image grid shown with its un-normalization and with the right one."""

    as_written: torch.Tensor  # (H, W) uint8: clip(img / 2 + 0.5, 0, 1), as matplotlib shows it
    corrected: torch.Tensor  # (H, W) uint8: img * std + mean
    images: int
    mean: float
    std: float
    background_as_written: float  # what a black pixel becomes (0 is black, 1 white)
    white_as_written: float  # what a white pixel becomes before matplotlib clips it to 1
    clipped_share: float  # fraction of the digits' pixels pushed above 1 and clipped
    first_clipped_pixel: int  # the smallest pixel value 0-255 that ends up clipped


def image_grid(images: torch.Tensor, columns: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """(N, H, W) float -> one (rows·(H+p)+p, columns·(W+p)+p) grid, as torchvision's make_grid lays it out."""
    count, height, width = images.shape
    rows = math.ceil(count / columns)
    grid = torch.full((rows * (height + padding) + padding, columns * (width + padding) + padding), pad_value)
    for index in range(count):
        row, col = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        grid[top : top + height, left : left + width] = images[index]
    return grid


def imshow_grids(dataset: Dataset, count: int = 64) -> ImshowGrids:
    """The first `count` training images, normalized as tutorial 003 does, un-normalized both ways."""
    norm = Normalization("dataset", TYPED_MEAN, TYPED_STD)  # the constants tutorial 003 types
    grid = image_grid(to_model_input(dataset.train_images[:count], norm)[:, 0])  # normalized values
    wrong, right = grid / 2 + 0.5, grid * norm.std + norm.mean

    def to_uint8(values: torch.Tensor) -> torch.Tensor:
        return (values.clamp(0, 1) * 255).round().to(torch.uint8)

    pixels = dataset.train_images[:count].double() / 255
    shown = ((pixels - norm.mean) / norm.std) / 2 + 0.5
    ink = pixels > 0
    threshold = next(v for v in range(256) if ((v / 255 - norm.mean) / norm.std) / 2 + 0.5 > 1)
    return ImshowGrids(
        to_uint8(wrong), to_uint8(right), count, norm.mean, norm.std,
        background_as_written=(-norm.mean / norm.std) / 2 + 0.5,
        white_as_written=((1 - norm.mean) / norm.std) / 2 + 0.5,
        clipped_share=float((shown[ink] > 1).double().mean()), first_clipped_pixel=threshold,
    )


def dataloader_iterator_has_next_method() -> bool:
    """Whether a DataLoader iterator still has the `.next()` method tutorial 003 calls (it was removed)."""
    iterator = iter(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1)), batch_size=2))
    return hasattr(iterator, "next")


# ---------------------------------------------------------------------------------------------
# Measured results: short trainings on a fixed budget, by scripts/measure_tutorials.py


@dataclass(frozen=True)
class Budget:
    """How much each measured training sees; small enough for a 2-core CPU."""

    train_images: int = 5000  # the first N training images
    test_images: int = 10_000  # the first N test images (10,000 = the whole test set)
    epochs: int = 3
    seed: int = 0

    def overrides(self) -> dict[str, Any]:
        return {"train_subset": self.train_images, "test_subset": self.test_images, "epochs": self.epochs,
                "seed": self.seed}


# name -> (preset, its title, extra overrides): the trainings the results file holds
MEASURED_TRAININGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "seed001-as-written": ("seed001", N_("DemoModel as written (Softmax before CrossEntropyLoss)"), {}),
    "seed001-no-softmax": ("seed001", N_("DemoModel with the Softmax removed"), {"options": {"softmax": False}}),
}


def measured_config(name: str, budget: Budget) -> TrainConfig:
    """The config of one measured training: its tutorial's preset cut to the budget."""
    preset, _, extra = MEASURED_TRAININGS[name]
    return recipe(preset, **budget.overrides(), **extra)


BATCH_BUCKET = 10  # batches averaged into one point of a measured loss curve


def _train_and_record(config: TrainConfig, name: str, root: Path, dataset: Dataset) -> dict[str, Any]:
    """Train in this process; return its epoch rows, its per-batch loss curve and its run folder."""
    epochs: list[dict[str, Any]] = []
    losses: list[float] = []
    folder = ""
    started = time.perf_counter()
    for event in train(config, run_name=name, runs_root=root, dataset=dataset):
        if isinstance(event, BatchEnd):
            losses.append(event.loss)
        elif isinstance(event, EpochEnd):
            epochs.append({"epoch": event.epoch, "train_loss": event.train_loss, "train_accuracy": event.train_accuracy,
                           "test_loss": event.test_loss, "test_accuracy": event.test_accuracy, "lr": event.lr,
                           "seconds": event.seconds})
        elif isinstance(event, Failed):
            raise RuntimeError(f"{name}: {event.message}")
        run_dir = getattr(event, "run_dir", None)
        folder = str(run_dir) if run_dir else folder
    buckets = range(0, len(losses), BATCH_BUCKET)
    return {
        "epochs": epochs,
        "batch_steps": [min(start + BATCH_BUCKET, len(losses)) for start in buckets],
        "batch_losses": [sum(losses[s : s + BATCH_BUCKET]) / len(losses[s : s + BATCH_BUCKET]) for s in buckets],
        "seconds": time.perf_counter() - started,
        "run_dir": folder,
    }


@torch.no_grad()
def accuracy_on(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, norm: Normalization) -> float:
    """Fraction of (uint8) images the model classifies right, in batches of 1000."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), 1000):
        outputs = model(to_model_input(images[start : start + 1000], norm))
        correct += int((outputs.argmax(1) == labels[start : start + 1000]).sum())
    return correct / len(labels)


def cross_entropy_vs_nll(dataset: Dataset, steps: int = 50, seed: int = 0) -> dict[str, Any]:
    """Train two copies of Digit from the same weights on the same batches, one with F.cross_entropy, one with
    F.nll_loss (tutorial 002's recipe otherwise); return both loss curves and how far apart they end."""
    config = recipe("seed002")
    norm = data_normalization("seed002", dataset)
    size = config.data.batch_size
    curves: dict[str, list[float]] = {}
    weights: dict[str, list[torch.Tensor]] = {}
    loss_functions: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss}
    for name, loss_fn in loss_functions.items():
        torch.manual_seed(seed)
        model = models.build_model("seed002").train()
        optimizer = build_optimizer(config.optimizer, model.parameters())
        curve = []
        for step in range(steps):
            images = dataset.train_images[step * size : (step + 1) * size]
            labels = dataset.train_labels[step * size : (step + 1) * size]
            loss = loss_fn(model(to_model_input(images, norm)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        curves[name] = curve
        weights[name] = [p.detach().clone() for p in model.parameters()]
    pairs = zip(weights["cross_entropy"], weights["nll_loss"], strict=True)
    return {
        "steps": steps,
        "batch_size": size,
        "cross_entropy": curves["cross_entropy"],
        "nll_loss": curves["nll_loss"],
        "max_loss_difference": max(abs(a - b) for a, b in zip(*curves.values(), strict=True)),
        "max_weight_difference": max(float((a - b).abs().max()) for a, b in pairs),
    }


@dataclass(frozen=True)
class Machine:
    """Where the numbers were measured: names and counts only, so the page can say it in any language."""

    system: str  # operating system and processor, e.g. "Linux x86_64"
    cores: int  # CPU cores this process could use
    python: str  # Python version, e.g. "3.11.7"
    torch: str  # torch.__version__
    threads: int  # torch's CPU threads


def this_machine() -> Machine:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    return Machine(f"{platform.system()} {platform.machine()}", cores, platform.python_version(), torch.__version__,
                   torch.get_num_threads())


# How results files written before Machine existed describe it, in one English line
_MACHINE_LINE = re.compile(r"(?P<system>.+), (?P<cores>\d+) CPU cores, Python (?P<python>\S+), "
                           r"torch (?P<torch>\S+), threads (?P<threads>\d+)")


def machine_from(value: Any) -> Machine:
    """The results file's machine: Machine's fields, or the English line of an older file (ValueError if neither)."""
    if isinstance(value, dict):
        return Machine(**value)
    match = _MACHINE_LINE.fullmatch(str(value))
    if match is None:
        raise ValueError(f"not a machine description: {value!r}")
    return Machine(match["system"], int(match["cores"]), match["python"], match["torch"], int(match["threads"]))


def measure(dataset: Dataset, root: Path, budget: Budget = Budget(),
            progress: Callable[[str], None] = lambda _: None, loss_steps: int = 50) -> dict[str, Any]:
    """Every measured figure of the Tutorials page, as the JSON-ready dict the results file holds."""
    started = time.perf_counter()
    trainings: dict[str, Any] = {}
    for name, (preset, title, _) in MEASURED_TRAININGS.items():
        progress(f"training {name}")
        config = measured_config(name, budget)
        record = _train_and_record(config, name, root, dataset)
        trainings[name] = {"preset": preset, "title": title, "config": config_to_dict(config),
                           "overrides": {**budget.overrides(), **MEASURED_TRAININGS[name][2]}, **record}
    progress("evaluating the as-written model on its training images and on the test set")
    written = trainings["seed001-as-written"]
    loaded = load_checkpoint(Path(written.pop("run_dir")) / runs.LAST_CHECKPOINT)
    trainings["seed001-no-softmax"].pop("run_dir")
    count = budget.train_images
    train_set = {
        "training": "seed001-as-written",
        "images": count,
        "reported_accuracy": accuracy_on(loaded.model, dataset.train_images[:count], dataset.train_labels[:count],
                                         loaded.normalization),
        "test_images": len(dataset.test_labels),
        "true_test_accuracy": accuracy_on(loaded.model, dataset.test_images, dataset.test_labels,
                                          loaded.normalization),
    }
    progress("training Digit with cross_entropy and with nll_loss")
    return {
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": asdict(this_machine()),
        "command": "python scripts/measure_tutorials.py",
        "budget": asdict(budget),
        "trainings": trainings,
        "train_set_as_test_set": train_set,
        "cross_entropy_vs_nll": cross_entropy_vs_nll(dataset, steps=loss_steps, seed=budget.seed),
        "seconds": time.perf_counter() - started,
    }


@dataclass(frozen=True)
class MeasuredTraining:
    """One measured training as the results file holds it."""

    name: str
    title: str
    preset: str
    overrides: dict[str, Any]  # flat settings on top of the preset (core.training.FLAT_FIELDS names)
    epochs: tuple[runs.EpochMetrics, ...]
    batch_steps: tuple[int, ...]
    batch_losses: tuple[float, ...]
    seconds: float

    @property
    def final_test_accuracy(self) -> float:
        return self.epochs[-1].test_accuracy

    def config(self) -> TrainConfig:
        """The config to re-run this training as a job."""
        return recipe(self.preset, **self.overrides)


@dataclass(frozen=True)
class MeasuredResults:
    """docs/tutorial-results.json, read back."""

    measured_at: str
    machine: Machine
    command: str
    budget: Budget
    seconds: float
    trainings: dict[str, MeasuredTraining]
    train_set_as_test_set: dict[str, Any]  # training, images, reported_accuracy, test_images, true_test_accuracy
    cross_entropy_vs_nll: dict[str, Any]  # steps, batch_size, both curves, max_loss/weight_difference


def results_from_dict(data: dict[str, Any]) -> MeasuredResults:
    trainings = {}
    for name, item in data["trainings"].items():
        rows = tuple(row for row in map(runs.EpochMetrics.from_row, item["epochs"]) if row is not None)
        trainings[name] = MeasuredTraining(name, item["title"], item["preset"], dict(item["overrides"]), rows,
                                           tuple(item["batch_steps"]), tuple(item["batch_losses"]),
                                           float(item["seconds"]))
    return MeasuredResults(str(data["measured_at"]), machine_from(data["machine"]), str(data["command"]),
                           Budget(**data["budget"]), float(data["seconds"]), trainings,
                           dict(data["train_set_as_test_set"]), dict(data["cross_entropy_vs_nll"]))


def read_results(path: Path | str = RESULTS_PATH) -> MeasuredResults | None:
    """The measured results, or None when the file is missing or not a results file of ours."""
    try:
        return results_from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_results(results: dict[str, Any], path: Path | str = RESULTS_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def runs_of_preset(preset: str, root: Path | str | None = None) -> Iterator[runs.RunRecord]:
    """Every run started from `preset`, newest first (core.runs' registry, filtered by the record's preset)."""
    return (record for record in runs.list_runs(root) if record.preset == preset)

