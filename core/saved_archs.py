"""Custom layer stacks saved by name, so the Train page (and the CLI) can train what the Architecture page built.

One JSON file per stack in `<runs root>/.architectures/<name>.json` ({"name", "layers", "saved"}), written
atomically. Every load checks the file again through the registry, so a hand-edited or damaged file gives
a message that names it and what is wrong, never a half-built network. A saved stack trains as the
registry's `custom` architecture with its layers (and name) in the run's config, so checkpoints, Compare,
Draw and export need nothing special for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core import models, runs
from core.i18n import N_, Message
from core.layers import ArchitectureError, LayerSpec, normalize_layer

ARCH_DIR = ".architectures"  # under the runs root; a leading dot, so it is never taken for a run folder
NAME_MAX = 60  # characters
_NAME = re.compile(r"\w[\w.-]*")  # letters (any script), digits, '_', '.', '-': one safe file name
SAVED_PREFIX = "saved:"  # how a saved stack is named where registry names are listed too (the Train form)


def architectures_dir(root: Path | str | None = None) -> Path:
    """The folder of saved stacks (not created here)."""
    return runs.runs_root(root) / ARCH_DIR


def check_name(name: Any) -> str:
    """The name, stripped, if it makes one safe file name; ArchitectureError saying what is allowed if not."""
    text = name.strip() if isinstance(name, str) else ""
    if not text or len(text) > NAME_MAX or not _NAME.fullmatch(text) or ".." in text:
        raise ArchitectureError(Message(
            N_("%(name)r cannot name an architecture: use 1 to %(max)d letters, digits, '_', '.' or '-' "
               "(no spaces, no '..')"), {"name": str(name), "max": NAME_MAX}))
    return text


def _path(name: str, root: Path | str | None) -> Path:
    return architectures_dir(root) / f"{check_name(name)}.json"


def checked_layers(layers: Any) -> list[LayerSpec]:
    """The stack with every layer's defaults filled in, if the registry can build it; ArchitectureError if not."""
    if not isinstance(layers, list | tuple):
        raise ArchitectureError(Message(N_("the layers must be a list of layer specs")))
    models.build_model("custom", 10, {"layers": list(layers)})  # checks every setting and every shape
    return [normalize_layer(spec, index) for index, spec in enumerate(layers, start=1)]


def save_architecture(name: str, layers: list[LayerSpec], root: Path | str | None = None) -> Path:
    """Check the stack, then write it (replacing one saved under the same name); returns the file."""
    path = _path(name, root)
    specs = checked_layers(layers)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(path, {"name": check_name(name), "layers": specs, "saved": runs.now_iso()})
    return path


def list_saved_architectures(root: Path | str | None = None) -> list[str]:
    """Names of the saved stacks, sorted; damaged files are listed too (loading one says what is wrong)."""
    folder = architectures_dir(root)
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.json") if _NAME.fullmatch(path.stem) and ".." not in path.stem)


def load_architecture(name: str, root: Path | str | None = None) -> list[LayerSpec]:
    """The saved stack's layer specs, checked; ArchitectureError naming the file and the problem otherwise."""
    path = _path(name, root)
    reason: Message
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchitectureError(Message(N_("there is no saved architecture %(name)r in %(folder)s"),
                                        {"name": name, "folder": str(path.parent)})) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        reason = Message(N_("it is not readable JSON"))
    else:
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            reason = Message(N_("it has no list of layers"))
        else:
            try:
                return checked_layers(data["layers"])
            except ArchitectureError as error:
                reason = error.message
    raise ArchitectureError(Message(N_("the saved architecture %(name)r (%(path)s) is damaged: %(reason)s; "
                                       "save it again from the Architecture page"),
                                    {"name": name, "path": str(path), "reason": reason}))


def saved_options(name: str, root: Path | str | None = None) -> dict[str, Any]:
    """The `custom` architecture's options that train this saved stack: its layers and its name."""
    return {"layers": load_architecture(name, root), "name": check_name(name)}
