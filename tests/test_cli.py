"""The packaged command: `edgecompress TASK` (and `python -m edgecompress`) is `invoke TASK`."""

import inspect
import os
import subprocess
import sys

import pytest

import tasks as repo_tasks


def _run(args, python=sys.executable, cwd=None, env=None):
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_same_tasks_as_invoke_in_the_checkout(root):
    listed = _run(["-m", "edgecompress", "--list"], cwd=root)
    assert listed.returncode == 0, listed.stderr
    for name in repo_tasks.ns.task_names:
        assert f"  {name}" in listed.stdout, name
    ours = _run(["-m", "edgecompress", "--help", "build-edge"], cwd=root).stdout
    theirs = _run(["-m", "invoke", "--help", "build-edge"], cwd=root).stdout
    assert ours.split("\n", 1)[1] == theirs.split("\n", 1)[1]  # all but the program name


def test_flag_defaults_come_from_the_config():
    from edgecompress.builder.options import BuildOptions
    from edgecompress.cli.tasks import build_edge

    params = inspect.signature(build_edge.body).parameters
    b = BuildOptions()
    assert (params["out"].default, params["epochs"].default, params["runs"].default, params["scale"].default,
            params["budget_minutes"].default) == (b.out_dir, b.epochs, b.runs, b.scale, b.budget_minutes)


def test_installed_as_a_console_script(root):
    text = (root / "pyproject.toml").read_text()
    assert 'edgecompress = "edgecompress.__main__:main"' in text


@pytest.mark.slow
def test_the_device_install_says_which_extra_to_install(root):
    """In the numpy + LiteRT install a board has, the command explains itself instead of a traceback."""
    from support import device_envs

    python = device_envs.build("litert")
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = _run(["-m", "edgecompress", "build-edge"], python=python, env=env, cwd=root.parent)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pip install 'edgecompress[train]'" in proc.stderr and "python -m edgecompress.lite.latency" in proc.stderr
