"""``twins parity``: the whole parity matrix as one table."""

import json
import sys

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

from twins.atomic import write_atomically
from twins.devices import available_device_labels
from twins.nqs_parity import CASES as NQS_CASES
from twins.nqs_parity import run_nqs_matrix
from twins.optim.catalog import CONFIGS
from twins.parity import OPTIMIZERS, check_trajectory, run_matrix
from twins.registry import EXAMPLES


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "parity", help="run forward, gradient and trajectory parity for every example and NQS ansatz")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    parser.add_argument("--example", action="append", choices=[*EXAMPLES, *NQS_CASES],
                        help="run only this example or NQS ansatz (repeatable); default: all")
    parser.add_argument("--dtype", action="append", choices=["float64", "float32"],
                        help="run only this dtype (repeatable); default: both")
    parser.add_argument("--device", action="append",
                        help="device pair: cpu, cuda, cpu/cuda (repeatable); default: all available")
    parser.add_argument("--optimizer", action="append", metavar="NAME",
                        choices=["all", *OPTIMIZERS, *CONFIGS],
                        help="show only the 100-step trajectory parity of this optimizer "
                             "configuration (repeatable; 'all' for every one): "
                             + ", ".join([*OPTIMIZERS, *CONFIGS]))
    return parser


def render(rows) -> Table:
    """Return the rows as a rich table."""
    table = Table("example", "check", "dtype", "device", "max abs err", "max rel err",
                  "tolerance", "status", title="torch vs Flax parity", box=box.SIMPLE_HEAD)
    for column in table.columns:
        column.overflow = "fold"  # wrap rather than cut a figure with an ellipsis
    for row in rows:
        status = "[green]pass[/]" if row.passed else f"[red]FAIL[/] ({row.worst})"
        table.add_row(row.example, row.check, row.dtype, row.device, f"{row.max_abs:.2e}",
                      f"{row.max_rel:.2e}", f"{row.tolerance:.0e}", status)
    return table


def write_json(path: str, rows) -> None:
    """Write the rows to ``path`` atomically, so a failed write keeps the old file."""
    payload = json.dumps([row.as_dict() for row in rows], indent=2).encode()
    write_atomically(path, payload)


def run(args) -> int:
    # rich assumes 80 columns when output is piped; the table needs about 110.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    available = available_device_labels()
    devices = args.device or available
    unavailable = [d for d in devices if d not in available]
    if unavailable:
        console.print(f"error: device pair {unavailable[0]!r} is not available here; "
                      f"available: {', '.join(available)}")
        return 2
    dtypes = [np.dtype(d) for d in (args.dtype or ["float64", "float32"])]
    if args.optimizer:
        names = [*OPTIMIZERS, *CONFIGS] if "all" in args.optimizer else args.optimizer
        rows = [check_trajectory(EXAMPLES[example], name, dtype, device)
                for name in names for example in args.example or EXAMPLES
                for device in devices for dtype in dtypes]
    else:
        selected = args.example or [*EXAMPLES, *NQS_CASES]
        examples = [name for name in selected if name in EXAMPLES]
        rows = run_matrix(examples, dtypes, devices, tuple(OPTIMIZERS)) if examples else []
        nqs_cases = [name for name in selected if name in NQS_CASES]
        # NOTE: the NQS checks run on the CPU only; GPU pairs cover the examples.
        if nqs_cases and "cpu" in devices:
            rows += run_nqs_matrix(nqs_cases, dtypes)
    console.print(render(rows))
    if args.json:
        write_json(args.json, rows)
    failed = sum(not row.passed for row in rows)
    console.print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0
