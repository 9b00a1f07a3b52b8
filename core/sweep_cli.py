"""`python -m core sweep ...`: an Optuna study over a preset, each trial an ordinary run.

    python -m core sweep --preset fast --trials 20 --epochs 2 --train-subset 10000
    python -m core sweep --preset fast --trials 20 --space lr=1e-3:0.1 --space optimizer=sgd,adamw
    python -m core sweep --study fast-sweep --show        the study's trials (--json for machines)
    python -m core sweep --study fast-sweep --stop        stop this machine's sweep of it

Trials are stored in $DIGITS_SWEEP_STORAGE or <runs root>/.sweeps/sweeps.db; with `--storage URL` of a
database server (postgresql://user:pass@host/db), the same command on several machines adds trials to
one study. `--detach` starts the sweep in the background (its log: <runs root>/.sweeps/<study>/sweep.log).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any, TextIO

from core import sweep
from core.train_cli import OVERRIDES, ProgressReporter, _add_overrides
from core.training import PRESETS, BatchEnd, CheckpointSaved, Event


def trial_line(row: sweep.TrialRow) -> str:
    """One line per ended trial, e.g. "trial 3 complete: test accuracy 98.20% in 14.2 s (run …)"."""
    settings = ", ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value}"
                         for name, value in row.params.items())
    if row.value is None:
        result = "no test accuracy reported"
    else:
        result = f"{'' if row.state == 'complete' else 'last reported '}test accuracy {row.value:.2%}"
    took = f" in {row.seconds:.1f} s" if row.seconds is not None else ""
    why = f"; {row.message}" if str(row.message) else ""
    return f"trial {row.number} {row.state}: {result}{took} (run {row.run_id or '-'}; {settings}){why}"


def row_json(row: sweep.TrialRow) -> dict[str, Any]:
    return {**asdict(row), "message": str(row.message)}  # the English sentence, as the CLI speaks


def result_json(result: sweep.SweepResult) -> dict[str, Any]:
    return {
        "study": result.study, "storage": result.storage, "state": result.state, "trials_run": result.trials_run,
        "best": row_json(result.best) if result.best else None,
        "mean_overhead_seconds": result.mean_overhead_seconds,
        "trials": [row_json(row) for row in result.trials],
    }


def _spec(args: argparse.Namespace) -> sweep.SweepSpec:
    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    return sweep.make_spec(args.preset, overrides, sweep.parse_space(args.space))


def _show(args: argparse.Namespace) -> int:
    study = sweep.load_study(args.study, args.storage, args.runs_dir)
    rows = sweep.trial_rows(study, args.runs_dir)
    here = sweep.read_sweep(args.study, args.runs_dir)
    if args.json:
        print(json.dumps({"study": args.study, "sweep_here": here.state, "message": here.message,
                          "mean_overhead_seconds": sweep.mean_overhead(rows),
                          "trials": [row_json(row) for row in rows]}))
        return 0
    print(f"study {args.study}: {len(rows)} trials; the sweep on this machine is {here.state}"
          + (f" ({here.message})" if here.message else ""))
    for row in rows:
        print(f"  {trial_line(row)}")
    overhead = sweep.mean_overhead(rows)
    if overhead is not None:
        print(f"  mean overhead per complete trial beyond its training: {overhead:.2f} s")
    return 0


def _stop(args: argparse.Namespace) -> int:
    message = str(sweep.stop_sweep(args.study, args.runs_dir))  # English on the command line
    print(json.dumps({"study": args.study, "message": message}) if args.json else message)
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    spec = _spec(args)
    study = args.study or f"{args.preset}-sweep"
    if args.detach:
        status = sweep.launch_sweep(spec, args.trials, study, storage=args.storage, root=args.runs_dir)
        log = status.folder / sweep.LOG_FILE
        where = f" --runs-dir {args.runs_dir}" if args.runs_dir else ""
        print(json.dumps({"study": study, "state": status.state, "folder": str(status.folder), "pid": status.pid})
              if args.json else f"sweep of study {study} started in the background; follow it with "
                                f"`python -m core sweep --study {study} --show{where}`; its log: {log}")
        return 0
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    report = ProgressReporter(sys.stderr, interactive=False)

    def on_event(event: Event) -> None:
        if not args.quiet and not isinstance(event, BatchEnd | CheckpointSaved):
            report(event)

    try:
        result = sweep.run_sweep(spec, args.trials, study, storage=args.storage, root=args.runs_dir, stop=stop,
                                 on_trial=lambda row: print(trial_line(row), file=out, flush=True), on_event=on_event)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if args.json:
        print(json.dumps(result_json(result)))
    else:
        best = f"best: {trial_line(result.best)}" if result.best else "no trial completed"
        overhead = (f"; overhead per complete trial beyond its training {result.mean_overhead_seconds:.2f} s"
                    if result.mean_overhead_seconds is not None else "")
        print(f"sweep {result.state} after {result.trials_run} trials of study {study}; {best}{overhead}")
    return 130 if result.state == "stopped" else 0


def run_cli(args: argparse.Namespace) -> int:
    if (args.show or args.stop) and not args.study:
        raise sweep.SweepError("--show and --stop need --study NAME")
    if args.show:
        return _show(args)
    if args.stop:
        return _stop(args)
    return _run(args, sys.stderr if args.json else sys.stdout)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """`python -m core sweep`."""
    parser = subparsers.add_parser(
        "sweep", help="search hyperparameters with Optuna; every trial is a run",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--preset", default="fast", choices=list(PRESETS), help="the base recipe every trial starts from")
    add("--trials", type=int, default=10, help="trials this process runs (default 10)")
    add("--study", help="study name (default <preset>-sweep); the same name adds trials to it")
    add("--storage", help="Optuna storage URL (default $DIGITS_SWEEP_STORAGE or <runs root>/.sweeps/sweeps.db)")
    add("--space", action="append", default=[], metavar="NAME=LOW:HIGH|A,B",
        help="narrow the search: " + "; ".join(f"{name} {param.describe()}" for name, param in
                                               sweep.SEARCH_SPACE.items()))
    add("--runs-dir", help="folder of run folders (default $DIGITS_RUNS_DIR or checkpoints/runs)")
    add("--detach", action="store_true", help="run the sweep in a background process and return at once")
    add("--show", action="store_true", help="print the study's trials and exit")
    add("--stop", action="store_true", help="stop this machine's sweep of --study and exit")
    add("--json", action="store_true", help="print one JSON object on stdout")
    add("--quiet", action="store_true", help="only one line per trial, not per epoch")
    _add_overrides(parser)
    parser.set_defaults(func=run_cli)
