"""The demo's input picture and prompt, shipped inside the package (`i2v.examples`) so an installed `i2v`
finds them: `i2v demo`, `i2v bench` and the UI's examples use them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

LIGHTHOUSE_PROMPT = "A lighthouse on a cliff, waves rolling in, clouds drifting by"


@contextlib.contextmanager
def lighthouse_image() -> Iterator[Path]:
    """A file path of the bundled picture, valid inside the `with` block (wherever the package is installed)."""
    with resources.as_file(resources.files(__name__) / "lighthouse.png") as path:
        yield path
