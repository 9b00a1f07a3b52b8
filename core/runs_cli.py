"""`python -m core runs list|show|stop|resume|delete|queue`: the run registry from a terminal, and
`python -m core worker RUN_ID`, the process a launched run trains in (started by core.jobs).

Every command reads the same run folders as the pages: a run whose worker is gone reads "crashed"
here too. `--json` prints machine-readable records.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from core import jobs, runs

COLUMNS = ("run_id", "status", "epochs", "test_acc", "name")


def record_json(record: runs.RunRecord) -> dict[str, Any]:
    data = asdict(record)
    data["run_dir"] = str(record.run_dir)
    data["problems"] = [str(problem) for problem in record.problems]
    data["fraction_done"] = record.fraction_done
    return data


def _progress(record: runs.RunRecord) -> str:
    text = f"{record.epochs_done}/{record.total_epochs}"
    if record.status == runs.RUNNING and record.steps_per_epoch:
        text += f" (epoch {record.epochs_done + 1}: step {record.step}/{record.steps_per_epoch})"
    return text


def _list(args: argparse.Namespace) -> int:
    records = runs.list_runs(args.runs_dir)
    if args.active:
        records = [record for record in records if record.live]
    if args.json:
        print(json.dumps([record_json(record) for record in records]))
        return 0
    if not records:
        print(f"no {'active ' if args.active else ''}runs in {runs.runs_root(args.runs_dir)}")
        return 0
    for record in records:
        accuracy = f"{record.final_test_accuracy:.2%}" if record.final_test_accuracy is not None else "-"
        print(f"{record.run_id:44} {record.status:9} {_progress(record):>12} {accuracy:>7}  {record.message}")
    return 0


def _show(args: argparse.Namespace) -> int:
    record = runs.find_run(args.run_id, args.runs_dir)
    if args.json:
        print(json.dumps(record_json(record)))
        return 0
    print(f"{record.run_id}: {record.status}, epochs {_progress(record)}")
    if record.message:
        print(f"  {record.message}")
    if record.suggested_lr is not None:
        print(f"  suggested learning rate: {record.suggested_lr:g}")
    print(f"  {record.settings}")
    if record.final_test_accuracy is not None:
        print(f"  test accuracy {record.final_test_accuracy:.2%} (best {record.best_test_accuracy:.2%} "
              f"at epoch {record.best_epoch})")
    for problem in record.problems:
        print(f"  note: {problem}")
    print(f"  folder {record.run_dir}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    message = str(runs.stop_run(args.run_id, args.runs_dir))
    print(json.dumps({"run_id": args.run_id, "message": message}) if args.json else message)
    return 0


def _resume(args: argparse.Namespace) -> int:
    jobs.launch_resume(args.run_id, root=args.runs_dir, epochs=args.epochs)
    record = runs.find_run(args.run_id, args.runs_dir)
    print(json.dumps(record_json(record)) if args.json
          else f"run {args.run_id} is {record.status} again; follow it with `python -m core runs show {args.run_id}`")
    return 0


def _delete(args: argparse.Namespace) -> int:
    folder = runs.delete_run(args.run_id, args.runs_dir)
    print(json.dumps({"run_id": args.run_id, "deleted": str(folder)}) if args.json else f"deleted {folder}")
    return 0


def _queue(args: argparse.Namespace) -> int:
    if args.max_parallel is not None:
        jobs.set_max_parallel(args.max_parallel, args.runs_dir)
    active = [record.run_id for record in runs.list_runs(args.runs_dir) if record.live]
    info = {"max_parallel": jobs.max_parallel(args.runs_dir), "cpu_count": jobs.cpu_count(),
            "threads_per_run": jobs.worker_threads(args.runs_dir), "active": active}
    print(json.dumps(info) if args.json else
          f"{info['max_parallel']} run(s) at once on {info['cpu_count']} cores, {info['threads_per_run']} "
          f"thread(s) each; active: {', '.join(active) or 'none'}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    return jobs.worker_main(args.run_id, args.runs_dir)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core runs ...` and `python -m core worker`."""
    parser = subparsers.add_parser("runs", help="list, follow, stop, resume or delete training runs",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="runs_command", required=True)

    def command(name: str, func: Any, help_text: str, with_id: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        if with_id:
            sub.add_argument("run_id")
        sub.add_argument("--runs-dir", help="folder of run folders (default $DIGITS_RUNS_DIR or checkpoints/runs)")
        sub.add_argument("--json", action="store_true", help="print JSON")
        sub.set_defaults(func=func)
        return sub

    command("list", _list, "every run, newest first", with_id=False).add_argument(
        "--active", action="store_true", help="only queued and running runs")
    command("show", _show, "one run's state, progress and results")
    command("stop", _stop, "stop a queued or running run (within one batch; saved at its last whole epoch)")
    command("resume", _resume, "continue a stopped, failed or crashed run in the background").add_argument(
        "--epochs", type=int, help="train until this many epochs in all")
    command("delete", _delete, "delete a run folder (refused while it trains)")
    command("queue", _queue, "how many runs may train at once", with_id=False).add_argument(
        "--max-parallel", type=int, help="change it (queued runs see it at once)")

    worker = subparsers.add_parser("worker", help="(internal) the process a launched run trains in")
    worker.add_argument("run_id")
    worker.add_argument("--runs-dir")
    worker.set_defaults(func=_worker)
