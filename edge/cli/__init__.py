"""Thin command-line front ends: argument parsing and printing only; the stages live in edge/."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr)


def fail(prog: str, message: str, code: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
