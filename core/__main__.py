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
    "core.bench",
    "core.summary",
    "core.inference",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in CLI_MODULES:
        importlib.import_module(module_name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
