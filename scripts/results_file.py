"""The scripts' way to `benchmarks/results.py`, where a results file's stamp and writing live: a script runs
with `scripts/` on its path, not the checkout, so this puts the checkout there first.

    from results_file import stamp, write
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import cpu_name, git_commit, stamp, write  # noqa: E402

__all__ = ["cpu_name", "git_commit", "stamp", "write"]
