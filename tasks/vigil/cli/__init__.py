"""The ``vigil`` command: thin wrappers around the pipeline, query, review and custody steps,
for laptops and debugging. ``parser`` declares the commands; ``commands`` runs them."""

from __future__ import annotations

import logging
import sys

from vigil.cli.params import add_processing_flags, params_from_args
from vigil.cli.parser import build_parser
from vigil.errors import VigilError

__all__ = ["main", "add_processing_flags", "build_parser", "params_from_args"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except VigilError as exc:
        print(f"vigil: error: {exc}", file=sys.stderr)
        return 2
