"""The demo's input picture, shipped inside the package (`i2v.examples`) so an installed `i2v` finds it."""

from pathlib import Path

LIGHTHOUSE_IMAGE = Path(__file__).resolve().with_name("lighthouse.png")
