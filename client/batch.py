"""Many videos in one run: a folder of images or a JSONL of requests → one MP4 each plus a manifest.

A failed item is recorded in the manifest with its error and the run goes on; the exit code then says that
something failed. A JSONL line that cannot be read is such an item too, its error naming the line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from i2v.client.errors import I2VError, InvalidInputError
from i2v.client.grpc_client import I2VClient, ProgressCallback
from i2v.client.types import GenerationRequest
from i2v.params import IMAGE_SUFFIXES

MANIFEST = "manifest.json"


@dataclass
class BatchItem:
    """One line of work: an image file, a prompt, parameters (None = server default); or, where its line could
    not be read, the `error` that is recorded for it instead."""

    image: Path | None
    prompt: str | None
    params: dict = field(default_factory=dict)
    name: str = ""
    error: str = ""


def items_from_folder(folder: Path, params: dict) -> list[BatchItem]:
    """Every image in `folder` (sorted by name), all with the same prompt and parameters (`params["prompt"]`)."""
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    rest = {k: v for k, v in params.items() if k != "prompt"}
    return [BatchItem(image, params["prompt"], dict(rest), image.stem) for image in images]


def items_from_jsonl(path: Path, defaults: dict) -> list[BatchItem]:
    """One JSON object a line: {"image": path (relative to the file), "prompt": ..., any parameter}; `defaults`
    (the command line's parameters, the prompt among them) fill what a line leaves out. A line that is not such
    an object is an item with its `error`, named after its line number."""
    items = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_item_from_line(line, Path(path), number, defaults))
        except ValueError as exc:
            items.append(BatchItem(None, None, name=f"{number:04d}", error=f"{path}:{number}: {exc}"))
    return items


def _item_from_line(line: str, path: Path, number: int, defaults: dict) -> BatchItem:
    expected = 'expected a JSON object like {"image": "cat.png", "prompt": "...", "num_frames": 16}'
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc}); {expected}") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{expected}, got a JSON {type(entry).__name__}")
    image = entry.pop("image", None)
    if not isinstance(image, str) or not image:
        raise ValueError(f"'image' must be the path of an image file, got {image!r}; {expected}")
    prompt = entry.pop("prompt", defaults.get("prompt"))
    params = {**{k: v for k, v in defaults.items() if k != "prompt"}, **entry}
    image_path = Path(image) if Path(image).is_absolute() else path.parent / image
    return BatchItem(image_path, prompt, params, f"{number:04d}-{image_path.stem}")


def run_batch(
    client: I2VClient,
    items: list[BatchItem],
    output_dir: Path,
    on_progress: ProgressCallback | None = None,
) -> Iterator[dict]:
    """Generate each item in turn; yields its manifest record as it finishes and writes the manifest at the end."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for item in items:
        image = str(item.image) if item.image is not None else None
        record = {"name": item.name, "image": image, "prompt": item.prompt, "parameters": item.params}
        start = time.perf_counter()
        try:
            if item.error:
                raise InvalidInputError(item.error)
            request = GenerationRequest.from_file(item.image, item.prompt, **item.params)
            result = client.generate(request, on_progress=on_progress)
            video = result.save(output_dir / f"{item.name}.mp4")
            record.update(status="ok", video=video.name, seed=result.seed, metadata=result.metadata)
        except (I2VError, ValueError, OSError) as exc:
            record.update(status="failed", error_type=type(exc).__name__, error=str(exc))
        record["seconds"] = round(time.perf_counter() - start, 3)
        records.append(record)
        yield record
    (output_dir / MANIFEST).write_text(json.dumps({"items": records}, indent=2) + "\n")
