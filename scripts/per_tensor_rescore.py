"""Each stage model a closed-loop build left in its cache, converted again per channel and per tensor (`int8`
and `int8_per_tensor`; `--dynamic`: `dynamic` and `dynamic_per_tensor` too), scored on the build's own
judging and reporting halves: how much one scale per kernel saves, and costs.

    python scripts/per_tensor_rescore.py --model build/tiny-kws/model.keras --data build/tiny-kws/data.npz \
        --out build/tiny-kws/out [--only cluster]

The same data, calibration examples and split the build used (`prepare_model`, `calibration_pixels`,
`Dataset.held_out`); rows, smallest per-tensor file first, in `OUT/per_tensor_rescore.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="the build's folder (its .cache holds the stage models)")
    p.add_argument("--only", default="", help="only stage files whose name holds this (e.g. cluster)")
    p.add_argument("--dynamic", action="store_true", help="dynamic range too, both ways")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from edgecompress.builder.measure import convert_and_measure
    from edgecompress.builder.options import BuildOptions
    from edgecompress.builder.steps import calibration_pixels, prepare_model
    from edgecompress.quantize import schemes
    from edgecompress.recipes.cache import StageCache

    out = Path(args.out)
    cache = StageCache(out / ".cache")
    options = BuildOptions(model=args.model, data=args.data, out_dir=str(out))
    _, dataset, _, _ = prepare_model(options, cache)
    pixels, _ = calibration_pixels(options, dataset, Path(tempfile.mkdtemp()))
    judge, report, _ = dataset.held_out(seed=options.seed)
    names = ("int8", "int8_per_tensor") + (("dynamic", "dynamic_per_tensor") if args.dynamic else ())
    variants = [schemes.conversion(n) for n in names]
    rows = []
    for path in sorted((out / ".cache").glob("stage*.keras")):
        if args.only not in path.name:
            continue
        name, _, key = path.stem.rpartition("-")
        model = cache.get_model(name, key)
        row = {"model": path.name}
        prefix = f"rescore-{key}_"  # one conversion per variant: its file is cached by name, measured per half
        for half, ds in (("judged", judge), ("reported", report)):
            arts, _ = convert_and_measure(model, variants, pixels, ds, cache, f"rescore-{key}", prefix=prefix)
            for a in arts:
                row.setdefault(a.name[len(prefix):], {"bytes": a.size_bytes, "gzip_bytes": a.gzip_bytes})[half] = \
                    a.accuracy
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: r.get("int8_per_tensor", {}).get("gzip_bytes", 1 << 40))
    (out / "per_tensor_rescore.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
