"""`i2v ui`: registered by i2v/cli.py (placeholder until the UI lands)."""

from __future__ import annotations

import argparse


def add_ui_command(commands, formatter_class: type[argparse.HelpFormatter]) -> None:
    """Add the `ui` subcommand to the `i2v` parser."""
