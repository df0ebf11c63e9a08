#!/usr/bin/env python
"""Write the int4 measurements the docs quote from finished builds of `benchmarks/int4-recipe.json`.

    invoke build-edge --model M --data D --recipe benchmarks/int4-recipe.json --out build/int4-NAME
    python scripts/int4_results.py build/int4-sensor:sensor-people build/int4-letters:resnet-letters \\
        --json docs/results/int4.json

For each build (BUILD:LABEL) it reads report.json and keeps, per file: the scheme, file bytes, gzip bytes,
top-1 on the build's test split, agreement with the Keras model, host p50 latency (this machine's CPU, 1 thread,
XNNPACK) and TFLM's view; and each int4 file's ratio to the int8 file in file bytes and its top-1 against int8's.
"""

import argparse
import json
import sys
from pathlib import Path

from results_file import stamp, write

KEEP = ("quantization", "size_bytes", "gzip_bytes", "accuracy", "agreement", "tflm")


def rows(report: dict) -> dict:
    arts = {a["name"]: a for a in report["artifacts"]}
    out = {}
    for name, a in arts.items():
        row = {k: a.get(k) for k in KEEP}
        row["p50_ms"] = a.get("latency_ms", {}).get("p50")
        if name.startswith("int4") and "int8" in arts:
            row["x_smaller_than_int8_file"] = round(arts["int8"]["size_bytes"] / a["size_bytes"], 3)
            row["points_from_int8"] = round(100 * (a["accuracy"] - arts["int8"]["accuracy"]), 2)
        out[name] = row
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="BUILD:LABEL, a build folder of the int4 recipe and its name")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    reports = {spec: json.loads((Path(spec.partition(":")[0]) / "report.json").read_text()) for spec in args.builds}
    cpu = next(iter(reports.values())).get("host", {}).get("cpu")
    results = {**stamp("python scripts/int4_results.py " + " ".join(args.builds)
                       + (f" --json {args.json}" if args.json else ""), cpu=cpu), "builds": {}}
    for spec in args.builds:
        build, _, label = spec.partition(":")
        report = reports[spec]
        results["builds"][label or Path(build).name] = {
            "build": build, "recipe": (report.get("recipe") or {}).get("name"),
            "stages": [st["stage"] for st in (report.get("recipe") or {}).get("stages", [])],
            "test_count": report.get("dataset", {}).get("count"),
            "size_measure": report.get("size_measure"), "files": rows(report)}
    write(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
