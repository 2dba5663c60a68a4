"""Draw examples/lighthouse.png, the demo's input picture (procedural, so the repository needs no photo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 512


def draw_lighthouse() -> Image.Image:
    y = np.linspace(0, 1, SIZE)[:, None, None]
    sky = (1 - y) * np.array([70, 120, 200]) + y * np.array([250, 190, 140])
    image = Image.fromarray(np.broadcast_to(sky, (SIZE, SIZE, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((330, 90, 410, 170), fill=(255, 230, 150))  # sun
    horizon = 330
    for row in range(horizon, SIZE):  # sea, darker towards the viewer, with light stripes
        depth = (row - horizon) / (SIZE - horizon)
        shade = (40 - 20 * depth, 90 - 40 * depth, 150 - 50 * depth)
        draw.line((0, row, SIZE, row), fill=tuple(int(c) for c in shade))
        if row % 9 == 0:
            draw.line((20 + row % 50, row, 140 + row % 80, row), fill=(120, 160, 210))
    draw.polygon([(0, 360), (230, 300), (300, 340), (300, SIZE), (0, SIZE)], fill=(70, 60, 50))  # cliff
    draw.polygon([(120, 320), (180, 320), (170, 130), (130, 130)], fill=(245, 245, 240))  # tower
    for top in (170, 230, 290):
        draw.polygon([(126, top), (174, top), (175, top + 22), (125, top + 22)], fill=(200, 40, 40))
    draw.rectangle((125, 105, 175, 130), fill=(40, 40, 45))  # lantern room
    draw.rectangle((132, 110, 168, 126), fill=(255, 240, 160))
    draw.polygon([(120, 105), (180, 105), (150, 80)], fill=(200, 40, 40))  # roof
    draw.polygon([(168, 112), (330, 70), (330, 160)], fill=(255, 245, 190))  # beam
    return image.filter(ImageFilter.SMOOTH)


if __name__ == "__main__":
    out = Path(__file__).with_name("lighthouse.png")
    draw_lighthouse().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
