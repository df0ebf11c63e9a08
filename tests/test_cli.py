"""The packaged command: `edgecompress TASK` (and `python -m edgecompress`) is `invoke TASK`."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tasks as repo_tasks


def _run(args, python=sys.executable, cwd=None, env=None):
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_same_tasks_as_invoke_in_the_checkout(root):
    listed = _run(["-m", "edgecompress", "--list"], cwd=root)
    assert listed.returncode == 0, listed.stderr
    from benchmarks.invocations import CHECKOUT_TASKS

    checkout_only = {t.name for t in CHECKOUT_TASKS}
    for name in repo_tasks.ns.task_names:  # a checkout's benchmark tasks are not in the wheel
        assert (f"  {name} " in listed.stdout) == (name not in checkout_only), name
    ours = _run(["-m", "edgecompress", "--help", "build-edge"], cwd=root).stdout
    theirs = _run(["-m", "invoke", "--help", "build-edge"], cwd=root).stdout
    assert ours.split("\n", 1)[1] == theirs.split("\n", 1)[1]  # all but the program name


def test_flag_defaults_come_from_the_config():
    from edgecompress.builder.options import BuildOptions
    from edgecompress.cli.invocations import build_edge

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


def _ctrl_c_in_a_task(body):
    """Runs `body` inside `user_errors` after a Ctrl-C reached this thread, with Python's default SIGINT
    handler (a job a non-interactive shell put in the background inherits SIGINT ignored, which
    `user_errors` leaves ignored: test_reliability's case, so the default is set here whoever started
    pytest). `body` gets the KeyboardInterrupt, if the handler raised one. Returns (the task's Exit, the
    handler in place after the task)."""
    import signal
    import time

    from invoke.exceptions import Exit

    from edgecompress.cli.glue import user_errors
    from edgecompress.errors import INTERRUPTED

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with user_errors():
            try:
                # In this thread (`os.kill` may hand it to a TensorFlow thread, and a loop of a thousand
                # bytecodes ended before it arrived on a loaded machine); the sleep ends when the handler raises.
                signal.raise_signal(signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt as e:
                body(e)
    except Exit as e:
        return e, signal.getsignal(signal.SIGINT)
    finally:
        INTERRUPTED.clear()
        restored = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, before)
    raise AssertionError(f"no exit (handler after the task: {restored})")


def test_a_ctrl_c_is_exit_130_even_when_it_comes_out_as_another_exception():
    """TensorFlow can turn the KeyboardInterrupt of a Ctrl-C into its own error on the way up: the task still
    ends with exit 130, and the handler it replaced is back afterwards."""
    import signal

    from edgecompress.cli.glue import user_errors

    def tensorflow_error(_):
        raise RuntimeError("CancelledError: the step was cancelled") from None

    e, restored = _ctrl_c_in_a_task(tensorflow_error)
    assert e.code == 130 and "interrupted" in str(e.message)
    assert restored is signal.default_int_handler  # the handler user_errors replaced is back
    try:  # without a Ctrl-C the same error is the error it is
        with user_errors():
            raise RuntimeError("a bug")
    except RuntimeError as e:
        assert str(e) == "a bug"


def test_a_ctrl_c_that_a_library_swallowed_stops_the_build_at_its_next_step_with_exit_130():
    """A library on the way up can catch the KeyboardInterrupt and carry on (a full suite's run once saw a
    build sent SIGINT while it loaded finish with exit 0): the Ctrl-C is recorded as it arrives, the next step
    or stage stops the build, and a task that ran to its end anyway exits 130."""
    from edgecompress.builder.steps import step

    reached = []

    def carry_on_to_a_step(_):  # what a library that catches it does
        step(2, 4, "Reading calibration images")
        reached.append("after the step")

    e, _ = _ctrl_c_in_a_task(carry_on_to_a_step)
    assert e.code == 130 and reached == []  # the step stopped it
    e, _ = _ctrl_c_in_a_task(lambda _: reached.append("the end"))
    assert e.code == 130 and "interrupted" in str(e.message) and reached == ["the end"]  # ran to its end, then 130
    step(2, 4, "Reading calibration images")  # without a Ctrl-C a step is only its log line


def test_a_ctrl_c_that_lands_in_code_run_by_pyrun_still_exits_130_under_python_m(tmp_path):
    """CPython marks a KeyboardInterrupt that leaves `PyRun_*` code (as pybind11's `exec` runs it) as
    unhandled even when it is caught, and `python -m` then ends by SIGINT whatever the exit
    code: a full suite's run once saw `python -m invoke build-edge` die by signal (-2) after printing
    "interrupted". The task forgets that mark, so the exit is 130 as the message says."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "ctrl_c_in_pyrun.py").write_text(
        "import ctypes, signal, sys\n"
        "from invoke.exceptions import Exit\n"
        "from edgecompress.cli.glue import user_errors\n"
        "run = ctypes.pythonapi.PyRun_String\n"
        "run.argtypes, run.restype = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object], "
        "ctypes.py_object\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n"
        "    with user_errors():\n"
        "        run(b'import signal, time\\nsignal.raise_signal(signal.SIGINT)\\ntime.sleep(5)', 257, {}, {})\n"
        "except Exit as e:\n"
        "    print(e.message, file=sys.stderr)\n"
        "    sys.exit(e.code)\n")
    proc = subprocess.run([sys.executable, "-m", "ctrl_c_in_pyrun"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 130, f"exit {proc.returncode}"


def test_a_missing_extra_names_its_install_line_and_other_errors_pass_through():
    from invoke.exceptions import Exit

    from edgecompress.cli.glue import user_errors
    from edgecompress.errors import EdgeCompressError

    for raised, code, needle in [(ModuleNotFoundError("No module named 'fabric'", name="fabric"), 2,
                                  "pip install 'edgecompress[train]'"),
                                 (EdgeCompressError("bad flag"), 2, "error: bad flag")]:
        try:
            with user_errors():
                raise raised
        except Exit as e:
            assert e.code == code and needle in str(e.message)
    try:
        with user_errors():
            raise ModuleNotFoundError("No module named 'nothere'", name="nothere")
    except ModuleNotFoundError as e:
        assert e.name == "nothere"


@pytest.mark.parametrize("name, config", [("distill", "DistillConfig"), ("prune", "PruneConfig"),
                                          ("factorize", "FactorizeConfig")])
def test_a_stage_tasks_help_says_the_defaults_its_config_has(name, config):
    """`invoke --help distill` once said temperature 4 and alpha 0.1 where DistillConfig has 2.0 and 0.5: the
    stage tasks' help now takes each default from the config."""
    import dataclasses
    import re

    from edgecompress.cli.invocations import ns
    from edgecompress.techniques import configs

    defaults = {f.name: f.default for f in dataclasses.fields(getattr(configs, config))}
    said = {flag: re.search(r"\(default: ([^)]+)\)", text) for flag, text in ns.tasks[name].help.items()}
    checked = 0
    for flag, m in said.items():
        if m and flag in defaults:
            value = defaults[flag]
            assert m.group(1) == (f"{value:g}" if isinstance(value, float) else str(value)), (flag, m.group(1), value)
            checked += 1
    assert checked >= 2


def test_every_tasks_help_says_the_default_its_signature_has():
    """Each "(default: X)" of every task's help names the default its function has (text may follow: "fashion-mnist,
    Debian's full copy"); a number says the same number."""
    import re

    from edgecompress.cli.invocations import ns

    checked = 0
    for name, t in ns.tasks.items():
        sig = inspect.signature(t.body)
        for flag, text in (t.help or {}).items():
            m = re.search(r"\(default: ([^);]+)", text)
            default = sig.parameters[flag].default if flag in sig.parameters else None
            if not m or default is None or default is inspect.Parameter.empty or isinstance(default, bool):
                continue
            said = m.group(1).strip().rstrip(".")
            if isinstance(default, (int, float)):
                assert float(said) == float(default), (name, flag, said, default)
            else:
                assert said.rstrip("/").startswith(str(default)), (name, flag, said, default)
            checked += 1
    assert checked >= 30, checked


def test_the_docs_group_every_build_edge_option_once(root):
    """`invoke --help build-edge` points to a page that groups its options; every flag is in one group."""
    import re

    from edgecompress.cli.invocations import ns

    t = ns.tasks["build-edge"]
    page = (root / "docs" / "tasks.md").read_text().split("## build-edge options, by group", 1)[1].split("\n## ")[0]
    listed = re.findall(r"`--([a-z\-]+)`", page)
    flags = [p.replace("_", "-") for p in list(inspect.signature(t.body).parameters)[1:]]
    assert sorted(listed) == sorted(flags)  # each once, none missing, none stale
    assert "docs/tasks.md#build-edge-options-by-group" in t.__doc__
