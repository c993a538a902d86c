"""Experiments over finished (or running) training runs: compare, sweep, report, export.

Every module here reads the run directories that `archspec train` writes (see docs/training.md)
and never changes them, except `sweep`, which creates new runs through `archspec.train.loop.train`.
Nothing here imports torch or matplotlib at import time: the CLI imports these modules lazily.
"""
