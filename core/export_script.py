"""A standalone `train.py` (torch and torchvision only) that retrains a run's recipe from scratch.

The network is written out as the named nn.Sequential that `core.models.build_model` stacks, one
line per layer, so `print(model)` and the state-dict keys are the same as ours and a checkpoint's
weights load into it. The rest follows `core.training`: the optimizer and scheduler as
`build_optimizer`/`build_scheduler` make them (onecycle stepped per batch, the others per epoch),
the loss as `loss_function` picks it, and `core.data.Augmentation` as torchvision's RandomAffine.
"""

from __future__ import annotations

import math
import re
from string import Template

from torch import nn

from core.data import NORMALIZATIONS, Augmentation, Distortion, Normalization, get_spec
from core.models import output_kind
from core.training import TrainConfig

_NO_ARGUMENTS = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Flatten)


def module_source(module: nn.Module) -> str:
    """Python source that builds `module` as our layer builder does, e.g. 'nn.Linear(576, 10)'."""
    if type(module) is nn.Conv2d:
        return (f"nn.Conv2d({module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size}, "
                f"stride={module.stride}, padding={module.padding!r})")
    if type(module) in (nn.MaxPool2d, nn.AvgPool2d):
        return (f"nn.{type(module).__name__}(kernel_size={module.kernel_size}, stride={module.stride}, "
                f"padding={module.padding})")
    if type(module) is nn.AdaptiveAvgPool2d:
        return f"nn.AdaptiveAvgPool2d({module.output_size})"
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return f"nn.{type(module).__name__}({module.num_features})"
    if type(module) is nn.Linear:
        return f"nn.Linear({module.in_features}, {module.out_features})"
    if type(module) is nn.Dropout:
        return f"nn.Dropout(p={module.p})"
    if type(module) is nn.LeakyReLU:
        return f"nn.LeakyReLU(negative_slope={module.negative_slope})"
    if type(module) in (nn.Softmax, nn.LogSoftmax):
        return f"nn.{type(module).__name__}(dim={module.dim})"
    if type(module) in _NO_ARGUMENTS:
        return f"nn.{type(module).__name__}()"
    raise TypeError(f"no source rendering for {type(module).__name__}; add it to module_source")


def network_source(model: nn.Module) -> str:
    """The body of `build_model()`: `return nn.Sequential(OrderedDict([...]))`, one named layer per line."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"expected the registry's nn.Sequential, got {type(model).__name__}")
    lines = [f'    ("{name}", {module_source(module)}),' for name, module in model.named_children()]
    return "return nn.Sequential(OrderedDict([\n" + "\n".join(lines) + "\n]))"


def _optimizer_source(config: TrainConfig) -> str:
    opt = config.optimizer
    if opt.name == "sgd":
        return (f"torch.optim.SGD(model.parameters(), lr={opt.lr!r}, momentum={opt.momentum!r}, "
                f"nesterov={opt.nesterov!r}, weight_decay={opt.weight_decay!r})")
    name = "Adam" if opt.name == "adam" else "AdamW"
    return (f"torch.optim.{name}(model.parameters(), lr={opt.lr!r}, betas={tuple(opt.betas)!r}, "
            f"weight_decay={opt.weight_decay!r})")


def _scheduler_source(config: TrainConfig) -> tuple[str, str, str]:
    """(creation, per-batch step, per-epoch step) lines; onecycle counts batches, cosine and step epochs."""
    sched, step = config.scheduler, "scheduler.step()"
    if sched.name == "cosine":
        t_max = repr(sched.t_max) if sched.t_max else "args.epochs"
        return (f"scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={t_max}, "
                f"eta_min={sched.min_lr!r})  # stepped after every epoch", "", step)
    if sched.name == "step":
        return (f"scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size={sched.step_size!r}, "
                f"gamma={sched.gamma!r})  # stepped after every epoch", "", step)
    if sched.name == "onecycle":
        return ("scheduler = torch.optim.lr_scheduler.OneCycleLR(  # stepped after every batch\n"
                f"    optimizer, max_lr={config.optimizer.lr!r}, total_steps=args.epochs * len(train_loader), "
                f"pct_start={sched.pct_start!r}\n)", step, "")
    return "", "", ""


def _task_source(config: TrainConfig, head: str) -> dict[str, str]:
    """The loss and the right-answer count, as `core.training.loss_function` and `count_correct` choose them."""
    task = config.task
    if task.kind == "binary":
        return {
            "task_line": f"TARGET = {task.target_digit}  # one output logit: is it class TARGET? (BCE with logits)",
            "loss": "F.binary_cross_entropy_with_logits(outputs.squeeze(1), (labels == TARGET).to(outputs.dtype))",
            "correct": "((outputs.squeeze(1) >= 0) == (labels == TARGET)).sum().item()",
        }
    if head == "log_softmax" and task.label_smoothing == 0:
        loss = "F.nll_loss(outputs, labels)  # the network ends in LogSoftmax"
    else:
        note = "  # on a Softmax head, as the tutorial does" if head == "softmax" else ""
        loss = f"F.cross_entropy(outputs, labels, label_smoothing={task.label_smoothing!r}){note}"
    return {"task_line": "", "loss": loss, "correct": "(outputs.argmax(dim=1) == labels).sum().item()"}


def _augmentation_source(augment: bool, distort: bool = False) -> str:
    if distort:  # the affine part of core.data.Distortion; the rest is MNIST Lab's own and said so
        warp = Distortion()
        shear = round(math.degrees(math.atan(warp.shear)), 1)
        return ("# MNIST Lab's Distortion (core.data) also stretches, wobbles, thickens or thins the strokes,\n"
                "# re-samples some images through a coarse grid, widens narrow digits as a box-filling scan does\n"
                "# and, on MNIST, adds other writers' strokes to 1s, 7s and 9s: not reproduced here, so expect\n"
                "# somewhat different accuracy on other writers.\n"
                f"augment = [transforms.RandomAffine(degrees={warp.degrees!r}, translate=({warp.translate!r}, "
                f"{warp.translate!r}), scale={tuple(warp.scale)!r}, shear={shear!r})]")
    if not augment:
        return "augment = []"
    aug = Augmentation()
    return (f"augment = [transforms.RandomAffine(degrees={aug.degrees!r}, translate=({aug.translate!r}, "
            f"{aug.translate!r}), scale={tuple(aug.scale)!r})]")


_BLOCK = re.compile(r"^( *)#\{(\w+)\}\n", re.MULTILINE)  # a whole-line placeholder: indented code or nothing


def _fill(template: str, blocks: dict[str, str], values: dict[str, str]) -> str:
    """Whole-line `#{name}` blocks indented where they stand (dropped when empty), then `$name` values."""
    def block(match: re.Match[str]) -> str:
        code = blocks[match.group(2)]
        return "".join(f"{match.group(1)}{line}\n" if line else "\n" for line in code.splitlines())

    return Template(_BLOCK.sub(block, template)).substitute(values)


def render_script(model: nn.Module, config: TrainConfig, norm: Normalization, source: str) -> str:
    """The text of a standalone train.py that retrains `model`'s architecture with `config`'s recipe.

    `model` is the network rebuilt from the checkpoint (its layers become code); `norm` is the
    checkpoint's normalization, written as numbers so the script needs no statistics of its own;
    `source` names the run or checkpoint in the docstring.
    """
    spec = get_spec(config.data.dataset)
    creation, per_batch, per_epoch = _scheduler_source(config)
    task = _task_source(config, output_kind(model))
    blocks = {"network": network_source(model), "task_line": task["task_line"], "scheduler": creation,
              "per_batch_step": per_batch, "per_epoch_step": per_epoch,
              "augment": _augmentation_source(config.data.augment, config.data.distort)}
    values = {
        "title": f"Train {config.model.arch} on {spec.title} with the recipe of {source}.",
        "source": source, "folder": spec.folder,
        "dataset_class": spec.folder,  # torchvision names the folder after its dataset class
        "classes": repr(list(spec.classes)), "mean": repr(norm.mean), "std": repr(norm.std),
        "norm_note": f'normalization "{norm.preset}": {NORMALIZATIONS.get(norm.preset, "")}',
        "loss": task["loss"], "correct": task["correct"], "optimizer": _optimizer_source(config),
        "epochs": str(config.epochs), "batch_size": str(config.data.batch_size), "seed": str(config.seed),
        "train_subset": str(config.data.train_subset), "test_subset": str(config.data.test_subset),
    }
    return _fill(SCRIPT_TEMPLATE, blocks, values)


SCRIPT_TEMPLATE = '''\
"""$title

Written by MNIST Lab (`python -m core export --format script`). It needs only torch and
torchvision and repeats the run's recipe: the network, the data and its normalization, the
augmentation, optimizer, learning-rate schedule, loss, batch size, epochs and seed. Expect close,
not identical, numbers: MNIST Lab shuffles and augments with random draws of its own.

    python train.py --data-dir DIR              # DIR/$folder/raw/ holds the four IDX files
    python train.py --data-dir DIR --download   # let torchvision fetch them first
"""

import argparse
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import transforms

CLASSES = $classes
# $norm_note
MEAN, STD = $mean, $std
#{task_line}


def build_model() -> nn.Module:
    """The network, layer for layer (print(model) matches MNIST Lab's)."""
    #{network}


def load_data(data_dir: str, download: bool, train_subset: int, test_subset: int):
    """torchvision's $dataset_class, scaled to [0, 1] by ToTensor and normalized; subsets keep the first N images."""
    normalize = [transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))]
    #{augment}
    dataset = torchvision.datasets.$dataset_class
    train_set = dataset(data_dir, train=True, download=download, transform=transforms.Compose(augment + normalize))
    test_set = dataset(data_dir, train=False, download=download, transform=transforms.Compose(normalize))
    if train_subset:
        train_set = torch.utils.data.Subset(train_set, range(train_subset))
    if test_subset:
        test_set = torch.utils.data.Subset(test_set, range(test_subset))
    return train_set, test_set


def loss_fn(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return $loss


def count_correct(outputs: torch.Tensor, labels: torch.Tensor) -> int:
    return $correct


def evaluate(model: nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy over a loader, in eval mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            total_loss += loss_fn(outputs, labels).item() * len(labels)
            correct += count_correct(outputs, labels)
    return total_loss / len(loader.dataset), correct / len(loader.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data", help="folder holding $folder/raw/ (torchvision's layout)")
    parser.add_argument("--download", action="store_true", help="download the dataset with torchvision first")
    parser.add_argument("--epochs", type=int, default=$epochs)
    parser.add_argument("--batch-size", type=int, default=$batch_size)
    parser.add_argument("--train-subset", type=int, default=$train_subset, help="train on the first N images (0 = all)")
    parser.add_argument("--test-subset", type=int, default=$test_subset, help="test on the first N images (0 = all)")
    parser.add_argument("--seed", type=int, default=$seed)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--save", default="model_state.pt", help="where to write the trained state_dict")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_set, test_set = load_data(args.data_dir, args.download, args.train_subset, args.test_subset)
    shuffle = torch.Generator().manual_seed(args.seed)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=shuffle)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    model = build_model().to(device)
    optimizer = $optimizer
    #{scheduler}

    for epoch in range(1, args.epochs + 1):
        model.train()
        train_loss, train_correct = 0.0, 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = loss_fn(outputs, labels)
            loss.backward()
            optimizer.step()
            #{per_batch_step}
            train_loss += loss.item() * len(labels)
            train_correct += count_correct(outputs.detach(), labels)
        #{per_epoch_step}
        test_loss, test_accuracy = evaluate(model, test_loader, device)
        seen = len(train_loader.dataset)
        print(f"epoch {epoch}/{args.epochs}: train loss {train_loss / seen:.4f}, "
              f"train accuracy {train_correct / seen:.2%}, test loss {test_loss:.4f}, "
              f"test accuracy {test_accuracy:.2%}", flush=True)

    torch.save(model.state_dict(), args.save)
    print(f"saved the trained weights to {args.save}")


if __name__ == "__main__":
    main()
'''
