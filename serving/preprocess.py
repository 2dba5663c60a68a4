"""Image decoding and the two crops I2VGen-XL feeds its encoders, exactly as diffusers' pipeline makes them.

`center_crop_wide` and `resize_bilinear` reproduce the private helpers of diffusers' (deprecated)
`pipeline_i2vgen_xl.py`, so the serving loop does not import the deprecated pipeline.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, ImageOps

from i2v.params import IMAGE_FORMATS, IMAGE_FORMATS_TEXT

# Refuse images beyond this many pixels before decoding them (decompression bombs, accidental 100 MP uploads).
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 8


class InvalidImageError(ValueError):
    """The image bytes are missing, corrupt, or of a size the server refuses."""


def image_from_base64(text: bytes) -> bytes:
    """The image bytes of base64 text or a `data:image/...;base64,` URI (the `encoding: base64` requests)."""
    if text[:5].lower() == b"data:":
        header, _, text = text.partition(b",")
        if not header.lower().endswith(b";base64"):
            raise InvalidImageError("image is a data: URI without ';base64': send data:image/png;base64,...")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("image is not valid base64 (encoding is base64): send base64 of the file") from None


def decode_image(data: bytes) -> Image.Image:
    """Decode uploaded bytes to an RGB image, as `diffusers.utils.load_image` does (EXIF rotation applied)."""
    if not data:
        raise InvalidImageError(f"image is empty: send the bytes of a {IMAGE_FORMATS_TEXT} file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # no other decoder sees the bytes
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidImageError(
                    f"image is too large: {width}x{height} pixels, at most {MAX_IMAGE_PIXELS:,} allowed"
                )
            image.load()
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(
            f"image is too large: more than {MAX_IMAGE_PIXELS:,} pixels, a possible decompression bomb"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        message = f"image could not be decoded: it is not a {IMAGE_FORMATS_TEXT} file"
        if _looks_like_base64(data):  # the likeliest mistake over HTTP JSON
            message += ', but base64 text or a data: URI: send "encoding": "base64" with it'
        raise InvalidImageError(message) from exc
    except Exception as exc:  # PIL raises many types for corrupt data; their messages hold reprs and offsets
        raise InvalidImageError("image could not be decoded: the file is truncated or corrupt") from exc
    if min(image.size) < MIN_IMAGE_SIDE:
        raise InvalidImageError(
            f"image is too small: {image.width}x{image.height}, each side must be at least {MIN_IMAGE_SIDE}"
        )
    return ImageOps.exif_transpose(image).convert("RGB")


def _looks_like_base64(data: bytes) -> bool:
    """A data: URI, or 64 bytes or more of nothing but the base64 alphabet (no image file starts so)."""
    return data[:5].lower() == b"data:" or (len(data) >= 64 and bool(re.fullmatch(rb"[A-Za-z0-9+/=]+", data[:4096])))


def center_crop_wide(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale (box filter) so the image covers `size` = (width, height), then crop the center."""
    scale = min(image.size[0] / size[0], image.size[1] / size[1])
    image = image.resize((round(image.width // scale), round(image.height // scale)), resample=Image.BOX)
    x1 = (image.width - size[0]) // 2
    y1 = (image.height - size[1]) // 2
    return image.crop((x1, y1, x1 + size[0], y1 + size[1]))


def resize_bilinear(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image.resize(size, Image.BILINEAR)
