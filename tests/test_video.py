"""H.264 MP4 encoding: what browsers play, decoded back with PyAV."""

from __future__ import annotations

import ctypes
import platform

import numpy as np
import pytest

from i2v.video import decode_mp4, encode_mp4


def moving_gradient(frames: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [np.stack([(x * 2 + i * 3) % 256, y * 255 // height, (x + y) // 2 + i * 2], -1) for i in range(frames)]
    ).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_mp4_is_browser_playable_h264_with_the_exact_shape_and_rate():
    frames = moving_gradient(12, 64, 96)
    data = encode_mp4(frames, fps=8)
    video = decode_mp4(data)
    assert (video.codec, video.pix_fmt) == ("h264", "yuv420p")
    assert video.frames.shape == frames.shape
    assert video.fps == 8
    assert data.find(b"moov") < data.find(b"mdat"), "index must come first (faststart) for streaming playback"
    assert psnr(video.frames, frames) > 35


M_PERTURB = -6  # glibc's mallopt: fill each block malloc hands out with this byte's complement


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt(M_PERTURB)")
def test_the_same_frames_give_the_same_bytes_whatever_the_heap_held_before():
    """A long-lived server's heap holds other leftovers for each request; the video must not depend on them.

    x264's AVX-512 code read memory it had never written for frames like these (noise, 160x192): the same frames
    gave one of several MP4s, by what malloc handed x264. Where the CPU has no AVX-512 this holds anyway."""
    frames = np.random.default_rng(0).integers(0, 256, (8, 192, 160, 3), dtype=np.uint8)
    libc = ctypes.CDLL(None)
    videos = set()
    try:
        for fill in (0x01, 0x55, 0xAA, 0xFF):
            libc.mallopt(M_PERTURB, fill)
            videos.add(encode_mp4(frames, fps=8))
    finally:
        libc.mallopt(M_PERTURB, 0)
    assert len(videos) == 1


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 63, 64, 3), np.uint8), "must be even"),
        (np.zeros((4, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64, 3), np.uint8), "shape"),
    ],
)
def test_bad_frames_are_refused_with_a_clear_error(frames, message):
    with pytest.raises(ValueError, match=message):
        encode_mp4(frames, fps=8)
