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

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def gzip_size(data: bytes) -> int:
    """Bytes after `gzip -9`: what the file costs to download."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def load_report(out_dir) -> dict:
    path = Path(out_dir) / REPORT_JSON
    return json.loads(path.read_text())


def _fmt_kb(n) -> str:
    return f"{n / 1024:,.1f}"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def artifact_table(report: dict) -> list[list[str]]:
    """Rows (with a header) of the artifact table used by md and the CLI."""
    arts = report["artifacts"]
    base = next((a for a in arts if a["name"] == report.get("baseline")), arts[0] if arts else None)
    header = ["artifact", "quant", "size KB", "gzip KB", "x smaller (gzip)", "top-1 %", "delta pts", "agree %", "p50 ms", "p90 ms"]
    searched = any("pareto" in a for a in arts)
    if searched:
        header.append("Pareto")
    rows = [header]
    for a in arts:
        ratio = base["gzip_bytes"] / a["gzip_bytes"] if base else 1.0
        delta = 100 * (a["accuracy"] - base["accuracy"]) if base else 0.0
        lat = a.get("latency_ms") or {}
        rows.append([
            a["name"] + (" *" if a["name"] == report.get("selected") else ""),
            a["quantization"], _fmt_kb(a["size_bytes"]), _fmt_kb(a["gzip_bytes"]), f"{ratio:.1f}",
            _pct(a["accuracy"]), f"{delta:+.2f}", _pct(a.get("agreement")),
            f"{lat['p50']:.3f}" if "p50" in lat else "-", f"{lat['p90']:.3f}" if "p90" in lat else "-",
        ] + ([", ".join(k for k, on in a.get("pareto", {}).items() if on) or "-"] if searched else []))
    return rows


def search_table(report: dict) -> list[list[str]]:
    """One row per search candidate: its status, time and best artifact."""
    search = report.get("search")
    if not search:
        return []
    by_name = {a["name"]: a for a in report["artifacts"]}
    rows = [["candidate", "status", "seconds", "best top-1 %", "its gzip KB", "smallest gzip KB", "on a front"]]
    for c in search["candidates"]:
        arts = [by_name[n] for n in c.get("artifacts", []) if n in by_name]
        best = max(arts, key=lambda a: a["accuracy"], default=None)
        small = min(arts, key=lambda a: a["gzip_bytes"], default=None)
        front = [a["name"][len(c["name"]) + 1:] for a in arts if any(a.get("pareto", {}).values())]
        rows.append([c["name"], c["status"] if c["status"] == "done" else f"{c['status']} ({c.get('reason') or c.get('error')})",
                     f"{c.get('seconds', 0):.0f}", _pct(best["accuracy"]) if best else "-",
                     _fmt_kb(best["gzip_bytes"]) if best else "-", _fmt_kb(small["gzip_bytes"]) if small else "-",
                     ", ".join(front) or "-"])
    return rows


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
    header = ["artifact"]
    for d in names:
        emulated = device_emulation(devices[d]) is not None
        header.append(f"{d} p50 ms" + (" (emulated)" if emulated else ""))
        if d in with_acc:
            header += [f"{d} top-1 %", f"{d} agree %"]
    rows = [header]
    for a in report["artifacts"]:
        row = [a["name"]]
        for d in names:
            r = devices[d].get("results", {}).get(a["name"])
            lat = f"{r['latency_ms']['p50']:.3f}" if r else "-"
            row.append(f"[{lat}]" if r and device_emulation(devices[d]) else lat)
            if d in with_acc:
                acc = (r or {}).get("accuracy")
                row += [f"{100 * acc['top1']:.2f}", f"{100 * acc['agreement']:.2f}" if "agreement" in acc else "-"] \
                    if acc else ["-", "-"]
        rows.append(row)
    return rows


def _markdown(rows) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def format_text_table(rows) -> str:
    """Aligned plain-text table for terminals."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
    search = report.get("search")
    if search:
        done = sum(c["status"] == "done" for c in search["candidates"])
        lines += ["", "## Search", "",
                  f"Space `{search['space']['name']}`: {done} of {len(search['candidates'])} candidates measured in "
                  f"{search['seconds']:.0f} s (budget {search['budget_minutes']:g} min). 'Pareto' marks the files no "
                  "other file beats on both top-1 and gzip size (size) or top-1 and p50 latency (latency).", "",
                  _markdown(search_table(report))]
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


def write_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Writes report.md and report.html, then report.json (last: it is the one that names the build)."""
    from edgecompress.report_html import render_html

    out_dir = Path(out_dir)
    m = atomic_write_text(out_dir / REPORT_MD, render_markdown(report))
    atomic_write_text(out_dir / REPORT_HTML, render_html(report))
    j = atomic_write_json(out_dir / REPORT_JSON, report)
    return j, m
