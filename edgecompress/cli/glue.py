"""Glue between Invoke tasks and the package: logging, errors, printing.

Errors become one line on stderr and their exit code (the table in
`edgecompress.errors`), never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings

from edgecompress.errors import EXIT_INTERRUPTED, EXIT_USAGE, INTERRUPTED, EdgeCompressError


def setup_logging(verbose: bool = True) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# Modules a task may need that the device install (numpy and a runtime) does not have.
_EXTRA_OF = {"tensorflow": "train", "tf_keras": "train", "tensorflow_model_optimization": "train", "keras": "train",
             "fabric": "train", "paramiko": "train", "matplotlib": "train", "h5py": "train", "PIL": "images"}


def _on_sigint(signum, frame):
    INTERRUPTED.set()
    raise KeyboardInterrupt


def _forget_keyboard_interrupts_seen_by_pyrun() -> None:
    """Lets a handled Ctrl-C end the process with exit 130, not by SIGINT.

    CPython (3.8 to 3.11) marks a KeyboardInterrupt that leaves code run through `PyRun_*` as unhandled,
    even when a caller catches it later, and `python -m` then ends the process by SIGINT whatever exit
    code it was given. pybind11's `exec` runs code that way, and a Ctrl-C landing in TensorFlow's import
    made `python -m invoke build-edge` die by signal (-2) after printing "interrupted" (once in about 40
    Ctrl-Cs on a loaded machine). Newer CPythons keep the mark where ctypes cannot
    reach it; there nothing is done.
    """
    import ctypes

    try:
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ValueError, AttributeError):  # not this CPython's symbol
        pass


@contextlib.contextmanager
def user_errors():
    """Turns `EdgeCompressError` into `invoke.Exit` with its exit code, Ctrl-C into 130.

    A Ctrl-C is recorded as it arrives, so that it stays exit 130 whatever it became on its way up: the
    KeyboardInterrupt raised inside TensorFlow or a tf.data generator can come out as another exception. A
    SIGINT that was ignored when the task started (a job put in the background by a non-interactive
    shell, or nohup) stays ignored.
    """
    from invoke.exceptions import Exit

    previous = None
    INTERRUPTED.clear()
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous = signal.signal(signal.SIGINT, _on_sigint)
    interrupted = Exit("interrupted: finished artifacts were kept; partial files were discarded.",
                       code=EXIT_INTERRUPTED)
    try:
        yield
        if INTERRUPTED.is_set():  # caught on its way up by a library, after the last step's check
            _forget_keyboard_interrupts_seen_by_pyrun()
            raise interrupted
    except Exit:
        raise
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) or INTERRUPTED.is_set():  # a Ctrl-C, whatever it became on its way
            _forget_keyboard_interrupts_seen_by_pyrun()
            raise interrupted from None
        if isinstance(e, EdgeCompressError):
            raise Exit(f"error: {e}", code=getattr(e, "exit_code", EXIT_USAGE)) from None
        extra = _EXTRA_OF.get((e.name or "").split(".")[0]) if isinstance(e, ModuleNotFoundError) else None
        if extra is not None:
            raise Exit(f"error: this task needs {e.name}, which this install does not have: "
                       f"pip install 'edgecompress[{extra}]'.", code=EXIT_USAGE) from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def print_report_summary(report: dict, out_dir) -> None:
    """Prints the artifact table and where the report is."""
    from edgecompress.report.write import artifact_table, format_text_table

    print()
    print(format_text_table(artifact_table(report)))
    print()
    print(f"Report: {out_dir}/report.md and {out_dir}/report.json")


def task(*args, **kwargs):
    """`invoke.task` whose automatic short flags never take `-h`.

    Invoke gives each flag the first free letter of its name, and `-h` is
    free at the task level: `--search` would get it, and `invoke build-edge
    -h` would start a search instead of showing help.
    """
    from invoke import Task, task as invoke_task

    class _Task(Task):
        def arg_opts(self, name, default, taken_names):
            return super().arg_opts(name, default, set(taken_names) | {"h"})

    return invoke_task(*args, klass=_Task, **kwargs)
