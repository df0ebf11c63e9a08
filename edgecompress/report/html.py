"""`report.html`: the report as one self-contained page, plots embedded.

Plots (matplotlib, as base64 PNG): top-1 against download size and against
latency with the Pareto front marked, and per-layer sparsity read from the
int8 file; then the artifact table, device columns, and a receipt per
artifact (hashes of the model, data and calibration set, library versions,
seed, recipe). A small inline script records how many images decoded
(`data-images-loaded` on <body>), which the tests read in headless Chromium.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re

from edgecompress.report import sizes
from edgecompress.lite.latency import device_emulation
from edgecompress.report.tables import artifact_table, device_table, evaluated_on, search_table, trial_recipe_href
from edgecompress.report.confirmation import confirmation_rows, promise_line
from edgecompress.report.story import ladder_story
from edgecompress.models.sanity import interval_counts
from edgecompress.report.pareto import pareto
from edgecompress.quantize.schemes import scheme

logger = logging.getLogger(__name__)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(report) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arts = report["artifacts"]
    out = []
    size = sizes.of_report(report)
    for key, label in (("size", f"size (KB, {size.words})"), ("latency", "host p50 latency (ms)")):
        xs = [size.of(a) / 1024 if key == "size" else a["latency_ms"]["p50"] for a in arts]
        ys = [100 * a["accuracy"] for a in arts]
        front = set(pareto(list(zip(xs, ys))))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for i, a in enumerate(arts):
            ax.scatter(xs[i], ys[i], c="tab:red" if i in front else "tab:gray", zorder=3,
                       marker="*" if a["name"] == report.get("selected") else "o",
                       s=140 if a["name"] == report.get("selected") else 30)
            if i in front or len(arts) <= 12:  # a search makes dozens: name only the front
                ax.annotate(a["name"], (xs[i], ys[i]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        f = sorted(front, key=lambda i: xs[i])
        ax.plot([xs[i] for i in f], [ys[i] for i in f], c="tab:red", lw=1, label="Pareto front")
        limits = report.get("constraints") or {}
        base = next((a for a in arts if a["name"] == report.get("baseline")), None)
        if limits.get("max_accuracy_drop") is not None and base:
            ax.axhline(100 * base["accuracy"] - limits["max_accuracy_drop"], c="tab:green", ls="--", lw=1,
                       label=f"--max-accuracy-drop {limits['max_accuracy_drop']:g}")
        if key == "latency" and limits.get("max_latency_ms") is not None and not limits.get("device"):
            ax.axvline(limits["max_latency_ms"], c="tab:purple", ls="--", lw=1,
                       label=f"--max-latency-ms {limits['max_latency_ms']:g}")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out.append((f"Top-1 against {label}", _png(fig)))
        plt.close(fig)
    with_layers = [a for a in arts if a.get("layer_sparsity") and scheme(a["quantization"]).integer_only]
    sparse = next((a for a in with_layers if a["name"] == report.get("selected")), with_layers[0] if with_layers else None)
    if sparse:
        layers = sparse["layer_sparsity"]
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(layers) + 1))
        names = [f"{layer['op']} #{i} ({layer['params']:,})" for i, layer in enumerate(layers)]
        ax.barh(names, [100 * layer["sparsity"] for layer in layers], color="tab:blue")
        ax.set_xlabel(f"zero weights %, read from {sparse['name']}.tflite")
        ax.set_xlim(0, 100)
        out.append((f"Per-layer sparsity of {sparse['name']}", _png(fig)))
        plt.close(fig)
    rec = report.get("int8_recovery")
    if rec and rec.get("layer_errors"):
        errs = rec["layer_errors"][:12]
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(errs) + 1))
        ax.barh([", ".join(e["layers"]) or e["op"] for e in errs], [e["rmse_over_scale"] for e in errs], color="tab:orange")
        ax.set_xlabel("int8 error (RMSE / quantization step), quantization debugger")
        out.append(("Per-layer int8 error", _png(fig)))
        plt.close(fig)
    return out


def _table(rows, *, links=None, id=None) -> str:
    """An HTML table of `rows` (a header first); `links` maps a column to a function of a cell giving its href,
    or None for a cell without one."""
    def cell(i, c):
        href = links[i](c) if links and i in links else None
        return f"<a href='{html.escape(href)}'>{html.escape(c)}</a>" if href else html.escape(c)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{cell(i, c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows[1:])
    named = f" id='{id}'" if id else ""
    return f"<table{named}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline(text: str) -> str:
    """report.md's inline marks as HTML: `code` and **bold**."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _from_markdown(lines: list[str]) -> str:
    """A few lines of report.md (a heading, paragraphs, a numbered or bulleted list) as HTML."""
    parts, items = [], []
    for line in [*lines, ""]:
        m = re.match(r"(?:\d+\.|-) (.*)", line)
        if m:
            items.append(f"<li>{_inline(m.group(1))}</li>")
            continue
        if items:
            parts.append("<ol>" + "".join(items) + "</ol>")
            items = []
        if line.startswith("### "):
            parts.append(f"<h3>{_inline(line[4:])}</h3>")
        elif line.strip():
            parts.append(f"<p>{_inline(line)}</p>")
    return "\n".join(parts)


def render_html(report: dict) -> str:
    ds = report["dataset"]
    try:
        plots = _plots(report)
    except ImportError:
        logger.warning("matplotlib is not installed: report.html has no plots (pip install matplotlib).")
        plots = []
    receipts = {a["name"]: {"sha256": a.get("sha256"), "data": ds.get("fingerprint"),
                            "calibration": report.get("calibration"), "seed": report.get("seed"),
                            "versions": report.get("versions"), "recipe": a.get("recipe", {}).get("recipe"),
                            "conversion": a.get("recipe", {}).get("conversion")} for a in report["artifacts"]}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgecompress report</title><style>",
        "body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        "pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}",
        "</style></head><body>",
        "<h1>edgecompress report</h1>",
    ]
    chosen = report.get("selected")
    answer = bool(report.get("search") and chosen)  # a search opens on its answer; its every file follows, folded
    if answer:
        parts += [f"<h2 id='selected'>Selected: <code>{html.escape(chosen)}</code></h2>",
                  _table(artifact_table(report, only=[report["baseline"], chosen]), id="selected-table"),
                  f"<p>{html.escape(promise_line(report))}</p>"]
        parts += [f"<img id='front' alt='{html.escape(title)}' src='{uri}'>" for title, uri in plots[:1]]  # the size front
        parts.append(_from_markdown(ladder_story(report)))  # the path from the model to the file
    confirmed = confirmation_rows(report)
    if confirmed:
        c = report["confirmation"]
        parts += ["<h2>How the selected file was confirmed</h2>",
                  f"<p>Certified on {html.escape(interval_counts(c['count'], c['groups']))}, which no trial was scored "
                  f"on, at {100 * c['confidence']:g}% one-sided: {html.escape(c['method'])}. The walk stopped: "
                  f"{html.escape(c['stopped'])}.</p>", _table(confirmed)]
    parts.append(f"<p>Dataset <b>{html.escape(ds['name'])}</b>, evaluated on {html.escape(evaluated_on(ds))}, "
                 f"{ds['count']} examples. Baseline <code>{html.escape(report['baseline'])}</code>."
                 + (f" Selected: <b>{html.escape(chosen)}</b> (selected.tflite)." if chosen else "") + "</p>")
    table = _table(artifact_table(report))
    parts.append(f"<details><summary>Every file of the search ({len(report['artifacts'])})</summary>{table}</details>"
                 if answer else table)
    if answer:
        plots = plots[1:]  # the size front is above
    dev = device_table(report)
    if dev:
        parts += ["<h2>On devices</h2>", _table(dev)]
        emulated = sorted(k for k, d in (report.get("devices") or {}).items() if device_emulation(d))
        if emulated:
            parts.append(f"<p>Emulated CPU ({html.escape(', '.join(emulated))}): latency in brackets is not a "
                         "measurement of any board; top-1 and agreement are what its kernels compute.</p>")
    if report.get("search"):
        parts += ["<h2>Search</h2><details><summary>Every trial, its file linking to its recipe</summary>",
                  _table(search_table(report), links={1: trial_recipe_href}), "</details>"]
    for title, uri in plots:
        parts += [f"<h2>{html.escape(title)}</h2>", f"<img alt='{html.escape(title)}' src='{uri}'>"]
    parts += ["<h2>Receipts</h2><p>What produced each artifact: file hash, data fingerprint, calibration set, "
              "seed, library versions and recipe.</p>",
              f"<pre>{html.escape(json.dumps(receipts, indent=1, default=str))}</pre>",
              "<script>window.addEventListener('load',function(){var n=0;"
              "document.querySelectorAll('img').forEach(function(i){if(i.complete&&i.naturalWidth>0)n++;});"
              "document.body.setAttribute('data-images-loaded',String(n));"
              "document.body.setAttribute('data-images',String(document.images.length));"
              # What a reader sees before scrolling: the ids of the answer's parts inside the first screen.
              "var seen=[];['selected-table','front'].forEach(function(id){var e=document.getElementById(id);"
              "if(e&&e.getBoundingClientRect().bottom<=window.innerHeight)seen.push(id);});"
              "document.body.setAttribute('data-first-screen',seen.join(' '));});</script>",
              "</body></html>"]
    return "\n".join(parts)
