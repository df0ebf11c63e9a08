"""The `edgecompress` command (and `python -m edgecompress`): the Invoke tasks as a program of their own.

Same tasks, flags and defaults as `invoke TASK` in a checkout. In the device
install (numpy and a runtime, no Invoke) it says which extra to install.
"""

import sys

from edgecompress.errors import EXIT_USAGE


def main(argv=None) -> int:
    try:
        from invoke import Collection, Program
    except ImportError:
        print("error: the edgecompress command needs the train extra: pip install 'edgecompress[train]'. "
              "On a device, `python -m edgecompress.lite.latency model.tflite` needs only numpy and a runtime "
              "(pip install 'edgecompress[litert]').", file=sys.stderr)
        return EXIT_USAGE
    from edgecompress import __version__
    from edgecompress.cli import invocations

    program = Program(namespace=Collection.from_module(invocations), version=__version__, name="edgecompress",
                      binary="edgecompress")
    program.run(["edgecompress", *argv] if argv is not None else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
