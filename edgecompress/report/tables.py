"""The report's tables as rows of strings: artifacts, search candidates, device columns.

Shared by `report.md`, `report.html` and the command line, and imported by
both report writers (never the other way round).
"""

from __future__ import annotations

from pathlib import Path

from edgecompress.lite import tasks
from edgecompress.report import sizes
from edgecompress.lite.latency import device_emulation


def _fmt_kb(n) -> str:
    return f"{n / 1024:,.1f}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def report_task(report: dict):
    """The `lite.tasks.Task` a report measured (its dataset's; a report from before tasks: classification)."""
    return tasks.task((report.get("dataset") or {}).get("task", "classification"))


def metric_columns(report: dict):
    """(column name, format of a value, column name of a difference, format of it) for the report's metric:
    "top-1 %" and points, or "ROC-AUC" and its own units."""
    t = report_task(report)
    if t.as_percent:
        return f"{t.metric} %", _pct, "delta pts", lambda d: f"{100 * d:+.2f}"
    return t.metric, lambda x: "-" if x is None else f"{x:.4f}", "delta", lambda d: f"{d:+.4f}"


def evaluated_on(dataset: dict) -> str:
    """What the report's measures were taken on, as a phrase: "the test split", or a search's own words for its
    reporting split ("the other half of the test split")."""
    split = dataset["split"]
    return split if split.startswith("the ") or split.endswith("split") else f"the {split} split"


def artifact_table(report: dict, only=None) -> list[list[str]]:
    """Rows (with a header) of the artifact table used by md and the CLI: every artifact, or those named in
    `only`, in that order."""
    arts = report["artifacts"]
    base = next((a for a in arts if a["name"] == report.get("baseline")), arts[0] if arts else None)
    if only is not None:
        by_name = {a["name"]: a for a in arts}
        arts = [by_name[n] for n in only if n in by_name]
    metric, fmt, delta_name, fmt_delta = metric_columns(report)
    size = sizes.of_report(report)
    header = ["artifact", "quant", "file KB", "gzip KB", f"x smaller ({size.name})", metric, delta_name, "agree %",
              "p50 ms", "p90 ms", "TFLM arena KB"]
    searched = any("pareto" in a for a in arts)
    if searched:
        header.append("Pareto")
    clustered = any("unique_weights" in a for a in arts)
    if clustered:  # distinct weight values of the largest kernel, read back from the file
        header.append("largest kernel: values/channel (total)")
    rows = [header]
    for a in arts:
        ratio = size.of(base) / size.of(a) if base else 1.0
        delta = a["accuracy"] - base["accuracy"] if base else 0.0
        lat = a.get("latency_ms") or {}
        rows.append([
            a["name"] + (" *" if a["name"] == report.get("selected") else ""),
            a["quantization"], _fmt_kb(a["size_bytes"]), _fmt_kb(a["gzip_bytes"]), f"{ratio:.1f}",
            fmt(a["accuracy"]), fmt_delta(delta), _pct(a.get("agreement")),
            (f"{lat['p50']:.3f}" + (" (reference kernels)" if a.get("kernels") else "")) if "p50" in lat else "-",
            f"{lat['p90']:.3f}" if "p90" in lat else "-", sizes.tflm_cell(a),
        ] + ([", ".join(k for k, on in a.get("pareto", {}).items() if on) or "-"] if searched else [])
          + ([f"{a['unique_weights']['largest_per_channel']} ({a['unique_weights']['largest_per_kernel']})"
              if "largest_per_channel" in a.get("unique_weights", {}) else "-"] if clustered else []))
    return rows


# A stage's one parameter a trial's short description names (`recipe_summary`); the rest are in its recipe file.
SUMMARY_PARAM = {"distill": "width", "prune": "final_sparsity", "cluster": "number_of_clusters", "factorize": "ratio"}


def recipe_summary(recipe: dict) -> str:
    """A search file's recipe in a few words: each stage with its main parameter, then the variant
    ("distill 0.5, prune 0.75, int8_per_tensor")."""
    made = recipe.get("recipe") or {}
    said = [f"{st['stage']} {st.get(SUMMARY_PARAM.get(st['stage'], ''), '')}".strip() for st in made.get("stages", [])]
    return ", ".join([*said, (recipe.get("conversion") or {}).get("name", "")]).strip(", ") or "-"


def trial_file(artifact: dict | None) -> str | None:
    """A search file's short name under `trials/` ("t012"), or None for a file of the build folder."""
    if not artifact:
        return None
    path = Path(artifact.get("path", ""))
    return path.stem if path.parent.name == "trials" else None


def trial_recipe_href(name: str) -> str | None:
    """Where a trial file's recipe is, relative to the build folder (`measure.publish` writes it), or None for
    a file that is not a trial's."""
    return f"trials/{name}.recipe.json" if name[:1] == "t" and name[1:].isdigit() else None


def search_table(report: dict) -> list[list[str]]:
    """One row per search trial: its file's short name (its recipe is `trials/<name>.recipe.json`), the recipe
    in a few words, status (and why), time, and its file's numbers."""
    search = report.get("search")
    if not search:
        return []
    by_name = {a["name"]: a for a in report["artifacts"]}
    metric, fmt, _, _ = metric_columns(report)
    rows = [["trial", "file", "recipe", "status", "seconds", f"judged {metric}", f"reported {metric}", "file KB",
             "gzip KB", "on a front"]]
    for n, c in enumerate(search["candidates"]):
        a = next((by_name[x] for x in c.get("artifacts", []) if x in by_name), None)
        status = c["status"] if c["status"] == "done" else f"{c['status']} ({c.get('reason') or c.get('error')})"
        rows.append([str(c.get("trial", n)), (trial_file(a) or a["name"]) if a else "-",
                     (c.get("rung") + ": " if c.get("rung") else "") + (recipe_summary(a["recipe"]) if a else c["name"]),
                     status, f"{c.get('seconds', 0):.0f}",
                     fmt(a.get("val_accuracy")) if a else "-", fmt(a["accuracy"]) if a else "-",
                     _fmt_kb(a["size_bytes"]) if a else "-", _fmt_kb(a["gzip_bytes"]) if a else "-",
                     ", ".join(k for k, on in a.get("pareto", {}).items() if on) or "-" if a else "-"])
    return rows


def device_metric(acc: dict) -> float:
    """The task's metric a device measured (`lite.latency.accuracy`): its top-1, or another task's "metric"."""
    return acc["top1"] if "top1" in acc else acc["metric"]


def device_table(report: dict) -> list[list[str]]:
    """Per-device columns, one row per artifact: p50 latency, and top-1 and
    agreement with this machine's predictions when measured there.

    An emulated CPU's latency is shown in brackets with "(emulated)" in the
    header: it is not a measurement of any board.
    """
    devices = report.get("devices") or {}
    names = sorted(d for d in devices if "results" in devices[d])
    if not names:
        return []
    with_acc = {d for d in names if any("accuracy" in r for r in devices[d]["results"].values())}
    with_tflm = {d for d in names if any("tflm" in r for r in devices[d]["results"].values())}
    metric, fmt, _, _ = metric_columns(report)
    header = ["artifact"]
    for d in names:
        emulated = device_emulation(devices[d]) is not None
        header.append(f"{d} p50 ms" + (" (emulated)" if emulated else ""))
        if d in with_acc:
            header += [f"{d} {metric}", f"{d} agree %"]
        if d in with_tflm:
            header.append(f"{d} TFLM")
    rows = [header]
    for a in report["artifacts"]:
        row = [a["name"]]
        for d in names:
            r = devices[d].get("results", {}).get(a["name"])
            lat = f"{r['latency_ms']['p50']:.3f}" if r else "-"
            row.append(f"[{lat}]" if r and device_emulation(devices[d]) else lat)
            if d in with_acc:
                acc = (r or {}).get("accuracy")
                row += [fmt(device_metric(acc)), f"{100 * acc['agreement']:.2f}" if "agreement" in acc else "-"] \
                    if acc else ["-", "-"]
            if d in with_tflm:
                row.append(_tflm_device_cell((r or {}).get("tflm")))
        rows.append(row)
    return rows


def _tflm_device_cell(view: dict | None) -> str:
    """A device's TFLM view of one file: its arena and agreement with LiteRT there, or what it refused."""
    if not view:
        return "-"
    if "error" in view:
        return "not measured"
    if not view["runs"]:
        return "refused: " + (view.get("refused") or "").split(":")[0]
    said = f"{view['arena_bytes'] / 1024:.1f} KB arena"
    return said + (f", {100 * view['agreement']:.2f}% agree" if "agreement" in view else "")


def markdown_table(rows) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def format_text_table(rows) -> str:
    """Aligned plain-text table for terminals."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
