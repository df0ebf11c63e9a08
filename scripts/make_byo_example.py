#!/usr/bin/env python
"""Make the "bring your own model" example: colourised 40x40 Fashion-MNIST folders and a
MobileNetV2-alpha0.35 transfer model (leading Rescaling, nested backbone) saved by Keras 3 and tf-keras.

    python scripts/make_byo_example.py build/byo            # the defaults behind the README's numbers
    python scripts/make_byo_example.py /tmp/x --train 500 --test 200 --epochs 1 --min-accuracy 0

Needs Debian's `dataset-fashion-mnist`. See benchmarks/byo_example.py.
"""

import argparse
import dataclasses
import logging
import sys

sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))  # benchmarks/

from benchmarks.byo_example import ExampleConfig, make_example
from edgecompress.errors import EdgeCompressError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    for f in dataclasses.fields(ExampleConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = ExampleConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ExampleConfig)})
    try:
        summary = make_example(args.out, config)
    except EdgeCompressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: top-1 {100 * summary['keras3_top1']:.2f}%, {summary['params']:,} parameters, "
          f"trained in {summary['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
