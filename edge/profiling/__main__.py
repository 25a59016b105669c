"""A worker process of ``edge-profile``: ``python -m edge.profiling --worker SPEC.json``."""

import argparse
import sys
from pathlib import Path

from edge.profiling.engine import worker_main

parser = argparse.ArgumentParser(prog="python -m edge.profiling", description="edge-profile's worker process")
parser.add_argument("--worker", type=Path, required=True, help="the spec file the parent wrote")
sys.exit(worker_main(parser.parse_args().worker))
