"""Invoke's entry in a checkout (`invoke build-edge ...`).

The tasks live in the package, `edgecompress/cli/tasks.py`, so that an install
has them too: `pip install "edgecompress[train]"` gives the `edgecompress`
command with the same tasks and flags (`edgecompress build-edge ...`).
"""

from edgecompress.cli.tasks import ns  # noqa: F401
