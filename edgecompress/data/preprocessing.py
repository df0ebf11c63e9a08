"""Image decoding and scaling, applied identically everywhere.

TensorFlow-free (numpy, and Pillow for reading image files). It runs on the host: a device (`lite/`, which
does not import it) is sent inputs already scaled by it (`lite.latency.load_eval_data`).

Example:

>>> spec = Preprocessing(height=28, width=28, channels=1)
>>> pixels = load_image("calibration_data/0_t-shirt_top/000.png", spec)
>>> x = to_model_input(pixels[None], spec)   # float32, shape (1, 28, 28, 1)
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from edgecompress.configs import Preprocessing
from edgecompress.data.ondisk import Scaled, is_lazy
from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Training and calibration images are small; a larger file is almost always a
# mistake (or a decompression bomb), refused before it is decoded.
MAX_PIXELS = 50_000_000


def to_model_input(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Scales uint8 pixels of shape (N, H, W, C) to the model's float32 input.

    Pixels that stay on disk (`data.ondisk.Rows`) are scaled as their rows are read: the result is a
    `Scaled` of them, not an array."""
    if is_lazy(pixels):
        return Scaled(pixels, functools.partial(to_model_input, spec=spec), label=f"to_model_input({spec.scale})")
    x = np.asarray(pixels, dtype=np.float32)
    if spec.scale == "unit":
        return x / 255.0
    if spec.scale == "symmetric":
        return x / 127.5 - 1.0
    return x


class ConversionNotice:
    """Counts resizes and colour conversions so each is reported once."""

    def __init__(self):
        self.resized: dict[tuple, int] = {}
        self.converted: dict[tuple, int] = {}

    def log(self, what: str = "images") -> None:
        for (src, dst), n in self.resized.items():
            logger.warning("Resized %d %s from %s to %s to match the model input.", n, what, src, dst)
        for (src, dst), n in self.converted.items():
            logger.warning("Converted %d %s from %s to %s to match the model input.", n, what, src, dst)


def _to_8bit_mode(img):
    """Pillow image in any mode -> 'L' or 'RGB' image (alpha dropped)."""
    from PIL import Image

    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L")
    if mode in ("1", "LA", "La"):
        return img.convert("L")
    # P (palette, maybe with transparency), RGBA, CMYK, YCbCr, LAB, HSV ...
    if mode == "P":
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_image(path, spec: Preprocessing, notice: ConversionNotice | None = None) -> np.ndarray:
    """Reads one image file as uint8 pixels of shape (H, W, C) for `spec`.

    Resizes (bilinear) and converts the colour mode when the file differs
    from `spec`; pass a `ConversionNotice` to have that reported once.

    Raises:
        EdgeCompressError: naming the file, when it cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise EdgeCompressError(
                    f"Image {path} is {img.size[0]}x{img.size[1]} ({img.size[0] * img.size[1] / 1e6:.0f} MP), over the "
                    f"{MAX_PIXELS / 1e6:.0f} MP limit. Downscale it to about the model's input size first."
                )
            img.load()
            src_mode, src_size = img.mode, img.size
            img = _to_8bit_mode(img)
            target_mode = "L" if spec.channels == 1 else "RGB"
            if img.mode != target_mode:
                img = img.convert(target_mode)
            if img.size != (spec.width, spec.height):
                img = img.resize((spec.width, spec.height), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise EdgeCompressError(f"Image file not found: {path}") from None
    except Image.DecompressionBombError as e:
        raise EdgeCompressError(
            f"Image {path} is too large to decode safely ({e}). Downscale it "
            "before using it."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        size = path.stat().st_size if path.exists() else 0
        why = "it is empty (0 bytes)" if size == 0 else f"{type(e).__name__}: {e}"
        raise EdgeCompressError(
            f"Cannot read image {path}: {why}. Replace or delete the file."
        ) from None
    if notice is not None:
        if src_size != (spec.width, spec.height):
            key = (f"{src_size[0]}x{src_size[1]}", f"{spec.width}x{spec.height}")
            notice.resized[key] = notice.resized.get(key, 0) + 1
        if src_mode != ("L" if spec.channels == 1 else "RGB"):
            key = (src_mode, "L" if spec.channels == 1 else "RGB")
            notice.converted[key] = notice.converted.get(key, 0) + 1
    return arr.reshape(spec.height, spec.width, spec.channels)


def resize_array(pixels: np.ndarray, spec: Preprocessing, notice: ConversionNotice | None = None) -> np.ndarray:
    """Brings uint8 arrays (N, H, W[, C]) to `spec`'s size and channels."""
    from PIL import Image

    x = np.asarray(pixels)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise EdgeCompressError(
            f"Expected image arrays of shape (N, H, W) or (N, H, W, C) with C in "
            f"1, 3 or 4. Received shape {tuple(np.shape(pixels))}."
        )
    if x.dtype != np.uint8:
        x = np.clip(np.asarray(x, dtype=np.float64), 0, 255).round().astype(np.uint8)
    n, h, w, c = x.shape
    if (h, w, c) == spec.input_shape:
        return x
    out = np.empty((n, *spec.input_shape), dtype=np.uint8)
    target_mode = "L" if spec.channels == 1 else "RGB"
    for i in range(n):
        a = x[i]
        img = Image.fromarray(a[..., 0], "L") if c == 1 else Image.fromarray(a[..., :3], "RGB")
        if img.mode != target_mode:
            img = img.convert(target_mode)
        if img.size != (spec.width, spec.height):
            img = img.resize((spec.width, spec.height), Image.BILINEAR)
        out[i] = np.asarray(img, dtype=np.uint8).reshape(spec.input_shape)
    if notice is not None:
        if (h, w) != (spec.height, spec.width):
            key = (f"{w}x{h}", f"{spec.width}x{spec.height}")
            notice.resized[key] = notice.resized.get(key, 0) + n
        if c != spec.channels:
            key = (f"{c} channel(s)", f"{spec.channels} channel(s)")
            notice.converted[key] = notice.converted.get(key, 0) + n
    return out
