"""Invoke's entry in a checkout (`invoke build-edge ...`).

The tasks live in the package, `edgecompress/cli/invocations.py`, so that an install
has them too: `pip install "edgecompress[train]"` gives the `edgecompress`
command with the same tasks and flags (`edgecompress build-edge ...`). A
checkout adds the benchmark tasks (`benchmarks/invocations.py`), which make the
examples and measurements the docs quote and do not ship in the wheel.
"""

from invoke import Collection

from benchmarks.invocations import CHECKOUT_TASKS
from edgecompress.cli import invocations

ns = Collection(*invocations.ns.tasks.values(), *CHECKOUT_TASKS)
ns.configure(invocations.ns.configuration())
