"""Headless Chromium for the tests that open a page as a reader would (Debian's `chromium`, installed by
`scripts/install-system-deps.sh`): its DOM after the scripts ran, a screenshot, and the console's errors."""

import shutil
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS = "needs chromium: apt-get install chromium (scripts/install-system-deps.sh)"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def chromium(*args) -> subprocess.CompletedProcess:
    """Runs Chromium headless with a fresh profile."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    """The page's uncaught errors and console errors, as Chromium logs them with `--enable-logging=stderr`."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


def dom(url: str, window=(1280, 900), budget_ms: int = 3000) -> subprocess.CompletedProcess:
    """The page's DOM once its scripts ran (`--virtual-time-budget`), in a window of `window` pixels."""
    return chromium(f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url)
