"""The `anyiii` command line: `anyiii demo`, `anyiii engine` and `anyiii serve`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._engine import add_engine_arguments, run_engine_command
from ._loops import LOOPS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anyiii", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run an embedded engine with a trio worker and an asyncio worker, call across "
        "them and over HTTP, and report each step",
    )
    demo.add_argument(
        "--verbose", action="store_true", help="print the traceback when a step fails"
    )
    engine = commands.add_parser(
        "engine",
        help="run the embedded iii engine",
        description="Run the embedded iii engine until Ctrl-C or SIGTERM. Settings come from "
        "the flags, then the config file (--config), then the defaults.",
    )
    add_engine_arguments(engine)
    serve = commands.add_parser(
        "serve", help="run a worker serving a registry: anyiii serve module:registry"
    )
    serve.add_argument("target", help="module:attribute naming an anyiii.Registry")
    serve.add_argument("--url", default=None, help="engine URL (default $III_URL, then local)")
    serve.add_argument("--name", default=None, help="worker name (default $III_WORKER_NAME)")
    serve.add_argument("--namespace", default=None, help="namespace (default $III_NAMESPACE)")
    serve.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    serve.add_argument(
        "--loop", default="default", choices=LOOPS, help="'uvloop': asyncio on uvloop"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `anyiii` console script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        sys.exit(run_demo(verbose=args.verbose))
    if args.command == "serve":
        from ._serve import serve_command

        sys.exit(
            serve_command(
                args.target,
                url=args.url,
                name=args.name,
                namespace=args.namespace,
                backend=args.backend,
                loop=args.loop,
            )
        )
    if args.command == "engine":
        sys.exit(run_engine_command(args))
