"""``twins list``: the registered examples."""

from rich.console import Console
from rich.table import Table

from twins.registry import EXAMPLES


def add_parser(subparsers):
    return subparsers.add_parser("list", help="list the registered examples")


def run(args) -> int:
    table = Table("example", "concept", "torch", "flax")
    for pair in EXAMPLES.values():
        table.add_row(pair.name, pair.concept,
                      f"{pair.torch_cls.__module__}.{pair.torch_cls.__name__}",
                      f"{pair.flax_cls.__module__}.{pair.flax_cls.__name__}")
    Console().print(table)
    return 0
