"""Command line: `python -m core <command> ...`.

Each feature module exposes `register_cli(subparsers)`, which adds its sub-command
and sets `func` (a callable taking the parsed args and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Feature modules that add sub-commands, in the order `--help` lists them.
CLI_MODULES = [
    "core.data",
    "core.train_cli",
    "core.runs_cli",
    "core.sweep_cli",
    "core.bench",
    "core.ensemble",
    "core.summary",
    "core.inference",
    "core.export",
    "core.writers",
]


DESCRIPTION = """MNIST Lab from the command line: the same engine, runs folder and models as the dashboard.
Train and follow runs, sweep settings, benchmark, predict image files, score models on other writers, export them.
`python -m core COMMAND --help` tells more about each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in CLI_MODULES:
        importlib.import_module(module_name).register_cli(subparsers)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a person can fix (bad file, bad setting): a message, never a traceback."""
    from core.checkpoints import CheckpointError
    from core.compare import CompareError
    from core.data import DataError
    from core.export import ExportError
    from core.layers import ArchitectureError
    from core.preprocess import ImageError
    from core.runs import RunError
    from core.training import ConfigError

    return (ArchitectureError, CheckpointError, CompareError, ConfigError, DataError, ExportError, ImageError, RunError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
