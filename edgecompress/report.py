"""`report.json` and `report.md`: what was built and how it measured.

`report.json` keys: `dataset` (name, split, count), `baseline` (name of
the float reference artifact), `artifacts` (each with `name`, `path`,
`quantization`, `size_bytes`, `gzip_bytes`, `accuracy`, `agreement`,
`latency_ms` {p50, p90, ...}, `recipe`), `host` (the machine that measured
latency) and `devices` (per-device benchmark results merged in later).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from edgecompress.bench import device_emulation
from edgecompress.fileio import atomic_write_json, atomic_write_text
from edgecompress.report_tables import _markdown, artifact_table, device_table, format_text_table, search_table  # noqa: F401

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def gzip_size(data: bytes) -> int:
    """Bytes after `gzip -9`: what the file costs to download."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def load_report(out_dir) -> dict:
    path = Path(out_dir) / REPORT_JSON
    return json.loads(path.read_text())


def render_markdown(report: dict) -> str:
    ds = report["dataset"]
    host = report.get("host", {})
    lines = [
        "# edgecompress report",
        "",
        f"Dataset: **{ds['name']}**, evaluated on the {ds['split']} split ({ds['count']} examples).",
        f"Baseline: `{report['baseline']}`. Latency: {report.get('latency_runs', '?')} timed invokes after warm-up, "
        f"{report.get('threads', 1)} thread(s), on {host.get('cpu', '?')} with {host.get('runtime', {}).get('name', '?')} "
        f"{host.get('runtime', {}).get('version', '')}.",
        "",
        _markdown(artifact_table(report)),
        "",
        "Sizes are the `.tflite` file and the same file after `gzip -9`; 'x smaller' is the baseline's gzip bytes over "
        "the artifact's. 'delta pts' is top-1 accuracy minus the baseline's, in points; 'agree %' is the share of test "
        "examples whose top-1 matches the Keras float model.",
    ]
    if report.get("constraints"):
        c = {k: v for k, v in report["constraints"].items() if v is not None}
        lines += ["", f"Constraints: {c}. " + (f"Selected: `{report['selected']}` (marked *, copied to `selected.tflite`)."
                                                if report.get("selected") else "No artifact met them.")]
    lines += search_lines(report)
    rec = report.get("int8_recovery")
    if rec and rec.get("float_layers"):
        lines.append(f"int8 lost too much; `int8_selective` keeps {', '.join(rec['float_layers'])} in float "
                     f"(+{rec.get('size_cost_bytes', 0)} bytes).")
    dev = device_table(report)
    if dev:
        lines += ["", "## On devices", "", _markdown(dev), ""]
        for name, d in sorted((report.get("devices") or {}).items()):
            if "device" in d:
                info = d["device"]
                lines.append(f"- **{name}**: {info.get('board') or info.get('cpu')}, {info.get('os')}, Python {info.get('python')}, "
                             f"numpy {info.get('numpy')}, {info['runtime']['name']} {info['runtime']['version']}; "
                             f"harness overhead {d['harness_overhead_us']:.2f} us per call"
                             + (f"; **emulated CPU** ({device_emulation(d)}"
                                + (f", QEMU_CPU={info['qemu_cpu']}" if info.get("qemu_cpu") else "")
                                + "): latency in brackets is not a measurement of any board, accuracy is real"
                                if device_emulation(d) else ""))
    failed_devices = {k: v["error"] for k, v in (report.get("devices") or {}).items() if "error" in v}
    for name, err in sorted(failed_devices.items()):
        lines.append(f"- **{name}**: not measured: {err}")
    stages = report.get("stages")
    if stages:
        lines += ["", "## Stages", ""]
        for s in stages:
            lines.append(f"- **{s['stage']}** ({s.get('model', '')}): " + ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.get("metrics", {}).items()))
    lines += ["", "Files:", ""] + [f"- `{a['path']}`" for a in report["artifacts"]]
    return "\n".join(lines) + "\n"


def search_lines(report: dict) -> list[str]:
    """report.md's Search section: the study, its trials, and whether the teacher saw the validation images."""
    search = report.get("search")
    if not search:
        return []
    counts = ", ".join(f"{n} {k}" for k, n in (search.get("counts") or {}).items())
    val = search.get("validation") or {}
    lines = ["", "## Search", "",
              f"Space `{search['space']['name']}`, sampler `{search.get('sampler', 'grid')}`, "
              f"{search.get('workers', 1)} worker(s), study in {search.get('storage', 'this process')}: "
              f"{len(search['candidates'])} trials ({counts}) in {search['seconds']:.0f} s (budget "
              f"{search['budget_minutes']:g} min"
              + (f"; {search['resumed_trials']} from an earlier run, resumed" if search.get("resumed_trials") else "")
              + "). Trials are scored and selected on "
              + (f"{val['count']} validation images held out of the training data" if val else "the test split")
              + " (`val top-1`); `top-1` columns are the test split. 'Pareto' marks the files no other file "
              "beats on both validation top-1 and gzip size (size), or test top-1 and p50 latency (latency). "
              "'stopped early' is a trial ended after a stage whose top-1 left no hope of meeting "
              "--max-accuracy-drop, even with the best recovery earlier trials saw (not weight pruning).", "",
              _markdown(search_table(report))]
    seen = val.get("teacher_saw_it")
    if seen:
        lines += ["", f"**The teacher scores {100 * seen['validation']:.2f}% on the validation split but "
                      f"{100 * seen['test']:.2f}% on the test split** ({seen['z']} standard errors apart): it "
                      "was probably trained on those images, so --max-accuracy-drop was judged against an "
                      "inflated top-1. Train it without them (`Dataset.without_validation`), or raise the limit."]
    return lines


def write_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Writes report.md and report.html, then report.json (last: it is the one that names the build)."""
    from edgecompress.report_html import render_html

    out_dir = Path(out_dir)
    m = atomic_write_text(out_dir / REPORT_MD, render_markdown(report))
    atomic_write_text(out_dir / REPORT_HTML, render_html(report))
    j = atomic_write_json(out_dir / REPORT_JSON, report)
    return j, m
