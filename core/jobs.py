"""Runs as jobs: every training run is its own OS process (a worker), and waits in a queue when the
machine is busy. The run folder (core.runs) is the only record: whoever launched a run can go away.

- `launch(config)` / `launch_resume(run_id)` write the run folder with state "queued" and start
  `python -m core worker RUN_ID` in a new process session, so it outlives the page, the tab and the
  server that started it (a server stopped with Ctrl-C leaves its workers training; a new server
  finds them in the registry). SIGTERM to a worker stops it cleanly within one batch.
- `work(run_id)` is what a worker does, and what `python -m core train` does in the foreground:
  wait for a queue slot (heartbeat and position in status.json), then run `core.training.train`.
- The queue: at most `max_parallel(root)` runs train at once per runs root (a lock file per slot,
  released by the kernel when a worker dies); later ones wait in the order they were queued.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from core import distributed, runs
from core.data import Dataset
from core.i18n import N_, Message, message_from_fields
from core.training import (
    ConfigError,
    Diverged,
    Event,
    Failed,
    Finished,
    Outcome,
    Stopped,
    TrainConfig,
    check_schedule,
    config_from_dict,
    config_to_dict,
    override,
    resolve_device,
    train,
    validate,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAX_PARALLEL_ENV = "DIGITS_MAX_PARALLEL"
QUEUE_SETTINGS = "queue.json"  # in the runs root: {"max_parallel": N}
QUEUE_DIR = ".queue"  # in the runs root: one lock file per slot
POLL_SECONDS = 0.5  # how often a queued worker looks for a free slot
WORKER_NICE = 10  # launched workers run at lower CPU priority than the server (measured in README)
TRAIN_IMAGES = 60_000  # both datasets' training set, for checks made before any data is loaded


# ---------------------------------------------------------------------------------------------
# The queue's size and the threads each worker uses


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_max_parallel() -> int:
    """One run per two cores: on this project's 2-core machine, one at a time."""
    return max(1, cpu_count() // 2)


def max_parallel(root: Path | str | None = None) -> int:
    """How many runs may train at once: $DIGITS_MAX_PARALLEL, else queue.json, else one per two cores."""
    if os.environ.get(MAX_PARALLEL_ENV, "").isdigit() and int(os.environ[MAX_PARALLEL_ENV]) > 0:
        return int(os.environ[MAX_PARALLEL_ENV])
    try:
        value = json.loads((runs.runs_root(root) / QUEUE_SETTINGS).read_text()).get("max_parallel")
    except (OSError, ValueError, AttributeError):
        value = None
    return value if isinstance(value, int) and value > 0 else default_max_parallel()


def set_max_parallel(count: int, root: Path | str | None = None) -> None:
    """Change the queue's size; queued workers see it within a poll."""
    if not isinstance(count, int) or not 1 <= count <= 64:
        raise runs.RunError(Message(N_("runs at once must be a whole number from 1 to 64, got %(count)s"),
                                    {"count": repr(count)}))
    base = runs.runs_root(root)
    base.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(base / QUEUE_SETTINGS, {"max_parallel": count})


def worker_threads(root: Path | str | None = None) -> int:
    """CPU threads for a run whose config says 0: the cores shared by the runs allowed at once."""
    return max(1, cpu_count() // max_parallel(root))


def queue_position(folder: Path, queued_at: float) -> int:
    """How many live queued runs in the same root were queued before this one."""
    ahead = 0
    for other in folder.parent.iterdir():
        if other == folder or not other.is_dir():
            continue
        status = runs.read_status(other)
        if status.get("status") != runs.QUEUED or not runs.is_live(status):
            continue
        when = status.get("queued_at", 0.0)
        if isinstance(when, int | float) and (when, other.name) < (queued_at, folder.name):
            ahead += 1
    return ahead


def _try_slot(root: Path, limit: int) -> IO[str] | None:
    """An exclusive lock on one of the `limit` slot files, or None if all are held."""
    slots = root / QUEUE_DIR
    slots.mkdir(exist_ok=True)
    for index in range(limit):
        handle = open(slots / f"slot-{index}.lock", "a")  # noqa: SIM115 (kept open while the run trains)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
    return None


def wait_for_slot(folder: Path, writer: runs.StatusWriter, stop: runs.StopSignal,
                  on_wait: Callable[[str], None] | None = None) -> IO[str] | None:
    """Block until this run may train (return the held slot), or until it is stopped (None)."""
    queued_at = float(writer.record.get("queued_at", time.time()))
    said: Message | None = None
    while not stop.is_set() and not writer.gone:
        ahead = queue_position(folder, queued_at)
        limit = max_parallel(folder.parent)
        if ahead == 0:
            slot = _try_slot(folder.parent, limit)
            if slot is not None:
                return slot
        # One whole sentence per number (Chinese needs no plural; a language with more forms would want ngettext).
        if ahead:
            message = Message(N_("waiting in the queue: %(ahead)d run ahead of it") if ahead == 1
                              else N_("waiting in the queue: %(ahead)d runs ahead of it"), {"ahead": ahead})
        else:
            message = Message(N_("waiting for a free slot: %(limit)d run at once may train here") if limit == 1
                              else N_("waiting for a free slot: %(limit)d runs at once may train here"),
                              {"limit": limit})
        if message != said:
            writer.set(message=message, queue_position=ahead, max_parallel=limit)
            said = message
            if on_wait is not None:  # a terminal waiting in the queue says why
                on_wait(str(message))
        stop.event.wait(POLL_SECONDS)
    return None


# ---------------------------------------------------------------------------------------------
# Doing a run: in a worker process, or in the foreground of `python -m core train`


def _stopped_while_queued(folder: Path, writer: runs.StatusWriter) -> Stopped:
    epoch = int(writer.record.get("epoch", 0))
    message = (Message(N_("stopped while queued; saved up to epoch %(epoch)d"), {"epoch": epoch}) if epoch
               else Message(N_("stopped while queued, before it started")))
    writer.set(status=runs.STOPPED, message=message)
    return Stopped(run_id=folder.name, run_dir=folder, epoch=epoch, message=message.english())


def work(
    run_id: str,
    root: Path | str | None = None,
    *,
    stop: runs.StopSignal | None = None,
    on_event: Callable[[Event], None] | None = None,
    dataset: Dataset | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Outcome | None:
    """Wait in the queue, then train the queued run `run_id` to its end; return its outcome.

    None if the run folder was deleted while it waited. User errors found only now (missing data, a
    checkpoint that does not fit) end the run as failed with the message. `dataset`: an already loaded
    core.data.Dataset to reuse (a sweep's trials load it once).
    """
    folder = runs.run_dir(run_id, root)
    stop = stop or runs.StopSignal(folder)
    if not distributed.current().main:  # another rank of a DDP run: rank 0 queues, writes and decides to stop
        return _train_in_slot(run_id, folder, root, stop, on_event, dataset)
    before = runs.read_status(folder)
    writer = runs.StatusWriter(
        folder, runs.QUEUED, message=N_("waiting in the queue"), queued_at=before.get("queued_at", time.time()),
        epoch=before.get("epoch", 0), total_epochs=before.get("total_epochs", 0),
    ).start()
    try:
        slot = wait_for_slot(folder, writer, stop, on_wait)
        if slot is None:
            return None if writer.gone else _stopped_while_queued(folder, writer)
        writer.set(message=N_("starting: loading the data and building the network"))
    finally:
        writer.close()
    try:
        return _train_in_slot(run_id, folder, root, stop, on_event, dataset)
    finally:
        slot.close()  # frees the slot for the next queued run


def _train_in_slot(run_id: str, folder: Path, root: Path | str | None, stop: runs.StopSignal,
                   on_event: Callable[[Event], None] | None, dataset: Dataset | None) -> Outcome | None:
    import torch

    from core.__main__ import user_errors

    world = distributed.current()
    # the cores of one queue slot, shared by the run's processes; a config's own `threads` wins inside train()
    torch.set_num_threads(max(1, worker_threads(folder.parent) // world.size))
    outcome: Outcome | None = None
    try:
        for event in train(None, resume=run_id, stop=stop, runs_root=root, dataset=dataset):
            if on_event is not None:
                on_event(event)
            if isinstance(event, Finished | Stopped | Failed | Diverged):
                outcome = event
    except user_errors() as error:  # raised before training began: the folder says why
        parts: tuple[Message, ...] = getattr(error, "messages", ())  # a ConfigError's problems, to translate
        message = runs.joined(parts) if parts else Message(str(error))
        if folder.is_dir() and world.main:
            status = runs.read_status(folder)
            runs.write_status(folder, runs.FAILED, message=message, epoch=int(status.get("epoch", 0)),
                              total_epochs=int(status.get("total_epochs", 0)))
        outcome = Failed(message=message.english(), run_id=run_id, run_dir=folder)
        if on_event is not None:
            on_event(outcome)
    return outcome


# ---------------------------------------------------------------------------------------------
# Launching: the run folder first (state queued), then a detached worker process


def check_startable(config: TrainConfig) -> None:
    """The checks that need no data: ConfigError before any folder is made (a device this machine lacks too)."""
    validate(config)
    resolve_device(config.device)
    images = min(config.data.train_subset or TRAIN_IMAGES, TRAIN_IMAGES)
    check_schedule(config, -(-images // config.data.batch_size))


def _queue(folder: Path, message: Message) -> None:
    """Mark a run folder queued (by this process until its worker takes over), with no stop pending."""
    runs.clear_stop(folder)
    status = runs.read_status(folder)
    config = runs.read_config(folder)["config"]
    runs.write_status(folder, runs.QUEUED, message=message, epoch=int(status.get("epoch", 0)),
                      total_epochs=int(config.get("epochs", 0)), queued_at=time.time())


def spawn_detached(command: list[str], log: Path) -> int:
    """Start `command` in the project folder in a new process session, appending its output to `log`;
    return its pid. It outlives the caller (a page, a server, a CLI) and is reaped when it ends."""
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    threading.Thread(target=process.wait, name="reap", daemon=True).start()  # no zombie once it ends
    return process.pid


def spawn_run(folder: Path) -> int:
    """Start `python -m core worker` for the run in its own session (under torchrun for several
    processes); return the pid of the process started."""
    processes = int(runs.read_config(folder).get("launch", {}).get("processes", 1))
    command = [sys.executable, "-m", "core", "worker", folder.name, "--runs-dir", str(folder.parent.resolve())]
    if processes > 1:
        command[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "core"]
    pid = spawn_detached(command, folder / runs.LOG_FILE)
    status = runs.read_status(folder)
    if status.get("status") == runs.QUEUED and status.get("pid") == os.getpid():  # the worker has not written yet
        runs.write_status(folder, runs.QUEUED, message=message_from_fields(status), epoch=status.get("epoch", 0),
                          total_epochs=status.get("total_epochs", 0), queued_at=status.get("queued_at"), pid=pid)
    return pid


def prepare(config: TrainConfig, name: str | None = None, root: Path | str | None = None, processes: int = 1) -> str:
    """A new run folder, queued; return its id (ConfigError/RunError before anything is written).

    `processes` > 1 trains it data-parallel in that many local processes under torchrun (DDP).
    """
    runs.slugify(name or "")
    check_startable(config)
    if not 1 <= processes <= 64 or config.data.batch_size % processes:
        raise ConfigError(Message(N_("%(processes)d processes must split the batch of %(batch)d evenly"),
                                  {"processes": processes, "batch": config.data.batch_size}))
    run_id, folder = runs.new_run(config_to_dict(config), name=name, root=root)
    if processes > 1:
        runs.update_record(folder, launch={"processes": processes})
    _queue(folder, Message(N_("waiting for its worker to start")))
    return run_id


def prepare_resume(run_id: str, root: Path | str | None = None, **changes: Any) -> str:
    """Queue a stopped, failed or crashed run to continue, or a finished one to train on to more epochs;
    `changes` may set epochs, device and threads."""
    refused = sorted(set(changes) - {"epochs", "device", "threads"})
    if refused:
        raise ConfigError(Message(N_("a resumed run keeps its config: only epochs, device and threads change, not "
                                     "%(field)s"), {"field": refused[0]}))
    record = runs.find_run(run_id, root)
    if record.live:
        raise runs.RunError(Message(N_("run %(run)s is already %(status)s"),
                                    {"run": run_id, "status": Message(runs.STATUS_LABELS[record.status])}))
    if record.status not in (*runs.RESUMABLE, runs.FINISHED):  # a finished run may be extended
        status = Message(runs.STATUS_LABELS.get(record.status, record.status))
        raise runs.RunError(Message(
            N_("run %(run)s is %(status)s; only stopped, failed or crashed runs resume, and finished ones train on "
               "to more epochs. Start a new run with a lower learning rate.") if record.status == runs.DIVERGED else
            N_("run %(run)s is %(status)s; only stopped, failed or crashed runs resume, and finished ones train on "
               "to more epochs."), {"run": run_id, "status": status}))
    saved = config_from_dict(runs.read_config(record.run_dir)["config"])
    config = override(saved, **changes) if changes else saved
    if record.epochs_done >= config.epochs:
        raise ConfigError(Message(N_("the run already has %(done)d of %(epochs)d epochs; ask for more epochs"),
                                  {"done": record.epochs_done, "epochs": config.epochs}))
    if config.scheduler.name == "onecycle" and record.epochs_done and config.epochs != saved.epochs:
        raise ConfigError(Message(N_("a one-cycle schedule is fixed to its run's length; start a new run to train "
                                     "longer")))
    if config != saved:
        runs.update_config(record.run_dir, config_to_dict(config))
    _queue(record.run_dir, Message(N_("resuming after epoch %(epoch)d: waiting for its worker to start"),
                                   {"epoch": record.epochs_done}))
    return run_id


def launch(config: TrainConfig, *, name: str | None = None, root: Path | str | None = None,
           processes: int = 1) -> str:
    """Start a new run as its own process (queued if the machine is busy); return its id.

    With `processes` > 1 it trains data-parallel in that many local processes (torchrun, DDP).
    """
    run_id = prepare(config, name, root, processes)
    spawn_run(runs.run_dir(run_id, root))
    return run_id


def launch_resume(run_id: str, *, root: Path | str | None = None, epochs: int | None = None) -> str:
    """Continue a stopped, failed or crashed run in its own process, optionally to `epochs` in all."""
    prepare_resume(run_id, root, **({"epochs": epochs} if epochs is not None else {}))
    spawn_run(runs.run_dir(run_id, root))
    return run_id


def worker_main(run_id: str, root: Path | str | None) -> int:
    """`python -m core worker`: SIGTERM (and SIGINT) stop cleanly within a batch; one line per epoch."""
    from core.train_cli import ProgressReporter, exit_code

    folder = runs.run_dir(run_id, root)
    os.nice(WORKER_NICE)  # the dashboard's answers to drawings come first; training takes what is left
    world = distributed.setup(distributed.device_type(str(runs.read_config(folder)["config"].get("device", "auto"))))
    stop = runs.StopSignal(folder)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    report = ProgressReporter(sys.stdout, interactive=False)
    try:
        outcome = work(run_id, root, stop=stop, on_event=report if world.main else None)
    finally:
        distributed.teardown()
    return exit_code(outcome)

