"""The documentation site: a short README, a site built offline with warnings as errors, a results page
generated from the results files, and pages that render in a real browser."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from support.browser import CHROMIUM, NEEDS, chromium, console_errors


def _mkdocs(cwd, *args):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_readme_fits_on_two_screens_and_points_to_the_guide(root):
    text = (root / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    linked = set(re.findall(r"\]\(docs/([\w\-]+\.md)", text))
    pages = {p.name for p in (root / "docs").glob("*.md")} - {"index.md"}
    assert pages <= linked, sorted(pages - linked)  # every page of the guide is one click away


def test_the_site_builds_offline_with_warnings_as_errors(root, tmp_path):
    done = _mkdocs(root, "--site-dir", str(tmp_path / "site"))
    assert done.returncode == 0, done.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index", "getting-started", "quantization", "devices", "results", "api"):
        assert (site / f"{page}.html").exists(), page
    api = (site / "api.html").read_text()
    assert "int4_share" in api and "BuildOptions" in api  # the reference is generated from the docstrings
    for page in site.glob("*.html"):  # read offline: no page loads a script, a style or a font from the network
        assert not re.search(r"(?:src=|<link[^>]+href=)\"https?://", page.read_text()), page.name


def test_a_broken_link_or_anchor_fails_the_build(root, tmp_path):
    """The checks the site's build relies on can fail: a link to a missing page and to a missing anchor."""
    config = (root / "mkdocs.yml").read_text()
    config = config.split("plugins:")[0] + "validation:" + config.split("validation:")[1]  # no API plugin here
    config = re.sub(r"nav:\n(?:  - .*\n)+", "nav:\n  - Home: index.md\n", config).replace("site_dir: build/docs\n", "")
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text(config)
    for bad in ["[a](missing.md)", "[a](index.md#no-such-heading)"]:
        (tmp_path / "docs" / "index.md").write_text(f"# Home\n\n## Here\n\n{bad}\n")
        done = _mkdocs(tmp_path, "--site-dir", str(tmp_path / "site"))
        assert done.returncode != 0 and "WARNING" in done.stderr, (bad, done.stderr[-2000:])
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n## Here\n\n[a](#here)\n")
    assert _mkdocs(tmp_path, "--site-dir", str(tmp_path / "site")).returncode == 0


def test_the_results_page_is_what_the_results_files_give(root):
    done = subprocess.run([sys.executable, "scripts/write_results_page.py", "--check"], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    page = (root / "docs" / "results.md").read_text()
    for path in (root / "docs" / "results").glob("*.json"):
        assert f"## {path.stem}" in page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason=NEEDS)
def test_three_pages_render_in_chromium_with_a_heading_a_table_and_no_console_error(root, tmp_path):
    site = tmp_path / "site"
    assert _mkdocs(root, "--site-dir", str(site)).returncode == 0
    bad = tmp_path / "bad.html"  # the console check can fail
    bad.write_text("<html><body><h1>x</h1><script>undefinedFn();</script></body></html>")
    assert console_errors(chromium("--virtual-time-budget=2000", "--dump-dom", bad.as_uri()).stderr)
    from PIL import Image

    for page, heading in [("getting-started", "Getting started"), ("measurements", "Measurements"),
                          ("results", "Results files")]:
        url = (site / f"{page}.html").as_uri()
        done = chromium("--virtual-time-budget=3000", "--dump-dom", url)
        dom = done.stdout
        assert re.search(r"<h1[^>]*>" + heading, dom), page
        assert "<table" in dom, page
        assert console_errors(done.stderr) == [], (page, console_errors(done.stderr))
        shot = tmp_path / f"{page}.png"
        chromium("--window-size=1200,1600", f"--screenshot={shot}", url)
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert pixels.shape == (1600, 1200) and pixels.std() > 10, page  # not a blank page
