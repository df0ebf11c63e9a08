"""report.html: self-contained, and its images load in a real browser (headless Chromium)."""

import json

import numpy as np
import pytest
from support.browser import CHROMIUM, NEEDS, chromium, console_errors

from edgecompress.report.pareto import pareto


def test_pareto_front():
    # (size, accuracy): smaller and more accurate is better
    pts = [(10, 0.80), (20, 0.85), (30, 0.84), (5, 0.70), (40, 0.90), (20, 0.80)]
    assert pareto(pts) == [0, 1, 3, 4]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge

    out = tmp_path_factory.mktemp("edge")
    build_edge(BuildOptions(out_dir=str(out), recipe="quantize-only", epochs=1, runs=20, verbose=0))
    return out


@pytest.mark.slow
def test_report_html_is_self_contained_with_receipts(built):
    page = (built / "report.html").read_text()
    assert "src='http" not in page and "src=\"http" not in page and page.count("data:image/png;base64,") >= 3
    report = json.loads((built / "report.json").read_text())
    assert len(report["calibration"]["sha256"]) == 64 and report["versions"]["tensorflow"]
    for a in report["artifacts"]:
        assert a["sha256"] in page
    assert report["dataset"]["fingerprint"] in page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason=NEEDS)
def test_report_renders_in_chromium_with_images_loaded(built, tmp_path):
    url = (built / "report.html").as_uri()
    done = chromium("--virtual-time-budget=5000", "--dump-dom", url)
    dom = done.stdout
    assert console_errors(done.stderr) == []
    n_loaded = int(dom.split('data-images-loaded="')[1].split('"')[0])
    n_images = int(dom.split('data-images="')[1].split('"')[0])
    assert n_images >= 3 and n_loaded == n_images, (n_loaded, n_images)
    shot = tmp_path / "report.png"
    chromium("--window-size=1100,1800", f"--screenshot={shot}", url)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1800, 1100) and pixels.std() > 10  # not a blank page
