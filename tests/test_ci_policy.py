"""Under CI=true a test that would skip fails, naming what to install; outside CI it skips as before."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run(tmp_path, ci: str | None):
    (tmp_path / "test_needs_a_tool.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.skipif(True, reason='needs frobnicate: apt-get install frobnicate')\n"
        "def test_it():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "support.ci_policy", "-p", "no:cacheprovider",
                           str(tmp_path / "test_needs_a_tool.py")], capture_output=True, text=True, cwd=tmp_path,
                          env=env)


def test_a_skip_fails_under_ci_with_the_install_line(tmp_path):
    proc = _run(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    assert "CI=true: this test would have been skipped: needs frobnicate: apt-get install frobnicate" in proc.stdout


def test_outside_ci_it_skips(tmp_path):
    proc = _run(tmp_path, None)
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout
