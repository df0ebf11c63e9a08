#!/usr/bin/env python
"""Judge a finished closed-loop build on data it never saw: the file each selection rule picks, and every file.

    python scripts/fresh_check.py BUILD FRESH [--json results.json] [--limit 1.0]

FRESH is an .npz with `x_test`, `y_test` (and optionally `groups_test`) made by the same generator with new
groups (`benchmarks/sensors.py` writes `fresh.npz`), or an image folder with one sub-folder per class. The
script reads BUILD/report.json, asks `selection.select` which file the confirmed rule and the judged rule
(`--margin-se 1`) choose from the same report, scores the model's float32 file and every `.tflite` of the build
on FRESH with the LiteRT interpreter, and prints (and with --json writes) each rule's file: gzip and file
bytes, its judged and confirmed drops, and its drop on FRESH, in points; plus how many files of the build lose
more than the limit on FRESH.
"""

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np


def _fresh(path: Path, spec):
    from edgecompress.data.loading import load_dataset
    from edgecompress.data.preprocessing import to_model_input

    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x_test"], f["y_test"]
        return (x.astype(np.float32) if not hasattr(spec, "height") else to_model_input(x, spec)), y.astype(np.int64)
    ds = load_dataset(str(path), spec, test_fraction=0.5)
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)])
    return to_model_input(x, spec), np.concatenate([ds.y_train, ds.y_test])


def main(argv=None):
    from edgecompress.builder.selection import Constraints, GateError, select
    from edgecompress.configs import ModelSpec
    from edgecompress.lite.evaluation import evaluate_tflite

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("build", type=Path)
    p.add_argument("fresh", type=Path)
    p.add_argument("--limit", type=float, default=1.0)
    p.add_argument("--json", type=Path)
    p.add_argument("--all", action="store_true", help="score every file of the build, not only the rules' picks")
    args = p.parse_args(argv)
    report = json.loads((args.build / "report.json").read_text())
    spec = ModelSpec.from_dict(json.loads((args.build / "model_spec.json").read_text()))
    x, y = _fresh(args.fresh, spec.preprocessing)
    arts = {a["name"]: a for a in report["artifacts"]}
    base = arts[report["baseline"]]
    picks = {}
    for rule in ("confirmed", "judged"):
        try:
            picks[rule] = select(copy.deepcopy(report), Constraints(max_accuracy_drop=args.limit, selection=rule))["name"]
        except GateError as e:
            picks[rule] = None
            print(f"{rule}: no file ({str(e).splitlines()[0]})")
    scored = {}
    names = list(arts) if args.all else [report["baseline"], *{n for n in picks.values() if n}]

    def score(name):
        if name not in scored:
            scored[name] = evaluate_tflite(arts[name]["path"], x, y, task=spec.task)[0]["accuracy"]
        return scored[name]

    for name in names:
        score(name)
    b = score(report["baseline"])
    from results_file import stamp

    out = {**stamp("python scripts/fresh_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   cpu=report.get("host", {}).get("cpu")),
           "build_seconds": report.get("seconds"), "search_stopped": (report.get("search") or {}).get("stopped"),
           "trials": len((report.get("search") or {}).get("candidates", [])),
           "build": str(args.build), "fresh": str(args.fresh), "fresh_count": int(len(y)), "limit": args.limit,
           "baseline": report["baseline"], "baseline_fresh": b, "rules": {}}
    for rule, name in picks.items():
        if name is None:
            out["rules"][rule] = None
            continue
        a = arts[name]
        row = {"file": name, "gzip_bytes": a["gzip_bytes"], "file_bytes": a["size_bytes"],
               "judged_drop": round(100 * (base.get("val_accuracy", base["accuracy"])
                                           - a.get("val_accuracy", a["accuracy"])), 3),
               "confirmed_drop": round(100 * (base["accuracy"] - a["accuracy"]), 3),
               "fresh_drop": round(100 * (b - score(name)), 3)}
        out["rules"][rule] = row
        print(f"{rule:9s} {name}: {a['gzip_bytes']:,} gzip bytes ({a['size_bytes']:,} file bytes); drop judged "
              f"{row['judged_drop']:+.2f}, confirmation {row['confirmed_drop']:+.2f}, fresh {row['fresh_drop']:+.2f} "
              f"points (negative is better)")
    if args.all:
        drops = [100 * (b - v) for n, v in scored.items() if n != report["baseline"]]
        out["all"] = {"files": len(drops), "over_limit_on_fresh": int(sum(d > args.limit for d in drops))}
        print(f"{out['all']['over_limit_on_fresh']} of {len(drops)} files lose more than {args.limit:g} on FRESH")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
