"""The exceptions users can act on, each with the exit code it means.

One table, the same in every task and in `python -m edgecompress.lite.latency`:

| code | meaning |
|---|---|
| 0 | done |
| 2 | bad usage or input: a flag, path, file, model or dataset (`EdgeCompressError`) |
| 3 | a quality gate was not met (`builder.selection.GateError`) |
| 4 | partial failure: some artifacts, files or hosts failed; the rest was written (`PartialFailure`) |
| 130 | interrupted (Ctrl-C): finished files kept, partial ones discarded |
"""

import threading

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_GATE = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130


class EdgeCompressError(ValueError):
    """A problem with the user's input: a bad path, file, argument or model.

    The message always names the argument or file, what was received and
    what to do. Tasks turn it into a one-line message and `exit_code`
    instead of a traceback.
    """

    exit_code = EXIT_USAGE


class PartialFailure(EdgeCompressError):
    """Some of the work failed (an artifact, a file on a device, a host); the rest was written."""

    exit_code = EXIT_PARTIAL


class NotApplicable(EdgeCompressError):
    """A stage has nothing to work on in this model (no layer large enough to cluster, say): in a fixed recipe
    a usage error (exit 2); in the closed loop that branch ends, and the others go on."""


# A Ctrl-C, recorded as it arrives (`cli.glue.user_errors` installs the handler that sets it). The
# KeyboardInterrupt it raises lands wherever the main thread is, and a library on the way up may catch it
# and carry on; the flag still says the user asked to stop.
INTERRUPTED = threading.Event()


def stop_if_interrupted() -> None:
    """Raises KeyboardInterrupt when a Ctrl-C arrived that did not stop the work where it landed: called at
    each step and stage, so the build stops at the next one (finished artifacts kept, exit 130)."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def command_result(call):
    """Runs `call()` for a TF-free command line: (its result, None), or (None, the exit code) once an
    `EdgeCompressError` or an interruption has been said on stderr."""
    import sys

    try:
        return call(), None
    except EdgeCompressError as e:
        print(f"error: {e}", file=sys.stderr)
        return None, e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return None, EXIT_INTERRUPTED
