"""Run folders: where each training run keeps its config, metrics, status, evaluation and checkpoints.

    <root>/<run-id>/config.json       what was trained: run id, name, preset, time, train config, arch
    <root>/<run-id>/metrics.jsonl     one JSON line per epoch, appended and flushed as it happens
    <root>/<run-id>/status.json       running / finished / stopped / failed, rewritten atomically
    <root>/<run-id>/evaluation.json   the final model's answers on the test set (core.metrics)
    <root>/<run-id>/last.pt, best.pt  checkpoints (core.checkpoints)

The root is `runs_root` when given, else $DIGITS_RUNS_DIR, else checkpoints/runs/ in the project.
Run ids are checked before any path is built from them, so nothing lands outside the root.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.metrics import Evaluation, evaluation_from_dict, evaluation_to_dict

RUNS_ENV = "DIGITS_RUNS_DIR"
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "checkpoints" / "runs"
STATUSES = ("running", "finished", "stopped", "failed")
INTERRUPTED = "interrupted"  # status.json says running, but the process that wrote it is gone

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
EVALUATION_FILE = "evaluation.json"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"

# A run id is one path component of safe characters that starts with a letter or digit.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_SLUG_MAX = 40


class RunError(ValueError):
    """A bad run id or name, or a run folder that cannot be read; the message says which."""


@dataclass(frozen=True)
class RunInfo:
    """What the run list shows, read from a run's small JSON files (never its weights)."""

    run_id: str
    run_dir: Path
    name: str  # as the person typed it ("" if none)
    preset: str  # preset the config started from ("" if none)
    created: str  # ISO time the run started
    created_unix: float  # the same, in seconds since the epoch, for ordering
    arch: str
    task: str
    dataset: str
    status: str  # running / finished / stopped / failed, or "unknown" if status.json is missing
    message: str
    epoch: int  # last whole epoch done
    total_epochs: int
    test_accuracy: float | None  # of the last whole epoch
    best_test_accuracy: float | None


def runs_root(root: Path | str | None = None) -> Path:
    """The folder holding the run folders (not created here)."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_ROOT)


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it is one safe path component, else raise RunError."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise RunError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only, no '..' or '/'"
        )
    return run_id


def run_dir(run_id: str, root: Path | str | None = None) -> Path:
    """The folder of an existing run, after checking the id; RunError if there is none."""
    folder = runs_root(root) / check_run_id(run_id)
    if not folder.is_dir():
        raise RunError(f"no run {run_id!r} in {runs_root(root)}")
    return folder


def slugify(name: str) -> str:
    """A safe slug from a name a person typed; RunError if it tries to name a path."""
    if "/" in name or "\\" in name or ".." in name or Path(name).is_absolute():
        raise RunError(f"run name {name!r} must not contain '/', '\\' or '..'")
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-._")
    return slug[:_SLUG_MAX].rstrip("-._") or "run"


def _write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, then rename it over: readers never see half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        json.dump(data, f, indent=1)
    os.replace(f.name, path)


def _read_json(path: Path) -> Any:
    """Parsed JSON, or None if the file is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def new_run(
    config: dict[str, Any],
    *,
    name: str | None = None,
    arch_config: dict[str, Any] | None = None,
    param_count: int = 0,
    root: Path | str | None = None,
) -> tuple[str, Path]:
    """Create a run folder `<timestamp>-<slug>` with config.json and a running status; return (id, folder)."""
    slug = slugify(name or config.get("preset") or config["model"]["arch"])
    base = runs_root(root)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        run_id = f"{stamp}-{slug}" if attempt == 1 else f"{stamp}-{slug}-{attempt}"
        folder = base / check_run_id(run_id)
        try:
            folder.mkdir()  # exclusive: two runs started in the same second get different ids
        except FileExistsError:
            continue
        record = {
            "run_id": run_id,
            "name": name or "",
            "preset": config.get("preset", ""),
            "created": now_iso(),
            "created_unix": time.time(),  # orders runs started within the same second
            "config": config,
            "arch_config": arch_config,
            "param_count": param_count,
        }
        _write_json_atomic(folder / CONFIG_FILE, record)
        return run_id, folder
    raise RunError(f"could not make a new run folder for {slug!r} in {base}")


def read_config(folder: Path) -> dict[str, Any]:
    """The run's config.json record; RunError if it is missing or broken."""
    record = _read_json(folder / CONFIG_FILE)
    if not isinstance(record, dict) or "config" not in record:
        raise RunError(f"{folder / CONFIG_FILE} is missing or not a run config")
    return record


def update_record(folder: Path, **fields: Any) -> dict[str, Any]:
    """Replace top-level fields of config.json atomically (e.g. its display `name`); return the new record."""
    record = {**read_config(folder), **fields}
    _write_json_atomic(folder / CONFIG_FILE, record)
    return record


def update_config(folder: Path, config: dict[str, Any]) -> None:
    """Replace the train config in config.json (a resumed run extended to more epochs, say)."""
    update_record(folder, config=config)


def write_status(folder: Path, status: str, *, message: str = "", epoch: int = 0, total_epochs: int = 0,
                 **extra: Any) -> None:
    """Rewrite status.json atomically; `extra` holds e.g. test_accuracy, best_test_accuracy."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    record = {"status": status, "message": message, "updated": now_iso(), "epoch": epoch,
              "total_epochs": total_epochs, "pid": os.getpid(), **extra}
    _write_json_atomic(folder / STATUS_FILE, record)


def read_status(folder: Path) -> dict[str, Any]:
    """The run's status.json record, or {"status": "unknown"} if it is missing.

    A "running" status whose process died (killed, power cut) stays "running": the record keeps
    the writer's pid, but nothing checks it yet.
    """
    record = _read_json(folder / STATUS_FILE)
    return record if isinstance(record, dict) else {"status": "unknown", "message": "no status.json"}


def append_metrics(folder: Path, row: dict[str, Any]) -> None:
    """Add one epoch's line to metrics.jsonl and flush it, so a live reader sees it at once."""
    with open(folder / METRICS_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """The per-epoch rows; a line cut short by a crash (or being written now) is skipped."""
    try:
        lines = (folder / METRICS_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:  # unreadable, or not text at all
        raise RunError(f"{folder / METRICS_FILE} cannot be read: {error}") from error
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def truncate_metrics(folder: Path, last_epoch: int) -> list[dict[str, Any]]:
    """Keep only rows up to `last_epoch` (the resumed checkpoint's), dropping a cut line; return them."""
    rows = [row for row in read_metrics(folder) if row.get("epoch", 0) <= last_epoch]
    path = folder / METRICS_FILE
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=f".{METRICS_FILE}.", suffix=".tmp", delete=False) as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(f.name, path)
    return rows


def write_evaluation(folder: Path, evaluation: Evaluation) -> None:
    _write_json_atomic(folder / EVALUATION_FILE, evaluation_to_dict(evaluation))


def read_evaluation(folder: Path) -> Evaluation | None:
    """The run's evaluation.json, or None if the run has not written one (yet)."""
    data = _read_json(folder / EVALUATION_FILE)
    if not isinstance(data, dict):
        return None
    try:
        return evaluation_from_dict(data)
    except TypeError:
        return None


def _optional_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def is_live(status: dict[str, Any]) -> bool:
    """True if status.json says running and the process that wrote it (its pid) still exists."""
    if status.get("status") != "running":
        return False
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0 or os.name == "nt":  # signal 0 means Ctrl-C on Windows
        return True  # nothing we can check: trust the file
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def run_info(folder: Path) -> RunInfo:
    """A RunInfo from a run folder's config.json and status.json."""
    record = read_config(folder)
    status = read_status(folder)
    config = record["config"]
    stale = status.get("status") == "running" and not is_live(status)  # its process died mid-run
    return RunInfo(
        run_id=record.get("run_id", folder.name),
        run_dir=folder,
        name=record.get("name", ""),
        preset=record.get("preset", ""),
        created=record.get("created", ""),
        created_unix=float(record.get("created_unix", 0.0)),
        arch=config.get("model", {}).get("arch", ""),
        task=config.get("task", {}).get("kind", ""),
        dataset=config.get("data", {}).get("dataset", ""),
        status=INTERRUPTED if stale else status.get("status", "unknown"),
        message=status.get("message", ""),
        epoch=int(status.get("epoch", 0)),
        total_epochs=int(status.get("total_epochs", config.get("epochs", 0))),
        test_accuracy=_optional_float(status.get("test_accuracy")),
        best_test_accuracy=_optional_float(status.get("best_test_accuracy")),
    )


def list_runs(root: Path | str | None = None) -> list[RunInfo]:
    """Every readable run under the root, newest first; folders that are not runs are skipped."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    infos = []
    for folder in base.iterdir():
        if not folder.is_dir() or not _RUN_ID.fullmatch(folder.name):
            continue
        try:
            infos.append(run_info(folder))
        except (RunError, AttributeError, TypeError, ValueError):
            continue  # a half-made or foreign folder: not a run we can show
    return sorted(infos, key=lambda info: (info.created_unix, info.run_id), reverse=True)
