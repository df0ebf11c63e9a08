"""report.md's account of how the selected file was confirmed (`builder.confirm`, read from the report's
`confirmation` record): the method, the splits in examples and groups, each file the walk tested, why it
stopped, and, plainly, when the data cannot certify."""

from __future__ import annotations

import types

from edgecompress.report import sizes
from edgecompress.data import groups
from edgecompress.models.sanity import interval_counts
from edgecompress.report.tables import artifact_table, markdown_table


_SOURCES = {groups.GIVEN: "given with the data", groups.PREFIX: "read from the images' `<group>__` file names",
            groups.CHAINED: "found in the data: chains of overlapping windows, one per recording"}


def _source(report: dict) -> str:
    source = ((report.get("dataset") or {}).get("groups") or {}).get("source")
    return f" ({_SOURCES.get(source, source)})" if source else ""


def confirmation_rows(report: dict, mark: str = "") -> list[list[str]]:
    """The walk as table rows (a header first): each file tested, its judged and confirmed drop, standard error,
    upper bound, and whether it was certified (`mark` around a "no"); [] when the report has no confirmation."""
    if not report.get("confirmation"):
        return []
    rows = [["file", f"KB ({sizes.of_report(report).words})", "judged drop", "judged upper", "confirmed drop", "SE", "upper bound", "certified"]]
    for s in report["confirmation"]["steps"]:
        rows.append([s["name"], f"{s['size'] / 1024:.1f}", f"{s['judged_drop']:+.2f}", f"{s['judged_upper']:+.2f}",
                     f"{s['drop']:+.2f}", f"{s['se']:.2f}", f"{s['upper']:+.2f}",
                     "yes" if s["certified"] else f"{mark}no{mark}"])
    return rows


def confirmation_lines(report: dict) -> list[str]:
    if not report.get("confirmation"):
        return []
    c = types.SimpleNamespace(**report["confirmation"])
    c.steps = [types.SimpleNamespace(**s) for s in c.steps]
    c.counts = interval_counts(c.count, c.groups)
    val = (report.get("search") or {}).get("validation") or {}
    judge_groups = val.get("judge_groups")
    judged = f"{val.get('judge_count', '?')} examples" + (f" in {judge_groups} groups" if judge_groups else "")
    lines = ["", "## How the selected file was confirmed", "",
             f"Method: {c.method} ({100 * c.confidence:g}% one-sided; `builder.confirm`). The search proposed on "
             f"{judged} ({val.get('judge', 'the judging split')}); the files were confirmed on {c.counts} "
             f"({val.get('report', 'the confirmation split')}), which no trial was scored on. "
             + ("The interval is cluster-robust over the groups" + _source(report) + ", with Student's t on "
                f"{c.groups - 1} degrees of freedom." if c.groups else
                "**The interval assumes independent examples**: give groups (`groups_test` in an .npz, `<group>__` "
                "file names) when examples share a person, speaker, device or recording."), "",
             markdown_table(confirmation_rows(report, mark="**"))]
    lines += ["", f"Drops are in points below the model's float32 file (positive is worse). The walk stopped: "
                  f"{c.stopped}. Selected: `{c.selected}`" + (" (the smallest certified file)." if c.selected else ".")]
    refused = [s for s in c.steps if not s.certified]
    if refused and (c.selected == report.get("baseline") or len(c.steps) <= 2):
        need = c.certifiable_se or 0.0
        lines += ["", f"**This data cannot certify much within {c.limit:g} point(s).** With {c.counts}, a file "
                      f"that loses nothing is certified only when its paired standard error is under {need:.2f} "
                      f"points; `{refused[0].name}`'s is {refused[0].se:.2f}. The build selected the safest file it "
                      "could defend. More held-out data (more groups) narrows the interval; `--selection judged` "
                      "selects on the judged drop alone, without this guarantee."]
    return lines


def answer_lines(report: dict) -> list[str]:
    """What a search's report.md opens on: the selected file beside the model's own, and its promise on data the
    search never scored, with the interval. [] for a build that is not a search or selected nothing."""
    chosen, base = report.get("selected"), report.get("baseline")
    if not report.get("search") or not chosen:
        return []
    lines = [f"## Selected: `{chosen}`", "", markdown_table(artifact_table(report, only=[base, chosen])), ""]
    lines.append(f"**The promise:** {promise_line(report)}")
    return lines


def promise_line(report: dict) -> str:
    """The selected file's promise in one sentence: its confirmed drop, standard error and upper bound, and what
    the interval counts; or that it was selected without a confirmation."""
    c, chosen = report.get("confirmation"), report.get("selected")
    step = next((s for s in (c or {}).get("steps", []) if s["name"] == chosen), None)
    if step is None:
        return ("Selected without a confirmation (`--selection judged`, or a limit on a device's measures): its "
                "accuracy was judged on the split that chose it.")
    return (f"Within {c['limit']:g} point(s) of the model's float32 file on data the search never scored. On the "
            f"confirmation split it scored {-step['drop'] + 0.0:+.2f} points against the model, standard error "
            f"{step['se']:.2f}; the {100 * c['confidence']:g}% one-sided upper bound of its drop is "
            f"{step['upper']:+.2f} points. The interval counts {interval_counts(c['count'], c['groups'])}. "
            "Below: how it was confirmed.")
