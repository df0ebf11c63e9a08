#!/usr/bin/env python
"""Write `docs/results.md`, the measurements page generated from the results files in `docs/results/`.

    python scripts/write_results_page.py          # writes docs/results.md
    python scripts/write_results_page.py --check  # exits 1 when docs/results.md is not what the files give

Each results file is rendered by the function its shape names (`RENDERERS`): what ran, with which command, at
which commit, on which CPU, and its numbers as a table. Nothing on the page is typed by hand; `invoke docs`
runs this first, and `tests/test_docs.py` checks that the committed page is current.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
PAGE = ROOT / "docs" / "results.md"


def _cell(v) -> str:
    """A table cell: a count with thousands separators, anything else as it is."""
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in r) + " |" for r in rows), ""]


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _provenance(d) -> list[str]:
    said = [f"`{d['command']}`" if d.get("command") else None,
            f"commit {d['commit']}" if d.get("commit") else None, f"CPU: {d['cpu']}" if d.get("cpu") else None]
    return ["Made by " + ", ".join(s for s in said if s) + "." + (f" {d['note'][0].upper()}{d['note'][1:]}."
                                                                  if d.get("note") else ""), ""]


def render_int4(d) -> list[str]:
    out = ["int4 weights beside int8 (top-1 on the build's test split; p50 on this CPU, 1 thread, XNNPACK).", ""] \
        + _provenance(d)
    for name, b in d["builds"].items():
        how = f"recipe `{b['recipe']}`: " + (" then ".join(b["stages"]) or "no stages") + ", " if b.get("recipe") else ""
        out += [f"**{name}** (`{b['build']}`, {how}{b['test_count']} test examples):", ""]
        rows = [[f, r["size_bytes"], r["gzip_bytes"], _pct(r["accuracy"]), f"{r['p50_ms']:.3f}",
                 r.get("x_smaller_than_int8_file", "-"), r.get("points_from_int8", "-"),
                 r["tflm"]["arena_bytes"] if r["tflm"]["runs"] else "refused: " + r["tflm"]["refused"].split(":")[0]]
                for f, r in b["files"].items()]
        out += _table(["file", "file bytes", "gzip bytes", "top-1", "p50 ms", "x smaller than int8 (file)",
                       "points from int8", "TFLM arena bytes"], rows)
    return out


def render_reference(d) -> list[str]:
    out = [f"MLPerf Tiny's reference int8 files ({d['source']} at {d['source_commit']}), measured as a build "
           "measures its own.", ""] + _provenance(d)
    rows = [[task, f"`{Path(r['file']).name}`", r["file_bytes"], r["gzip_bytes"],
             r["tflm"]["arena_bytes"] if r["tflm"]["runs"] else r["tflm"]["refused"]]
            for task, r in d["references"].items()]
    return out + _table(["task", "file", "file bytes", "gzip bytes", "TFLM arena bytes"], rows)


def render_fresh(d) -> list[str]:
    groups = d.get("fresh_groups", "new")  # a count; None: the data names none; absent (older files): new groups
    if groups is None:
        where = "the fresh data"
        whom = f"{d['fresh_count']} examples the build never saw (the data names no groups: each counts as its own)"
    else:
        where = "new groups"
        whom = f"{d['fresh_count']} examples from {'' if groups == 'new' else f'{groups} '}groups the build never saw"
    out = [f"A closed loop's selection judged on {whom} (`{d['fresh']}`), limit {d['limit']} point; {d['trials']} "
           f"trials; the model's own file scores {_pct(d['baseline_fresh'])} there.", ""] + _provenance(d)
    rows = [[rule, f"`{r['file']}`", r["file_bytes"], r["gzip_bytes"], r["judged_drop"], r["confirmed_drop"],
             r["fresh_drop"]] for rule, r in d["rules"].items()]
    out += _table(["rule", "file", "file bytes", "gzip bytes", "judged drop", "confirmed drop", f"drop on {where}"],
                  rows)
    return out + [f"Of the build's {d['all']['files']} files, {d['all']['over_limit_on_fresh']} lose more than "
                  f"the limit on {where}.", ""]


def render_simulation(d) -> list[str]:
    out = [re.sub(r"\((tests/[^)]+)\)", r"(`\1`)", d["what"]) + ".", ""]
    rows = [[r["scenario"], r["rule"], r["runs"], r["false_promises"], f"{r['false_promise_rate']:.3f}",
             r.get("kept_and_smaller", "-")] for r in d["rows"]]
    return out + _table(["scenario", "rule", "runs", "false promises", "rate", "kept and smaller"], rows)


def render_tiny(d) -> list[str]:
    out = ["MLPerf Tiny's tasks on offline stand-ins, the closed loop for a target, beside the reference int8 files "
           "(measured as a build measures its own). Each row is one run: its command, commit and CPU below.", ""]
    def metric(r, v):
        return _pct(v) if r["metric"] == "top-1" else "-" if v is None else f"{r['metric']} {v:.4f}"

    rows = [[task, r["target"], f"`{r['selected']}`", metric(r, r["selected_metric"]), metric(r, r["baseline_metric"]),
             r["bytes"], r["gzip_bytes"], r["arena_bytes"], r["reference_bytes"],
             r.get("reference_stripped_bytes") or "-", r["reference_arena_bytes"],
             "yes" if r.get("names_stripped") else "no", "yes" if r["quarter_of_reference_file"] else "no",
             "-" if r.get("quarter_of_reference_stripped") is None else
             "yes" if r["quarter_of_reference_stripped"] else "no",
             "yes" if r["arena_within_reference"] else "no",
             f"{r['seconds'] / 60:.0f} min", r["commit"]] for task, r in d["tasks"].items()]
    return out + _table(["task", "target", "selected", "reported", "model's file", "file bytes", "gzip bytes",
                         "TFLM arena", "reference file bytes", "reference without names", "reference arena",
                         "names stripped", "<= 1/4 file", "<= 1/4 without names", "arena <= its",
                         "wall", "commit"], rows) + [
        f"- **{task}**: `{r['command']}` on {r['cpu']}" + (f". {r['note']}." if r.get("note") else ".")
        for task, r in d["tasks"].items()] + [""]


def render_sparse(d) -> list[str]:
    out = [f"The flatbuffer's sparse tensor encoding on a pruned model (`{d['model']}`, "
           f"{100 * d['weight_sparsity']:.1f}% of its weights zero): each scheme dense and sparse, and where each "
           f"file runs, its outputs against the dense file's on {d['inputs']} seeded inputs.", ""] + _provenance(d)
    rows = [[name, f["file_bytes"], f["gzip_bytes"], f["densify_ops"],
             f["tflm"]["arena_bytes"] if f["tflm"]["runs"] else "refused: " + f["tflm"]["refused"].split(":")[0]]
            for name, f in d["sparse_files"].items()]
    out += _table(["file", "file bytes", "gzip bytes", "DENSIFY ops", "TFLM arena bytes"], rows)
    rows = [[where, scheme, "yes" if r["sparse_runs"] else "no" if r["dense_runs"] else "neither runs",
             "-" if "max_abs_difference" not in r else f"{r['max_abs_difference']:g} / {100 * r['same_top1']:.0f}%",
             r["refused"] or ""]
            for where, by_scheme in d["runs_on"].items() for scheme, r in by_scheme.items()]
    return out + _table(["runtime", "scheme", "sparse file runs", "largest output difference / same top-1",
                         "refused"], rows) + ([f"Emulated aarch64: {d['aarch64_note']}.", ""] if d.get("aarch64_note") else [])


RENDERERS = {  # a results file's shape (a key only it has) -> its renderer
    "tasks": render_tiny,
    "builds": render_int4,
    "references": render_reference,
    "rules": render_fresh,
    "rows": render_simulation,
    "sparse_files": render_sparse,
}


def page() -> str:
    lines = ["# Results files", "",
             "Generated by `python scripts/write_results_page.py` from the files in `docs/results/`; every "
             "table below is one file's numbers, with the command that measured them.", ""]
    for path in sorted(RESULTS.glob("*.json")):
        d = json.loads(path.read_text())
        kind = next((k for k in RENDERERS if k in d), None)
        if kind is None:
            raise SystemExit(f"{path}: no renderer knows this results file; add one to RENDERERS.")
        lines += [f"## {path.stem}", "", f"[`docs/results/{path.name}`](results/{path.name})", ""]
        lines += RENDERERS[kind](d)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/results.md is stale")
    args = ap.parse_args(argv)
    text = page()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print("docs/results.md is stale: run python scripts/write_results_page.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
