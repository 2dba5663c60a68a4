"""Command-line pieces every `i2v` subcommand shares: the help formatter and the API-key option."""

from __future__ import annotations

import argparse
import os

API_KEY_ENV = "I2V_API_KEY"


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show every default except None and False (those say in their help what happens when omitted) and
    the API key's (a key is never printed)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.dest == "api_key":
            return action.help or ""
        return super()._get_help_string(action)


def add_api_key_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """`--api-key`, defaulting to the environment's I2V_API_KEY (so a key need not appear in `ps`)."""
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), help=f"{help} (env {API_KEY_ENV})")
