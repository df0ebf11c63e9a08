"""report.md's and report.html's path from the model to the selected file: the closed loop's ladder, rung by
rung, with each rung's held-out measures and what became of it."""

from __future__ import annotations

from edgecompress.report import sizes
from edgecompress.report.tables import report_task


def ladder_story(report: dict) -> list[str]:
    """report.md's path from the model to the selected file: each ladder rung, in order, with its held-out
    top-1 and standard error, size, and whether it was kept, dropped, stopped, ended or skipped, and why."""
    from edgecompress.models.sanity import ABOVE_POINTS, limit_verdict, standard_error

    search = report["search"]
    rungs = [c for c in search["candidates"] if c.get("rung")]
    skipped = search.get("ladder_skipped") or {}
    if not rungs and not skipped:
        return []
    by_name = {a["name"]: a for a in report["artifacts"]}
    base = by_name.get(report.get("baseline"), {})
    val = search.get("validation") or {}
    n, m = val.get("judge_count", val.get("count", 0)), val.get("report_count", report["dataset"]["count"])
    limit = (report.get("constraints") or {}).get("max_accuracy_drop")
    margin_se = (report.get("constraints") or {}).get("margin_se", 0.0)
    t = report_task(report)

    def said(value, count):  # a top-1 with its standard error; another metric as it is written
        return (f"{100 * value:.2f}% +/- {100 * standard_error(value, count):.2f}" if t.as_percent
                else f"{t.metric} {t.format(value)}")

    lines = ["", "### From the model to the selected file", ""]
    if "val_accuracy" in base:
        lines.append(f"The model's own float32 file: {said(base['val_accuracy'], n)} on the {n} judging images, "
                     f"{said(base['accuracy'], m)} on the {m} reporting images"
                     + (" (+/- one standard error)" if t.as_percent else "")
                     + (f"; the limit is {limit:g} point(s) below it on the judging images" if limit is not None
                        else "")
                     + (f", and a file must meet it by {margin_se:g} paired standard error(s) of its drop "
                        "(`--margin-se`: of many files that meet a limit as measured, the smallest is often one "
                        "that met it by luck)." if limit is not None and margin_se else "."))
        lines.append("")
    for i, c in enumerate(rungs, 1):
        a = next((by_name[x] for x in c.get("artifacts", []) if x in by_name), None)
        if a is None:
            lines.append(f"{i}. `{c['rung']}`: {c['status']} ({c.get('reason') or c.get('error') or ''})")
            continue
        drop = 100 * (base.get("val_accuracy", 0) - a["val_accuracy"])
        se = a.get("val_paired_se")
        held = f"paired standard error {se:.2f}, " if se is not None and margin_se else ""
        verdict = "" if limit is None else " " + held + limit_verdict(drop, margin_se * (se or 0.0), limit, margin_se)
        lines.append(f"{i}. `{c['rung']}` ({a['name']}): {said(a['val_accuracy'], n)} judged ({-drop + 0.0:+.2f} "
                     f"points), {t.format(a['accuracy'])} reported, {sizes.both(a)},{verdict}")
    for name, why in skipped.items():
        lines.append(f"- `{name}`: skipped, it {why}")
    suspect = [c["name"] for c in search["candidates"] if c.get("suspect")]
    if suspect:
        lines += ["", f"**{len(suspect)} file(s) score more than {ABOVE_POINTS:g} points above the model's own file** (e.g. "
                      f"{suspect[0]}): either the model is under-trained and the stages trained it further, or it "
                      "is measured here on inputs it does not expect and its students learned them. If it scored "
                      "higher where you trained it, check `--scale` and the class folders."]
    chosen = report.get("selected")
    if chosen:
        a = by_name[chosen]
        size = sizes.of_report(report)
        lines += ["", f"Selected: **{chosen}**, {size.of(base) / max(size.of(a), 1):.1f}x smaller "
                      f"({size.words}) than the model's float32 file, {t.format(a.get('val_accuracy', a['accuracy']))} on "
                      f"the judging images and {t.format(a['accuracy'])} on the reporting ones: the smallest "
                      "file within the limit" + (f", after {len(search['candidates']) - len(rungs)} trial(s) "
                                                 "the sampler proposed once the ladder was done"
                                                 if len(search["candidates"]) > len(rungs) else "") + "."]
    return lines
