"""Command-line pieces every `i2v` subcommand shares: the exit codes, the help formatter, the API-key option and
the argparse types of counts and amounts."""

from __future__ import annotations

import argparse
import math
import os

API_KEY_ENV = "I2V_API_KEY"

# Exit codes that mean something to scripts, one table for every subcommand so that no two mean different things.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2  # a wrong argument or input: argparse's own code for a usage error
EXIT_UNAVAILABLE = 3
EXIT_OVERLOADED = 4
EXIT_CANCELLED = 5
EXIT_OUT_OF_MEMORY = 6
EXIT_RATE_LIMITED = 7  # the gateway's limit for this key; the message says when to retry
EXIT_UNAUTHORIZED = 8  # the server needs an API key, or refused the one sent (or the gateway's tenant a model)
EXIT_TIMEOUT = 9  # the request ran past --timeout and was cancelled
EXIT_SERVER_KILLED = 75  # `i2v supervise` killed a server whose model process died (sysexits' EX_TEMPFAIL)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show every default except None and False (those say in their help what happens when omitted) and
    the API key's (a key is never printed)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.dest == "api_key":
            return action.help or ""
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """An argument no subcommand knows is refused by the subcommand that got it, with that subcommand's usage:
    argparse leaves it to the top-level parser, whose usage (`i2v [-h] COMMAND ...`) shows none of the options.
    The subcommands' parsers are of this class too (`add_subparsers` makes them of their parent's)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def add_api_key_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """`--api-key`, defaulting to the environment's I2V_API_KEY (so a key need not appear in `ps`)."""
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), help=f"{help} (env {API_KEY_ENV})")


def at_least(low: int):
    """An argparse type: a whole number of at least `low`."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}, got {text!r}")
        return value

    whole_number.__name__ = f"whole number >= {low}"  # what argparse's own messages call the type
    return whole_number


def positive(unit: str):
    """An argparse type: a finite number of `unit` (seconds, GiB) above 0."""

    def amount(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number of {unit}, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be more than 0 {unit}, got {text}")
        return value

    amount.__name__ = f"number of {unit}"
    return amount
