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

from edgecompress.report import sizes
from edgecompress.report.confirmation import answer_lines, confirmation_lines
from edgecompress.report.story import ladder_story
from edgecompress.lite import tasks
from edgecompress.lite.latency import device_emulation
from edgecompress.lite.fileio import atomic_write_json, atomic_write_text
from edgecompress.report.tables import report_task, markdown_table, artifact_table, device_table, evaluated_on, format_text_table, search_table, trial_recipe_href  # noqa: F401

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
    answer = answer_lines(report)  # a search opens on its answer; its every file follows, folded
    table = markdown_table(artifact_table(report))
    if answer:
        table = (f"<details><summary>Every file of the search ({len(report['artifacts'])}), measured on "
                 f"{evaluated_on(ds)}</summary>\n\n{table}\n\n</details>")
    lines = [
        "# edgecompress report",
        "",
        *answer,
        *(ladder_story(report) + [""] if answer else []),  # the path from the model to the file
        *(confirmation_lines(report) + [""] if answer else []),
        f"Dataset: **{ds['name']}**, evaluated on {evaluated_on(ds)} ({ds['count']} examples).",
        f"Baseline: `{report['baseline']}`. Latency: {report.get('latency_runs', '?')} timed invokes after warm-up, "
        f"{report.get('threads', 1)} thread(s), on {host.get('cpu', '?')} with {host.get('runtime', {}).get('name', '?')} "
        f"{host.get('runtime', {}).get('version', '')}.",
        "",
        table,
        "",
        "Sizes are the `.tflite` file's bytes (what flash, mmap and an APK's uncompressed asset hold) and the same file "
        f"after `gzip -9` (the download); 'x smaller' is the baseline's {sizes.of_report(report).words} over the "
        "artifact's, the measure this build chose by (`--size`). 'TFLM arena KB' is the tensor arena TensorFlow Lite "
        "Micro plans for the file (the RAM a microcontroller sets aside), or the op it refuses and, as '~N planned', "
        "its runtime tensors packed greedy by size into one arena (not TFLM's or LiteRT's own figure: their "
        "scratch buffers are not in it). " + ("'delta pts' is top-1 accuracy minus the baseline's, in points; 'agree %' is the share "
                              "of test examples whose top-1 matches the Keras float model."
                              if report_task(report).name == "classification" else
                              f"Task: {report_task(report).name}, measured by {report_task(report).metric} "
                              "(of the reconstruction error where the model outputs its input's shape); 'delta' is it "
                              "minus the baseline's, and a limit of 1 point is 0.01 of it."),
    ]
    lines += output_lines(report)
    lines += delegation_lines(report)
    if report.get("constraints"):
        c = {k: v for k, v in report["constraints"].items() if v is not None}
        lines += ["", f"Constraints: {c}. " + (f"Selected: `{report['selected']}` (marked *, copied to `selected.tflite`)."
                                                if report.get("selected") else "No artifact met them.")]
    if not answer:
        lines += confirmation_lines(report)
    if report.get("latency_timing"):  # every file timed again together for a latency limit (`builder.measure`)
        lt = report["latency_timing"]
        lines.append(f"For --max-latency-ms every file was timed again in {lt['rounds']} interleaved rounds of "
                     f"{lt['runs']} invokes (the p50s above), so the gate compares the same moments of this "
                     "machine." + (f" {report['speedup']['line']}." if report.get("speedup") else ""))
    lines += search_lines(report)
    rec = report.get("int8_recovery")
    if rec and rec.get("float_layers"):
        lines.append(f"int8 lost too much; `int8_selective` keeps {', '.join(rec['float_layers'])} in float "
                     f"(+{rec.get('size_cost_bytes', 0)} bytes).")
    dev = device_table(report)
    if dev:
        lines += ["", "## On devices", "", markdown_table(dev), ""]
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
    lines += device_profile_lines(report)
    failed_devices = {k: v["error"] for k, v in (report.get("devices") or {}).items() if "error" in v}
    for name, err in sorted(failed_devices.items()):
        lines.append(f"- **{name}**: not measured: {err}")
    stages = report.get("stages")
    if stages:
        lines += ["", "## Stages", ""]
        for s in stages:
            lines.append(f"- **{s['stage']}** ({s.get('model', '')}): " + ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.get("metrics", {}).items()))
    in_trials = [a for a in report["artifacts"] if Path(a["path"]).parent.name == TRIALS_DIR]
    lines += ["", "Files:", ""] + [f"- `{a['path']}`" for a in report["artifacts"] if a not in in_trials]
    if in_trials:
        lines.append(f"- {len(in_trials)} trial file(s) under `trials/`, one row each in `{TRIALS_CSV}` (with the "
                     "trial's full name, sizes, judged and confirmed measures)")
    return "\n".join(lines) + "\n"


def output_lines(report: dict) -> list[str]:
    """A model of several outputs: each file's metric on each output (the table's is the judged output's)."""
    rows = [(a["name"], a["outputs"]) for a in report["artifacts"] if a.get("outputs")]
    if not rows:
        return []
    t = report_task(report)
    lines = ["", f"Each output, measured (the table and the limit read `{getattr(t, 'judged', '')}`):", ""]
    lines += [f"- `{name}`: {tasks.says_each(outputs)}" for name, outputs in rows]
    return lines


def delegation_lines(report: dict) -> list[str]:
    """Where the time can go on this host: each file whose graph XNNPACK did not take whole, its partitions and
    the ops left outside (`lite.latency.delegation`), each profiled file's op times and peak memory
    (`lite.profile`), and one line for all the other files it took whole."""
    from edgecompress.lite.latency import delegation_line
    from edgecompress.lite.profile import profile_line

    read = [a for a in report["artifacts"] if a.get("delegation")]
    if not read:
        return []
    said = [a for a in read if a["delegation"]["partitions"] != 1 or a["delegation"]["outside"] or a.get("profile")]
    whole = len(read) - len(said)
    out = ["", "Delegation on this host (XNNPACK; an op outside the delegate runs on the runtime's own kernels, "
               "and each partition boundary is a hop out and back; profiled files: each op timed alone, "
               "shares of their sum, and the peak memory one run adds):"]
    out += [f"- `{a['name']}`: {delegation_line(a['delegation'])}" +
            (f"; {profile_line(a['profile'], a['delegation'])}" if a.get("profile") else "") for a in said]
    if whole:
        out.append(f"- {'every other file' if said else 'every file'} ({whole}): one partition, every op inside it")
    return out


def device_profile_lines(report: dict) -> list[str]:
    """Each file profiled on a device (`bench-device --profile`): its delegation there, its ops' times alone
    and its peak memory, as the host's lines say them; an emulated device's times are said not to be a board's."""
    from edgecompress.lite.latency import delegation_line, device_emulation
    from edgecompress.lite.profile import profile_line

    out = []
    for label, d in sorted((report.get("devices") or {}).items()):
        profiled = {name: r for name, r in (d.get("results") or {}).items() if r.get("profile")}
        if not profiled:
            continue
        said = ("emulated CPU: the op times are qemu's, not a measurement of any board" if device_emulation(d)
                else "each op timed alone on the device")
        out += ["", f"Profiled on {label} ({said}):"]
        out += [f"- `{name}`: {delegation_line(r.get('delegation'))}; {profile_line(r['profile'], r.get('delegation'))}"
                for name, r in profiled.items()]
    return out


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
              + (f"; it stopped on {search['stopped']}" if search.get("stopped") else "")
              + "). Trials are scored and selected on "
              + (f"{val['judge_count']} images no model trained on this data learned from ({val['judge']})"
                 if "judge" in val else f"{val['count']} validation images held out of the training data" if val
                 else "the test split")
              + " (`judged top-1`); `reported top-1` columns are "
              + (f"{val['report_count']} other images ({val['report']})" if "report" in val else "the test split")
              + ". 'Pareto' marks the files no other file "
              "beats on both validation top-1 and gzip size (size), or test top-1 and p50 latency (latency). "
              "'stopped early' is a trial ended after a stage whose top-1 left no hope of meeting "
              "--max-accuracy-drop, even with the best recovery earlier trials saw (not weight pruning).", "",
              markdown_table(_linked(search_table(report)))]
    lines += ([] if answer_lines(report) else ladder_story(report)) + margin_lines(report)  # else it opens the report
    seen = val.get("teacher_saw_it")
    if seen:
        lines += ["", f"**The teacher scores {100 * seen['validation']:.2f}% on the validation split but "
                      f"{100 * seen['test']:.2f}% on the test split** ({seen['z']} standard errors apart): it "
                      "was probably trained on those images, so --max-accuracy-drop was judged against an "
                      "inflated top-1. Train it without them (`Dataset.without_validation`), or raise the limit."]
    return lines


def _linked(rows: list[list[str]]) -> list[list[str]]:
    """The search table with each trial file's short name linking to its recipe."""
    return [rows[0]] + [[r[0], f"[{r[1]}]({trial_recipe_href(r[1])})" if trial_recipe_href(r[1]) else r[1], *r[2:]]
                        for r in rows[1:]]


def margin_lines(report: dict) -> list[str]:
    """report.md's word on the files the margin kept out (`--margin-se`): those that met the accuracy limit as
    measured, but not by their margin, and are smaller than the selected file (or any, when none was), with
    what would let them in."""
    constraints = report.get("constraints") or {}
    limit, margin_se = constraints.get("max_accuracy_drop"), constraints.get("margin_se", 0.0)
    base = next((a for a in report["artifacts"] if a["name"] == report.get("baseline")), {})
    if limit is None or not margin_se or "val_accuracy" not in base:
        return []
    chosen = next((a for a in report["artifacts"] if a["name"] == report.get("selected")), None)
    size, out = sizes.of_report(report), []
    for a in report["artifacts"]:
        if "val_paired_se" not in a or (chosen and size.of(a) >= size.of(chosen)):
            continue
        drop = 100 * (base["val_accuracy"] - a["val_accuracy"])
        if drop <= limit < drop + margin_se * a["val_paired_se"]:
            out.append(a)
    if not out:
        return []
    a = min(out, key=size.of)
    return ["", f"{len(out)} file(s) {'smaller than the selected one ' if chosen else ''}met the limit as measured "
                f"but not by their margin, the smallest `{a['name']}` ({sizes.both(a)}, "
                f"{100 * (a['val_accuracy'] - base['val_accuracy']):+.2f} points judged, paired standard error "
                f"{a['val_paired_se']:.2f}; {100 * (a['accuracy'] - base['accuracy']):+.2f} points on the reporting "
                "images). More judging images (a `val/` folder) narrow the margin; `invoke select "
                f"--max-accuracy-drop {limit:g} --margin-se 0` (with the build's other limits) selects on the limit "
                "as measured."]


TRIALS_DIR = "trials"  # a search's files, with short names; the build folder keeps selected.tflite and the report
TRIALS_CSV = "trials.csv"
TRIALS_COLUMNS = ("trial", "status", "file", "name", "file_bytes", "gzip_bytes", "judged", "reported",
                  "confirmed_drop", "confirmed_se", "selected", "reason")


def trials_csv(report: dict) -> str:
    """A search's trials, one row each, in trial order: its short file name (under `trials/`), the candidate's
    full name, file and gzip bytes, the judged and reported metric, its confirmed drop and standard error in
    points (`builder.confirm`), whether it is the selected file, and why a trial made no file."""
    import csv
    import io

    by_name = {a["name"]: a for a in report["artifacts"]}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRIALS_COLUMNS)
    for c in report["search"]["candidates"]:
        a = next((by_name[n] for n in c.get("artifacts", []) if n in by_name), {})
        conf = a.get("confirm") or {}
        path = Path(a.get("path", ""))
        w.writerow([c["trial"], c["status"], "/".join(path.parts[-2:]) if a else "", c["name"] if not a else a["name"],
                    a.get("size_bytes", ""), a.get("gzip_bytes", ""), a.get("val_accuracy", ""), a.get("accuracy", ""),
                    conf.get("drop", ""), conf.get("se", ""), int(bool(a) and a["name"] == report.get("selected")),
                    c.get("reason") or c.get("error") or ""])
    return buf.getvalue()


def write_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Writes report.md and report.html (and a search's trials.csv), then report.json (last: it is the one that
    names the build)."""
    from edgecompress.report.html import render_html

    out_dir = Path(out_dir)
    if report.get("search") and report["search"].get("candidates"):
        atomic_write_text(out_dir / TRIALS_CSV, trials_csv(report))
    m = atomic_write_text(out_dir / REPORT_MD, render_markdown(report))
    atomic_write_text(out_dir / REPORT_HTML, render_html(report))
    j = atomic_write_json(out_dir / REPORT_JSON, report)
    return j, m
