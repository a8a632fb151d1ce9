"""The `trbench` command: one front door, one subcommand per job.

Each subcommand lives next to the code it drives and contributes an ``add_parser(subparsers)``
function that registers itself and sets ``func`` (a callable taking the parsed namespace and
returning an exit code). Bad input raises :class:`trbench.base.errors.UsageError`, which becomes a
single line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from trbench.base.errors import UsageError

# module providing add_parser(subparsers), in the order `trbench --help` lists them
SUBCOMMAND_MODULES = (
    "trbench.train_cli",
    "trbench.run_cli",
    "trbench.report_cli",
    "trbench.importers.cli",
    "trbench.tune.cli",
    "trbench.reproduce",
    "trbench.bench",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors also exit 2 with one line
        self.exit(2, f"trbench: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trbench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"trbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
