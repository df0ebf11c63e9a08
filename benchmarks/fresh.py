"""A finished closed-loop build judged on data it never saw: the file each selection rule picks, and every file.

FRESH is an .npz with `x_test`, `y_test` (and optionally `groups_test`) made by the same generator with new
groups (`benchmarks/sensors.py` writes `fresh.npz`; `bundled_fresh` writes the bundled default's), or an image
folder with one sub-folder per class (the image examples' `fresh/`). `check` reads BUILD/report.json, asks
`selection.select` which file the confirmed rule and the judged rule (`--margin-se 1`) choose from the same
report, scores the model's float32 file and the rules' files (or, with `all_files`, every `.tflite` of the build)
on FRESH with the LiteRT interpreter, and returns each rule's file: gzip and file bytes, its judged and confirmed
drops, and its drop on FRESH, in points; how many groups FRESH names; and how many files of the build lose more
than the limit on FRESH. `scripts/fresh_check.py` and `invoke
benchmark-byo --results` write it as a results file.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def fresh_data_of(example_dir) -> Path:
    """The fresh data an example maker wrote beside its model: `fresh.npz` or the `fresh/` image folder."""
    folder = Path(example_dir)
    return folder / "fresh.npz" if (folder / "fresh.npz").exists() else folder / "fresh"


def bundled_fresh(out) -> Path:
    """Fresh data for the bundled default: the Fashion-MNIST test images (Debian's `dataset-fashion-mnist`) that
    the bundled subset does not hold, compared byte for byte, written to `out` as an .npz `check` reads.
    Fashion-MNIST has no groups, so each image counts as its own."""
    import hashlib

    from edgecompress.data.images import DEBIAN_FASHION_MNIST, find_idx, read_idx
    from edgecompress.data.loading import BUNDLED_PATH
    from edgecompress.errors import EdgeCompressError

    x_path, y_path = find_idx(DEBIAN_FASHION_MNIST, "x_test"), find_idx(DEBIAN_FASHION_MNIST, "y_test")
    if x_path is None or y_path is None:
        raise EdgeCompressError(f"No Fashion-MNIST test split in {DEBIAN_FASHION_MNIST}: the bundled default's "
                                "fresh images are the ones its subset lacks; apt-get install dataset-fashion-mnist.")
    x, y = read_idx(x_path), read_idx(y_path)
    with np.load(BUNDLED_PATH) as b:
        held = {hashlib.sha1(a.tobytes()).digest() for key in ("x_train", "x_test") for a in b[key]}
    keep = np.array([hashlib.sha1(a.tobytes()).digest() not in held for a in x])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_test=x[keep], y_test=y[keep])
    logger.info("%d of %d Fashion-MNIST test images are not in the bundled subset: %s", keep.sum(), len(x), out)
    return out


def _fresh(path: Path, spec):
    """(x, y, groups) of the fresh data; groups is how many it holds (`groups_test` of an .npz, or the groups
    of an image folder's file names), or None when it names none."""
    from edgecompress.data.loading import load_dataset
    from edgecompress.data.preprocessing import to_model_input

    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x_test"], f["y_test"]
            g = f["groups_test"] if "groups_test" in f.files else None
        x = x.astype(np.float32) if not hasattr(spec, "height") else to_model_input(x, spec)
        return x, y.astype(np.int64), None if g is None else int(len(np.unique(g)))
    ds = load_dataset(str(path), spec, test_fraction=0.5)
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)])
    g = (None if ds.groups_train is None or ds.groups_test is None
         else int(len(np.unique(np.concatenate([ds.groups_train, ds.groups_test])))))
    return to_model_input(x, spec), np.concatenate([ds.y_train, ds.y_test]), g


def check(build, fresh, limit: float = 1.0, all_files: bool = False) -> dict:
    """The rules' picks of `build` (a build-edge output folder) and their drops on `fresh`, as a results file's
    body (without the stamp)."""
    from edgecompress.builder.selection import Constraints, GateError, select
    from edgecompress.configs import ModelSpec
    from edgecompress.lite.evaluation import evaluate_tflite

    build, fresh = Path(build), Path(fresh)
    report = json.loads((build / "report.json").read_text())
    spec = ModelSpec.from_dict(json.loads((build / "model_spec.json").read_text()))
    x, y, fresh_groups = _fresh(fresh, spec.preprocessing)
    arts = {a["name"]: a for a in report["artifacts"]}
    base = arts[report["baseline"]]
    picks = {}
    for rule in ("confirmed", "judged"):
        try:
            picks[rule] = select(copy.deepcopy(report), Constraints(max_accuracy_drop=limit, selection=rule))["name"]
        except GateError as e:
            picks[rule] = None
            logger.info("%s: no file (%s)", rule, str(e).splitlines()[0])
    scored = {}

    def score(name):
        if name not in scored:
            path = Path(arts[name]["path"])  # as the report says it: from where the build ran, or in the build
            path = path if path.exists() else build / path
            scored[name] = evaluate_tflite(path, x, y, task=spec.task)[0]["accuracy"]
        return scored[name]

    for name in (list(arts) if all_files else [report["baseline"], *{n for n in picks.values() if n}]):
        score(name)
    b = score(report["baseline"])
    out = {"cpu": report.get("host", {}).get("cpu"), "build_seconds": report.get("seconds"),
           "search_stopped": (report.get("search") or {}).get("stopped"),
           "trials": len((report.get("search") or {}).get("candidates", [])),
           "build": str(build), "fresh": str(fresh), "fresh_count": int(len(y)),
           "fresh_groups": fresh_groups, "limit": limit,
           "baseline": report["baseline"], "baseline_fresh": b, "rules": {}}
    for rule, name in picks.items():
        if name is None:
            out["rules"][rule] = None
            continue
        a = arts[name]
        out["rules"][rule] = {"file": name, "gzip_bytes": a["gzip_bytes"], "file_bytes": a["size_bytes"],
                              "judged_drop": round(100 * (base.get("val_accuracy", base["accuracy"])
                                                          - a.get("val_accuracy", a["accuracy"])), 3),
                              "confirmed_drop": round(100 * (base["accuracy"] - a["accuracy"]), 3),
                              "fresh_drop": round(100 * (b - score(name)), 3)}
    if all_files:
        drops = [100 * (b - v) for n, v in scored.items() if n != report["baseline"]]
        out["all"] = {"files": len(drops), "over_limit_on_fresh": int(sum(d > limit for d in drops))}
    return out


def say(out: dict) -> list[str]:
    """The lines a person reads of `check`'s result."""
    lines = [f"{rule:9s} no file" if row is None else
             f"{rule:9s} {row['file']}: {row['gzip_bytes']:,} gzip bytes ({row['file_bytes']:,} file bytes); drop "
             f"judged {row['judged_drop']:+.2f}, confirmation {row['confirmed_drop']:+.2f}, fresh "
             f"{row['fresh_drop']:+.2f} points (negative is better)" for rule, row in out["rules"].items()]
    if "all" in out:
        lines.append(f"{out['all']['over_limit_on_fresh']} of {out['all']['files']} files lose more than "
                     f"{out['limit']:g} on the fresh data")
    return lines
