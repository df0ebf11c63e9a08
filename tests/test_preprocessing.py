import numpy as np
import pytest
from PIL import Image

from conftest import write_png
from edgecompress.configs import Preprocessing
from edgecompress.errors import EdgeCompressError
from edgecompress.data.preprocessing import ConversionNotice, load_image, resize_array, to_model_input

GRAY = Preprocessing(28, 28, 1)
RGB = Preprocessing(32, 32, 3)


@pytest.mark.parametrize("scale, lo, hi", [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0), ("raw", 0.0, 255.0)])
def test_scaling(scale, lo, hi):
    x = to_model_input(np.array([[0, 255]], np.uint8), Preprocessing(scale=scale))
    assert x.dtype == np.float32
    assert x.min() == pytest.approx(lo) and x.max() == pytest.approx(hi)


def _img(mode, size=(28, 28)):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    base = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8), "RGB")
    if mode == "P":
        return base.convert("P", palette=Image.ADAPTIVE)
    return base.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "CMYK", "1", "I;16", "I", "F"])
@pytest.mark.parametrize("spec", [GRAY, RGB], ids=["gray", "rgb"])
def test_any_mode_becomes_the_spec_shape(tmp_path, mode, spec):
    img = _img(mode, (40, 30))
    path = tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK") else "x.png")
    img.save(path)
    notice = ConversionNotice()
    px = load_image(path, spec, notice)
    assert px.shape == spec.input_shape and px.dtype == np.uint8
    assert notice.resized == {("40x30", f"{spec.width}x{spec.height}"): 1}


def test_16bit_is_scaled_not_clipped(tmp_path):
    arr = np.full((28, 28), 65535 // 2, np.uint16)
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    px = load_image(path, GRAY)
    assert 120 <= px.mean() <= 135  # half of 65535 -> about half of 255


@pytest.mark.parametrize("content, why", [
    (b"", "empty (0 bytes)"),
    (b"this is not an image at all", "Cannot read image"),
])
def test_bad_files_name_the_file(tmp_path, content, why):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(EdgeCompressError) as e:
        load_image(path, GRAY)
    assert str(path) in str(e.value) and why in str(e.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_names_the_file(tmp_path, fmt):
    path = tmp_path / f"t.{fmt.lower()}"
    _img("RGB", (64, 64)).save(path, fmt)
    path.write_bytes(path.read_bytes()[:120])
    with pytest.raises(EdgeCompressError, match=str(path)):
        load_image(path, RGB)


def test_resize_array_counts_once():
    notice = ConversionNotice()
    out = resize_array(np.zeros((5, 14, 14), np.uint8), GRAY, notice)
    assert out.shape == (5, 28, 28, 1)
    assert notice.resized == {("14x14", "28x28"): 5}


def test_resize_array_rejects_bad_shape():
    with pytest.raises(EdgeCompressError, match=r"Received shape \(5,\)"):
        resize_array(np.zeros(5), GRAY)


def test_png_written_by_helper_round_trips(tmp_path):
    arr = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    path = write_png(tmp_path / "a.png", arr)
    assert np.array_equal(load_image(path, GRAY)[..., 0], arr)
