"""`i2v bench`: registered by i2v/cli.py (placeholder until the harness lands)."""

from __future__ import annotations

import argparse


def add_bench_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `bench` subcommand to the `i2v` parser."""
