"""H.264 MP4 in memory with PyAV: what the server returns, and how tests and clients read it back.

yuv420p, a browser-safe profile and `+faststart` (the index before the media data) make the file play in a
`<video>` element as it downloads.

The same frames always give the same bytes: x264's AVX-512 code is off (`_x264_params`).
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8 [frames, height, width, 3] RGB
    fps: float
    codec: str
    pix_fmt: str


def encode_mp4(frames: np.ndarray, fps: int, *, crf: int = 18, preset: str = "medium") -> bytes:
    """uint8 RGB frames [F, H, W, 3] → MP4 bytes (H.264, yuv420p, exact frame rate `fps`)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape [frames, height, width, 3], got {list(frames.shape)}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even for yuv420p, got {height}x{width}")
    # faststart rewrites the file to move the index to the front, which needs a real file, not a buffer.
    with tempfile.TemporaryDirectory(prefix="i2v-mp4-") as folder:
        path = Path(folder) / "video.mp4"
        _write_mp4(path, frames, int(fps), crf, preset)
        return path.read_bytes()


def _write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int, preset: str) -> None:
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(crf), "preset": preset, "profile": "high", **_x264_params()}
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


@functools.cache
def _x264_params() -> dict[str, str]:
    """x264's options beyond the rate, preset and profile: on a CPU with AVX-512, its instruction sets up to AVX2.

    x264's AVX-512 functions (core 165, as PyAV's wheels bundle it) read memory that x264 allocated and never
    wrote, for some frame sizes and contents (noise 160 wide and 192 high; the tiny test model's 64x64 frames):
    the P frames then depend on what the heap held before. A fresh process holds the same leftovers run after
    run, a long-lived server (the BLS stub, running torch between videos) does not, so the same frames there
    gave one of two MP4s. With AVX2 the bytes do not depend on the heap (valgrind, which hides AVX-512 from x264,
    finds no such read either), the encode is as fast, and where the AVX-512 code reads nothing stale (larger
    frames) the bytes are the same. Every CPU with AVX-512 has AVX2 and the FMA3, BMI1/2 and LZCNT that x264's
    "AVX2" level includes; other CPUs keep x264's own choice."""
    features = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, numpy 1
        try:
            features = getattr(importlib.import_module(module), "__cpu_features__", {})
        except ImportError:
            continue
        break
    # x264 uses AVX-512 where F, CD, BW, DQ and VL are there and the OS saves the registers: numpy's AVX512_SKX
    return {"x264-params": "asm=AVX2"} if features.get("AVX512_SKX") else {}


def metadata_path(video_path: str | Path) -> Path:
    """Where a saved video's metadata JSON lies: beside it, as `<name>.json`."""
    return Path(video_path).with_suffix(".json")


def save_video_with_metadata(path: str | Path, video: bytes, metadata: dict) -> Path:
    """Write an MP4 and its metadata JSON beside it (`metadata_path`), making the folder: a video saved by the
    client and one kept by the server's request log read back the same way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(video)
    metadata_path(path).write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def decode_mp4(data: bytes) -> DecodedVideo:
    """MP4 bytes → every frame as uint8 RGB, with the stream's rate, codec and pixel format."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return DecodedVideo(
            frames=np.stack(frames),
            fps=float(stream.average_rate),
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt,
        )
