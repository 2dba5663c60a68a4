"""What the Python backend's stub process lacks compared with a `python3` command, set right when a model loads."""

from __future__ import annotations

import contextlib
import locale


def use_utf8_text() -> None:
    """Read and write text as UTF-8 by default, as python3 does. The stub's embedded interpreter never sets its
    locale from the environment, so `open()` without an encoding is ASCII there (TorchInductor's kernel
    templates then fail to load)."""
    with contextlib.suppress(locale.Error):  # a system without the C.UTF-8 locale keeps what it has
        locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
