"""Run folders: each training run's one record, written by its worker and read by every page and the CLI.

    <root>/<run-id>/config.json       what was trained: run id, name, preset, time, train config, arch
    <root>/<run-id>/status.json       state, message, worker pid/host, heartbeat, epoch and step (atomic)
    <root>/<run-id>/metrics.jsonl     one EpochMetrics line per epoch, appended and flushed as it happens
    <root>/<run-id>/batches.csv       "step,loss,lr" per optimizer step, for the live per-batch charts
    <root>/<run-id>/evaluation.json   the final model's answers on the test set (core.metrics)
    <root>/<run-id>/last.pt, best.pt  checkpoints (core.checkpoints)
    <root>/<run-id>/stop.request      present when someone asked the run to stop
    <root>/<run-id>/worker.log        what a launched worker printed

The root is `runs_root` when given, else $DIGITS_RUNS_DIR, else checkpoints/runs/ in the project.
Run ids are checked before any path is built from them, so nothing lands outside the root.

States, as Optuna's trials: queued and running are active; finished, stopped, failed, diverged and
crashed are final. Nobody writes "crashed": a reader derives it from an active status whose worker
is gone (its pid no longer runs the process that wrote it, or its heartbeat is stale).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from core.i18n import N_, Message, MessageError, as_message, message_from_fields
from core.metrics import Evaluation, evaluation_from_dict, evaluation_to_dict

RUNS_ENV = "DIGITS_RUNS_DIR"
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "checkpoints" / "runs"

QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED, CRASHED = (
    "queued", "running", "finished", "stopped", "failed", "diverged", "crashed"
)
ACTIVE = (QUEUED, RUNNING)  # a worker process owns the folder
WRITTEN_STATES = (QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED)  # what a worker may write
RESUMABLE = (STOPPED, FAILED, CRASHED)  # continue from last.pt (a diverged run needs new settings)
DAMAGED = "damaged"  # a folder whose config or status cannot be read
UNKNOWN = "unknown"
# What the pages call each state (marked for translation; the pages translate).
STATUS_LABELS = {QUEUED: N_("queued"), RUNNING: N_("running"), FINISHED: N_("finished"), STOPPED: N_("stopped"),
                 FAILED: N_("failed"), DIVERGED: N_("diverged"), CRASHED: N_("crashed"), DAMAGED: N_("damaged"),
                 UNKNOWN: N_("unknown")}
TASK_LABELS = {"multiclass": N_("which class (all 10)"), "binary": N_("is it this class? (one vs rest)")}  # config

HEARTBEAT_SECONDS = 2.0  # how often a worker rewrites status.json
STALE_SECONDS = 30.0  # a heartbeat older than this means the worker is gone

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
BATCHES_FILE = "batches.csv"
STATUS_FILE = "status.json"
EVALUATION_FILE = "evaluation.json"
STOP_FILE = "stop.request"
LOG_FILE = "worker.log"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, STATUS_FILE, EVALUATION_FILE)  # what the run list reads

# A run id is one path component of safe characters that starts with a letter or digit.
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_SLUG_MAX = 40
NAME_MAX = 60  # longest display name, in characters
HOST = socket.gethostname()


class RunError(MessageError):
    """A bad run id or name, or a run folder that cannot be read or changed; `message` says which."""


def joined(problems: Sequence[Message]) -> Message:
    """Several problems as one Message, "first; second; ..." (the separator translated too)."""
    if not problems:
        return Message("")
    message = problems[-1]
    for problem in reversed(problems[:-1]):
        message = Message(N_("%(first)s; %(rest)s"), {"first": problem, "rest": message})
    return message


# ---------------------------------------------------------------------------------------------
# Ids, names and folders


def runs_root(root: Path | str | None = None) -> Path:
    """The folder holding the run folders (not created here)."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_ROOT)


def check_run_id(run_id: str) -> str:
    """Return `run_id` if it is one safe path component, else raise RunError."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise RunError(Message(N_("invalid run id %(run)s: use letters, digits, '.', '_' and '-' only, no '..' or '/'"),
                               {"run": repr(run_id)}))
    return run_id


def run_dir(run_id: str, root: Path | str | None = None) -> Path:
    """The folder of an existing run, after checking the id; RunError if there is none."""
    folder = runs_root(root) / check_run_id(run_id)
    if not folder.is_dir():
        raise RunError(Message(N_("no run %(run)r in %(root)s"), {"run": run_id, "root": str(runs_root(root))}))
    return folder


def slugify(name: str) -> str:
    """A safe slug from a name a person typed; RunError if it tries to name a path."""
    if "/" in name or "\\" in name or ".." in name or Path(name).is_absolute():
        raise RunError(Message(N_("run name %(name)r must not contain '/', '\\' or '..'"), {"name": name}))
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-._")
    return slug[:_SLUG_MAX].rstrip("-._") or "run"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, then rename it over: readers never see half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        try:
            json.dump(data, f, indent=1)
        except BaseException:
            f.close()
            os.unlink(f.name)
            raise
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
    """Create a run folder `<timestamp>-<slug>` holding config.json; return (id, folder)."""
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
        write_json_atomic(folder / CONFIG_FILE, record)
        return run_id, folder
    raise RunError(Message(N_("could not make a new run folder for %(slug)r in %(root)s"),
                           {"slug": slug, "root": str(base)}))


def read_config(folder: Path) -> dict[str, Any]:
    """The run's config.json record; RunError if it is missing or broken."""
    record = _read_json(folder / CONFIG_FILE)
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise RunError(Message(N_("%(path)s is missing or not a run config"), {"path": str(folder / CONFIG_FILE)}))
    return record


def update_record(folder: Path, **fields: Any) -> dict[str, Any]:
    """Replace top-level fields of config.json atomically (e.g. its display `name`); return the new record."""
    record = {**read_config(folder), **fields}
    write_json_atomic(folder / CONFIG_FILE, record)
    return record


def update_config(folder: Path, config: dict[str, Any]) -> None:
    """Replace the train config in config.json (a resumed run extended to more epochs, say)."""
    update_record(folder, config=config)


# ---------------------------------------------------------------------------------------------
# Status: written by the run's worker (with a heartbeat), judged by every reader


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None where there is no such file."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """When the process started (clock ticks since boot), to tell it from a later one with the same pid."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat and len(stat) > 19 else None


def identity(pid: int | None = None) -> dict[str, Any]:
    """What names a worker process: pid, its start time and the host it runs on."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "pid_started": process_start(pid), "host": HOST}


def _pid_runs(pid: int, started: Any) -> bool:
    """True if `pid` exists on this host, is not a zombie and (when known) started when recorded."""
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: nothing more to check
    if stat[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    return not isinstance(started, int) or int(stat[19]) == started


# Why a reader calls an active run crashed, by the state it was in: one whole sentence each, to translate.
_SILENT = {QUEUED: N_("queued when its worker stopped answering: no heartbeat for %(seconds).0f s"),
           RUNNING: N_("running when its worker stopped answering: no heartbeat for %(seconds).0f s")}
_GONE = {QUEUED: N_("queued when its worker (pid %(pid)d) is gone: killed, out of memory, or the machine "
                    "restarted"),
         RUNNING: N_("running when its worker (pid %(pid)d) is gone: killed, out of memory, or the machine "
                     "restarted")}


def worker_gone(status: dict[str, Any], now: float | None = None) -> Message | None:
    """Why the worker of an active status is gone, as "<state> when ..." (None if it may still be working)."""
    state = QUEUED if status.get("status") == QUEUED else RUNNING
    pid, host = status.get("pid"), status.get("host")
    checkable = host in (None, HOST) and isinstance(pid, int) and pid > 0 and os.name != "nt"
    if checkable and isinstance(pid, int) and not _pid_runs(pid, status.get("pid_started")):  # the surer reason
        return Message(_GONE[state], {"pid": pid})
    beat = status.get("heartbeat")
    age = (time.time() if now is None else now) - beat if isinstance(beat, int | float) else 0.0
    if age > STALE_SECONDS:  # another machine's worker, or one hung here
        return Message(_SILENT[state], {"seconds": age})
    return None


def _message_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with its `message` (a str or a Message) spread into message, message_template, message_params."""
    if "message" not in fields:
        return fields
    return {**fields, **as_message(fields["message"]).to_fields()}


def write_status(folder: Path, status: str, *, message: str | Message = "", epoch: int = 0, total_epochs: int = 0,
                 **extra: Any) -> dict[str, Any]:
    """Rewrite status.json atomically in one go; `extra` may name another process's `pid`.

    The message is stored in English and, for the pages to translate, as its template and parameters.
    """
    if status not in WRITTEN_STATES:
        raise ValueError(f"status must be one of {WRITTEN_STATES}, got {status!r}")
    who = identity(extra.pop("pid", None))
    record = {"status": status, **as_message(message).to_fields(), "updated": now_iso(), "heartbeat": time.time(),
              "epoch": epoch, "total_epochs": total_epochs, **who, **extra}
    write_json_atomic(folder / STATUS_FILE, record)
    return record


def read_status(folder: Path) -> dict[str, Any]:
    """The run's status.json record; {"status": "unknown"} if it is missing, "damaged" if unreadable."""
    path = folder / STATUS_FILE
    if not path.exists():
        return {"status": UNKNOWN, **Message(N_("no %(file)s"), {"file": STATUS_FILE}).to_fields()}
    record = _read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return {"status": DAMAGED, **Message(N_("%(file)s cannot be read (not a status record)"),
                                             {"file": STATUS_FILE}).to_fields()}
    return record


def state_message_of(status: dict[str, Any]) -> tuple[str, Message]:
    """(state, message) as every page shows them: an active run whose worker is gone is crashed, saying why."""
    state = str(status.get("status", UNKNOWN))
    if state in ACTIVE:
        reason = worker_gone(status)
        if reason is not None:
            return CRASHED, reason
    return state, message_from_fields(status)


def state_of(status: dict[str, Any]) -> tuple[str, str]:
    """(state, message) in English, as the CLI shows them (see `state_message_of`)."""
    state, message = state_message_of(status)
    return state, message.english()


def is_live(status: dict[str, Any]) -> bool:
    """True if the status is active and its worker still works."""
    return state_of(status)[0] in ACTIVE


class StatusWriter:
    """A worker's status.json: state changes written at once, progress written by a heartbeat thread.

    `gone` becomes True when the run folder disappears (deleted while running): the worker stops.
    A write that fails (disk full) is re-raised by the next `set` from the worker's own thread.
    """

    def __init__(self, folder: Path, state: str, **fields: Any) -> None:
        self.folder = folder
        self.gone = False
        self._lock = threading.Lock()
        self._record: dict[str, Any] = {"status": state, "message": "", **identity(), "started": now_iso(),
                                        **_message_fields({"message": "", **fields})}
        self._error: OSError | None = None
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self.set()

    def set(self, **fields: Any) -> None:
        """Change fields and write now (state changes, epoch ends)."""
        with self._lock:
            self._record.update(_message_fields(fields))
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            self._write()

    def note(self, **fields: Any) -> None:
        """Change fields; the next heartbeat writes them (per-batch progress)."""
        with self._lock:
            self._record.update(_message_fields(fields))

    @property
    def record(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._record)

    def _write(self) -> None:
        if self.gone:
            return
        if not self.folder.is_dir():
            self.gone = True
            return
        self._record.update(heartbeat=time.time(), updated=now_iso())
        try:
            write_json_atomic(self.folder / STATUS_FILE, self._record)
        except FileNotFoundError:
            self.gone = True

    def _beat(self) -> None:
        while not self._quit.wait(HEARTBEAT_SECONDS):
            with self._lock:
                try:
                    self._write()
                except OSError as error:  # disk full: the worker's next `set` raises it
                    self._error = error

    def start(self) -> StatusWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._quit.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


# ---------------------------------------------------------------------------------------------
# Stop requests: a file any process (page, CLI, another machine on a shared disk) can leave


def request_stop(folder: Path) -> None:
    """Ask the run's worker to stop: it does within one batch (a queued one before it starts)."""
    write_json_atomic(folder / STOP_FILE, {"requested": now_iso(), "by": identity()})


def stop_requested(folder: Path) -> bool:
    return (folder / STOP_FILE).exists()


def clear_stop(folder: Path) -> None:
    (folder / STOP_FILE).unlink(missing_ok=True)


class StopSignal:
    """`is_set()` as threading.Event's: true once the run's stop file exists or `event` is set."""

    def __init__(self, folder: Path, event: threading.Event | None = None) -> None:
        self.folder, self.event = folder, event or threading.Event()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set() or stop_requested(self.folder)


# ---------------------------------------------------------------------------------------------
# Metrics: one schema per epoch, written by the engine and read by every page, Compare and the CLI


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch of a run: one line of metrics.jsonl."""

    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's batches
    train_accuracy: float  # fraction right during the epoch's training batches
    test_loss: float  # mean over the test images
    test_accuracy: float  # fraction of test images right
    lr: float | None = None  # learning rate at the end of the epoch
    seconds: float | None = None  # wall time of this epoch, evaluation included
    elapsed_seconds: float | None = None  # wall time of the whole run so far, resumed epochs included
    train_seconds: float | None = None  # of `seconds`, the training part
    samples_per_second: float | None = None  # training images per second during this epoch

    @classmethod
    def from_row(cls, row: Any) -> EpochMetrics | None:
        """The metrics of a parsed JSON line, or None if it lacks a required number."""
        if not isinstance(row, dict):
            return None
        values: dict[str, Any] = {}
        for item in fields(cls):
            number = _number(row.get(item.name))
            if number is None and item.default is not None:  # a required field (no default)
                return None
            values[item.name] = int(number) if item.name == "epoch" and number is not None else number
        return cls(**values)


METRIC_COLUMNS = tuple(item.name for item in fields(EpochMetrics))


@dataclass(frozen=True)
class MetricsLog:
    """What metrics.jsonl holds: the good rows, and what was wrong with any other line."""

    rows: tuple[EpochMetrics, ...]
    problems: tuple[Message, ...]  # e.g. "metrics.jsonl line 3 is not a metrics row"


def append_metrics(folder: Path, metrics: EpochMetrics) -> None:
    """Add one epoch's line to metrics.jsonl and flush it, so a live reader sees it at once."""
    with open(folder / METRICS_FILE, "a") as f:
        f.write(json.dumps(asdict(metrics)) + "\n")
        f.flush()


def read_metrics(folder: Path, live: bool = False) -> MetricsLog:
    """Every good line of metrics.jsonl, with a problem named for each bad one (never a silent skip).

    A last line without its newline is one cut short: being written by a live run (not a problem),
    or torn by a worker killed mid-write (named, skipped).
    """
    try:
        text = (folder / METRICS_FILE).read_text()
    except FileNotFoundError:
        return MetricsLog((), ())
    except (OSError, ValueError) as error:  # unreadable, or not text at all
        return MetricsLog((), (Message(N_("%(file)s cannot be read (%(error)s)"),
                                       {"file": METRICS_FILE, "error": str(error)}),))
    lines = text.split("\n")
    rows: list[EpochMetrics] = []
    problems: list[Message] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            metrics = EpochMetrics.from_row(json.loads(line))
        except ValueError:
            metrics = None
        if metrics is not None:
            rows.append(metrics)
        elif number == len(lines):  # no newline after it: cut short
            if not live:
                problems.append(Message(N_("%(file)s line %(line)d was cut short (the worker stopped mid-write)"),
                                        {"file": METRICS_FILE, "line": number}))
        else:
            problems.append(Message(N_("%(file)s line %(line)d is not a metrics row"),
                                    {"file": METRICS_FILE, "line": number}))
    return MetricsLog(tuple(rows), tuple(problems))


def truncate_metrics(folder: Path, last_epoch: int) -> list[EpochMetrics]:
    """Keep only good rows up to `last_epoch` (the resumed checkpoint's); return them."""
    rows = [row for row in read_metrics(folder).rows if row.epoch <= last_epoch]
    path = folder / METRICS_FILE
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=f".{METRICS_FILE}.", suffix=".tmp", delete=False) as f:
        f.writelines(json.dumps(asdict(row)) + "\n" for row in rows)
    os.replace(f.name, path)
    return rows


# ---------------------------------------------------------------------------------------------
# The per-batch series: appended by the worker, read downsampled by the charts

MAX_CHART_POINTS = 2000


class BatchLog:
    """Appends "step,loss,lr" lines to batches.csv, flushed at most once a second and at `flush()`."""

    def __init__(self, folder: Path) -> None:
        self._file = open(folder / BATCHES_FILE, "a")  # noqa: SIM115 (closed by close())
        self._flushed = time.monotonic()

    def add(self, step: int, loss: float, lr: float) -> None:
        self._file.write(f"{step},{loss:.6g},{lr:.6g}\n")
        if time.monotonic() - self._flushed > 1.0:
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class BatchSeries:
    """The per-batch training loss and learning rate, at most `MAX_CHART_POINTS` points."""

    steps: tuple[int, ...]  # global step at the end of each point's bucket
    losses: tuple[float, ...]  # mean loss over the bucket
    lrs: tuple[float, ...]  # learning rate at the end of the bucket
    total: int  # batches recorded
    bucket: int  # batches per point (1: every batch)


def _batch_rows(folder: Path) -> list[tuple[int, float, float]]:
    try:
        text = (folder / BATCHES_FILE).read_text()
    except (OSError, ValueError):
        return []
    rows = []
    for line in text.split("\n"):
        parts = line.split(",")
        if len(parts) != 3:
            continue  # the line being written, or torn
        try:
            rows.append((int(parts[0]), float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return rows


def read_batches(folder: Path, max_points: int = MAX_CHART_POINTS) -> BatchSeries:
    """The per-batch series, each bucket of consecutive batches averaged so a chart gets `max_points`."""
    rows = _batch_rows(folder)
    bucket = max(1, math.ceil(len(rows) / max_points))
    steps, losses, lrs = [], [], []
    for start in range(0, len(rows), bucket):
        chunk = rows[start : start + bucket]
        steps.append(chunk[-1][0])
        losses.append(sum(row[1] for row in chunk) / len(chunk))
        lrs.append(chunk[-1][2])
    return BatchSeries(tuple(steps), tuple(losses), tuple(lrs), len(rows), bucket)


def truncate_batches(folder: Path, last_step: int) -> None:
    """Keep the batches up to `last_step` (a resumed run's checkpoint), so the series continues, not restarts."""
    rows = [row for row in _batch_rows(folder) if row[0] <= last_step]
    path = folder / BATCHES_FILE
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=f".{BATCHES_FILE}.", suffix=".tmp", delete=False) as f:
        f.writelines(f"{step},{loss:.6g},{lr:.6g}\n" for step, loss, lr in rows)
    os.replace(f.name, path)


# ---------------------------------------------------------------------------------------------
# Evaluation


def write_evaluation(folder: Path, evaluation: Evaluation) -> None:
    write_json_atomic(folder / EVALUATION_FILE, evaluation_to_dict(evaluation))


def read_evaluation(folder: Path) -> Evaluation | None:
    """The run's evaluation.json, or None if the run has not written one (yet)."""
    data = _read_json(folder / EVALUATION_FILE)
    if not isinstance(data, dict):
        return None
    try:
        return evaluation_from_dict(data)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------------
# The registry: one record per run folder, for the Train page, Compare, Draw and the CLI


@dataclass(frozen=True)
class RunRecord:
    """One run as every page and the CLI show it, read from its small files (never its weights)."""

    run_id: str
    run_dir: Path
    name: str  # display name: the name given to the run, else its id
    status: str  # queued / running / finished / stopped / failed / diverged / crashed, or damaged / unknown
    message: str  # the status message in English; for a damaged folder, what is wrong with it
    preset: str = ""
    arch: str = ""
    task: str = ""  # "multiclass" or "binary"
    dataset: str = ""  # "mnist" or "fashion-mnist"
    param_count: int | None = None  # trainable parameters (None if the run did not record them)
    created: str = ""  # ISO time the run was made
    created_unix: float = 0.0
    epochs_done: int = 0  # whole epochs in metrics.jsonl
    total_epochs: int = 0  # epochs the run was asked for
    step: int = 0  # optimizer steps done in the epoch under way
    steps_per_epoch: int = 0
    samples_per_second: float | None = None  # training images per second (the whole run when ended)
    final_test_accuracy: float | None = None  # fraction right after the last epoch
    best_test_accuracy: float | None = None  # highest fraction right over the epochs
    best_epoch: int | None = None  # first epoch that reached it
    wall_seconds: float | None = None  # run time up to the end of its last epoch
    settings: str = ""  # the settings that tell runs apart, in one English line
    settings_parts: tuple[Message, ...] = ()  # the same, one Message each, for pages to translate
    live: bool = False  # queued or running, and its worker still works
    eta_seconds: float | None = None  # running: training time left at the current pace (evaluation aside)
    queue_position: int | None = None  # queued: runs ahead of it
    suggested_lr: float | None = None  # diverged: a learning rate to try instead
    pid: int | None = None
    host: str = ""
    problems: tuple[Message, ...] = field(default_factory=tuple)  # bad lines in metrics.jsonl, etc.
    world_size: int = 1  # processes it trains in (DDP under torchrun)
    study: str = ""  # the Optuna study this run is a trial of ("" if none)
    trial: int | None = None  # its trial number in that study
    trial_state: str = ""  # the trial's state as the sweep recorded it (e.g. "pruned")
    message_parts: Message | None = None  # `message` as its template and parameters, for the pages to translate

    @property
    def folder(self) -> Path:
        return self.run_dir

    @property
    def damaged(self) -> bool:
        return self.status == DAMAGED

    @property
    def resumable(self) -> bool:
        return self.status in RESUMABLE

    @property
    def fraction_done(self) -> float:
        """Share of the run's steps done (whole epochs plus the epoch under way)."""
        if self.status == FINISHED:
            return 1.0
        if not self.total_epochs:
            return 0.0
        partial = self.step / self.steps_per_epoch if self.live and self.steps_per_epoch else 0.0
        return min((self.epochs_done + partial) / self.total_epochs, 1.0)


def settings_messages(config: dict[str, Any]) -> tuple[Message, ...]:
    """The settings that tell runs apart, one Message each (pages show them in the session's language)."""
    model, task, data = config.get("model", {}), config.get("task", {}), config.get("data", {})
    optimizer, scheduler = config.get("optimizer", {}), config.get("scheduler", {})
    options = model.get("options") if isinstance(model.get("options"), dict) else {}
    saved_as = options.get("name") if model.get("arch") == "custom" else None
    parts = [Message(N_("custom network %(name)s"), {"name": saved_as}) if isinstance(saved_as, str) and saved_as
             else Message("%(arch)s", {"arch": str(model.get("arch", "?"))})]
    if task.get("kind") == "binary":
        parts.append(Message(N_("is it class %(target)s?"), {"target": task.get("target_digit")}))
    name, lr = str(optimizer.get("name", "?")), optimizer.get("lr")
    parts.append(Message(N_("%(optimizer)s lr %(lr)s"), {"optimizer": name, "lr": f"{lr:g}"})
                 if isinstance(lr, int | float) else Message("%(optimizer)s", {"optimizer": name}))
    if optimizer.get("weight_decay"):
        parts.append(Message(N_("wd %(wd)s"), {"wd": f"{optimizer['weight_decay']:g}"}))
    name = str(scheduler.get("name", "none"))
    parts.append(Message(N_("no schedule")) if name == "none" else Message(N_("%(scheduler)s schedule"),
                                                                           {"scheduler": name}))
    parts.append(Message(N_("batch %(batch)s"), {"batch": data.get("batch_size", "?")}))
    epochs = config.get("epochs", "?")
    parts.append(Message(N_("%(epochs)s epoch") if epochs == 1 else N_("%(epochs)s epochs"), {"epochs": epochs}))
    if data.get("augment"):
        parts.append(Message(N_("augmented")))
    if task.get("label_smoothing"):
        parts.append(Message(N_("label smoothing %(smoothing)s"), {"smoothing": f"{task['label_smoothing']:g}"}))
    if data.get("train_subset"):
        parts.append(Message(N_("%(images)s train images"), {"images": f"{data['train_subset']:,}"}))
    return tuple(parts)


def describe_settings(config: dict[str, Any]) -> str:
    """The settings that tell runs apart, in one English line, e.g. "fastcnn · adam lr 0.003 · onecycle schedule"."""
    return " · ".join(part.english() for part in settings_messages(config))


def config_problem(folder: Path) -> Message | None:
    """What is wrong with the folder's config.json, or None if it holds a run config."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return Message(N_("%(file)s is missing"), {"file": CONFIG_FILE})
    try:
        record = json.loads(path.read_text())
    except ValueError as error:  # includes a file that is not UTF-8
        return Message(N_("%(file)s is not valid JSON (%(error)s)"), {"file": CONFIG_FILE, "error": str(error)})
    except OSError as error:
        return Message(N_("%(file)s cannot be read (%(error)s)"), {"file": CONFIG_FILE, "error": str(error.strerror)})
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return Message(N_("%(file)s holds no training config"), {"file": CONFIG_FILE})
    return None


def _throughput(rows: Sequence[EpochMetrics]) -> float | None:
    """Training images per second over the whole run: each epoch's rate weighted by its training time."""
    pairs = [(row.samples_per_second, row.train_seconds or row.seconds) for row in rows]
    usable = [(rate, seconds) for rate, seconds in pairs if rate is not None and seconds]
    if not usable:
        return None
    return sum(rate * seconds for rate, seconds in usable) / sum(seconds for _, seconds in usable)


def _metric_summary(rows: Sequence[EpochMetrics]) -> dict[str, Any]:
    """Epochs done, final and best test accuracy, wall time and throughput from the metrics rows."""
    if not rows:
        return {}
    best = max(rows, key=lambda row: row.test_accuracy)  # max keeps the first epoch that got there
    return {
        "epochs_done": rows[-1].epoch,
        "final_test_accuracy": rows[-1].test_accuracy,
        "best_test_accuracy": best.test_accuracy,
        "best_epoch": best.epoch,
        "wall_seconds": rows[-1].elapsed_seconds,
        "samples_per_second": _throughput(rows),
    }


def _missing_metrics_problem(status: dict[str, Any], has_rows: bool) -> Message | None:
    """Damage when metrics.jsonl is absent or empty although the run says it got somewhere."""
    if has_rows:
        return None
    epochs = status.get("epoch", 0)
    if status.get("status") == FINISHED or (isinstance(epochs, int) and epochs > 0):
        return Message(N_("%(file)s is missing or empty, but %(status_file)s reports %(epochs)s epochs done"),
                       {"file": METRICS_FILE, "status_file": STATUS_FILE, "epochs": str(epochs)})
    return None


def _damaged(folder: Path, problem: Message) -> RunRecord:
    return RunRecord(run_id=folder.name, run_dir=folder, name=folder.name, status=DAMAGED, message=problem.english(),
                     message_parts=problem)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_run(folder: Path) -> RunRecord:
    """The record of one run folder; one whose config cannot be read comes back damaged, saying why."""
    problem = config_problem(folder)
    if problem is not None:
        return _damaged(folder, problem)
    status = read_status(folder)
    state, parts = state_message_of(status)
    if state == DAMAGED:  # status.json torn or overwritten: the worker that wrote it is not trusted alive
        state, parts = CRASHED, Message(N_("%(problem)s; resume it from its last saved epoch"), {"problem": parts})
    message = parts.english()
    live = state in ACTIVE
    log = read_metrics(folder, live)
    problem = _missing_metrics_problem(status, bool(log.rows))
    if problem is not None:
        return _damaged(folder, joined(log.problems) if log.problems else problem)
    try:
        record = read_config(folder)
        config = record["config"]
        params = record.get("param_count")
        return RunRecord(
            run_id=folder.name, run_dir=folder, name=str(record.get("name", "")).strip() or folder.name,
            status=state, message=message, message_parts=parts, preset=str(record.get("preset", "")),
            arch=str(config.get("model", {}).get("arch", "")), task=str(config.get("task", {}).get("kind", "")),
            dataset=str(config.get("data", {}).get("dataset", "")),
            param_count=params if isinstance(params, int) and params > 0 else None,
            created=str(record.get("created", "")), created_unix=float(record.get("created_unix", 0.0)),
            total_epochs=int(status.get("total_epochs") or config.get("epochs", 0)),
            step=int(status.get("step", 0)) if live else 0, steps_per_epoch=int(status.get("steps_per_epoch", 0)),
            settings=describe_settings(config), settings_parts=settings_messages(config), live=live,
            eta_seconds=_eta(status, config, log.rows) if state == RUNNING else None,
            queue_position=status.get("queue_position") if state == QUEUED else None,
            suggested_lr=_number(status.get("suggested_lr")),
            pid=status.get("pid") if isinstance(status.get("pid"), int) else None, host=str(status.get("host", "")),
            problems=log.problems, world_size=int(record.get("world_size") or 1), **_sweep_fields(record.get("sweep")),
            **_metric_summary(log.rows),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # fields of the wrong type
        return _damaged(folder, Message(N_("%(file)s is not a run config (%(error)s)"),
                                        {"file": CONFIG_FILE, "error": f"{type(error).__name__}: {error}"}))


def _sweep_fields(sweep: Any) -> dict[str, Any]:
    """config.json's optional "sweep": {"study": name, "trial": number, "state": ...}, as RunRecord fields."""
    if not isinstance(sweep, dict):
        return {}
    trial = sweep.get("trial")
    return {"study": str(sweep.get("study", "")), "trial": trial if isinstance(trial, int) else None,
            "trial_state": str(sweep.get("state", ""))}


def _eta(status: dict[str, Any], config: dict[str, Any], rows: Sequence[EpochMetrics] = ()) -> float | None:
    """Seconds left: the epoch under way at its own pace, then its evaluation and every later epoch as long
    as the last finished epochs took (evaluation included). In the first epoch nothing is finished yet: all
    of it at the first epoch's pace, without evaluation (a first guess; it settles after one epoch)."""
    rate, batch = _number(status.get("samples_per_second")), config.get("data", {}).get("batch_size")
    steps, total = status.get("steps_per_epoch"), status.get("total_epochs")
    if not rate or not isinstance(batch, int) or not isinstance(steps, int) or not isinstance(total, int):
        return None
    done_epochs, step = int(status.get("epoch", 0)), int(status.get("step", 0))
    timed = [row for row in rows[-3:] if row.seconds and row.train_seconds is not None]
    if not timed:
        return max(total * steps - done_epochs * steps - step, 0) * batch / rate
    epoch_seconds = sum(row.seconds or 0.0 for row in timed) / len(timed)
    evaluation = sum((row.seconds or 0.0) - (row.train_seconds or 0.0) for row in timed) / len(timed)
    this_epoch = max(steps - step, 0) * batch / rate + max(evaluation, 0.0)
    return this_epoch + max(total - done_epochs - 1, 0) * epoch_seconds


def is_run_folder(path: Path) -> bool:
    """A folder whose name could be a run id (hidden and oddly named folders are not runs)."""
    return bool(_RUN_ID.fullmatch(path.name)) and ".." not in path.name and path.is_dir()


def list_runs(root: Path | str | None = None) -> list[RunRecord]:
    """Every run folder under the root, newest first, damaged ones (with the reason) last."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    records = [read_run(folder) for folder in base.iterdir() if is_run_folder(folder)]
    return sorted(records, key=lambda record: (not record.damaged, record.created_unix, record.run_id), reverse=True)


def find_run(run_id: str, root: Path | str | None = None) -> RunRecord:
    """The record of one run; RunError if there is none."""
    return read_run(run_dir(run_id, root))


# ---------------------------------------------------------------------------------------------
# Stop, rename, delete


def stop_run(run_id: str, root: Path | str | None = None) -> Message:
    """Ask a queued or running run to stop; return what happens (str() is English). RunError if it is not active."""
    record = find_run(run_id, root)
    if not record.live:
        raise RunError(Message(N_("run %(run)s is not training (it is %(status)s); there is nothing to stop"),
                               {"run": run_id, "status": Message(STATUS_LABELS.get(record.status, record.status))}))
    already = stop_requested(record.run_dir)
    request_stop(record.run_dir)
    if already:
        template = N_("run %(run)s was already asked to stop; it stops after its current batch")
    elif record.status == QUEUED:
        template = N_("run %(run)s leaves the queue without training")
    else:
        template = N_("run %(run)s stops after its current batch, saved up to its last whole epoch")
    return Message(template, {"run": run_id})


def rename_run(run_id: str, name: str, root: Path | str | None = None) -> str:
    """Store a new display name in the run's config.json (rewritten atomically); the id and folder stay.

    Whitespace runs become one space; an empty name makes the list show the run id again.
    Returns the name stored. RunError for an unknown run, a damaged config or a bad name.
    """
    folder = run_dir(run_id, root)
    clean = " ".join(name.split())
    if len(clean) > NAME_MAX:
        raise RunError(Message(N_("a run name can have at most %(max)d characters, this one has %(count)d"),
                               {"max": NAME_MAX, "count": len(clean)}))
    if not clean.isprintable():
        raise RunError(Message(N_("a run name cannot hold control characters")))
    update_record(folder, name=clean)  # atomic: a live run or another page never sees half a config
    return clean


def delete_run(run_id: str, root: Path | str | None = None) -> Path:
    """Remove a run folder with everything in it; return the path removed.

    Refused (RunError) for an id that is not one safe path component, a folder that is a link or
    lies outside the runs root, and a run that is queued or training (stop it first).
    """
    base = runs_root(root).resolve()
    folder = run_dir(run_id, root)
    if folder.is_symlink() or folder.resolve().parent != base:
        raise RunError(Message(N_("%(folder)s is not a folder inside the runs root %(root)s; not deleting it"),
                               {"folder": str(folder), "root": str(base)}))
    if is_live(read_status(folder)):
        state = str(read_status(folder)["status"])
        raise RunError(Message(N_("run %(run)s is still %(status)s: stop it first, then delete it"),
                               {"run": run_id, "status": Message(STATUS_LABELS.get(state, state))}))
    shutil.rmtree(folder)
    return folder
