#!/usr/bin/env python
"""Make one of the example models this project was not tuned on (benchmarks/examples.py), offline and seeded.

    python scripts/make_example.py mnv3-shapes build/byo-mnv3-shapes           # the defaults behind the README
    python scripts/make_example.py resnet-letters /tmp/x --train 300 --test 200 --epochs 1 --min-accuracy 0
    python scripts/make_example.py sensor-people build/byo-sensor-people       # grouped: people, with fresh.npz

`invoke benchmark-byo --example NAME` makes it (once) and builds it with no other flag.
"""

import argparse
import dataclasses
import logging
import sys

sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))  # benchmarks/

from edgecompress.errors import EdgeCompressError
from benchmarks.examples import EXAMPLES


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("example", choices=[n for n, e in EXAMPLES.items() if dataclasses.is_dataclass(e.config)])
    p.add_argument("out")
    fields = {f.name: f for e in EXAMPLES.values() if dataclasses.is_dataclass(e.config)
              for f in dataclasses.fields(e.config)}
    for f in fields.values():
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ex = EXAMPLES[args.example]
    own = {f.name for f in dataclasses.fields(ex.config)}
    given = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if set(given) - own:
        p.error(f"{args.example} takes {sorted(own)}; not {sorted(set(given) - own)}")
    try:
        summary = ex.make(args.out, dataclasses.replace(ex.config, **given))
    except EdgeCompressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: top-1 {100 * summary['keras3_top1']:.2f}%, {summary['params']:,} parameters, "
          f"trained in {summary['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
