#!/usr/bin/env python
"""Write the bundled default's fresh images: Fashion-MNIST test images its subset does not hold (an .npz).

    python scripts/make_bundled_fresh.py build/bundled-fresh.npz
    python scripts/fresh_check.py build/bundled-loop build/bundled-fresh.npz --all --json results.json
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

from benchmarks.fresh import bundled_fresh
from edgecompress.errors import EdgeCompressError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bundled_fresh(args.out)
    except EdgeCompressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
