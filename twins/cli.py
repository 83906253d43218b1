"""The ``twins`` command line: one subcommand per module in ``twins.commands``."""

import argparse
import importlib
import sys

# Each module defines ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS = [
    "twins.commands.list",
    "twins.commands.params",
    "twins.commands.parity",
    "twins.commands.show",
    "twins.commands.vmc",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="twins",
        description="PyTorch and JAX/Flax twins: examples, parity checks, side-by-side sources.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers).set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; return its exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
