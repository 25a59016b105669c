"""``edge-profile``: every backend x precision x thread count of a model, measured on this device.

:mod:`edge.profiling.engine` plans and measures (one worker process per configuration),
:mod:`edge.profiling.report` writes the tables and the plot; ``edge/cli/profile.py`` parses the
options and prints. ``python -m edge.profiling --worker SPEC`` is a worker's entry.
"""
