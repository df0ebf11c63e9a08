#!/usr/bin/env python
"""Judge a finished closed-loop build on data it never saw: the file each selection rule picks, and every file.

    python scripts/fresh_check.py BUILD FRESH [--json results.json] [--limit 1.0] [--all]

What it measures is `benchmarks/fresh.py`'s `check`; `invoke benchmark-byo --results FILE` does the same after
the build it runs.
"""

import argparse
import sys
from pathlib import Path

from results_file import stamp, write

from benchmarks.fresh import check, say


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("build", type=Path)
    p.add_argument("fresh", type=Path)
    p.add_argument("--limit", type=float, default=1.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--all", action="store_true", help="score every file of the build, not only the rules' picks")
    args = p.parse_args(argv)
    out = check(args.build, args.fresh, args.limit, args.all)
    for line in say(out):
        print(line, file=sys.stderr)
    write({**stamp("python scripts/fresh_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   cpu=out.pop("cpu")), **out}, args.json, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
