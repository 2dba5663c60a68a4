"""H.264 MP4 encoding: what browsers play, decoded back with PyAV."""

from __future__ import annotations

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
