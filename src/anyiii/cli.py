"""The `anyiii` command line: `anyiii demo` (more commands arrive with the engine)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anyiii", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="walk two workers through the protocol core and report what happened"
    )
    demo.add_argument(
        "--exchanges",
        type=int,
        default=20_000,
        help="invocations to push through the cores for the throughput figure",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `anyiii` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        sys.exit(run_demo(exchanges=args.exchanges))
