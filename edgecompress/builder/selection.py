"""Quality gate: pick the artifact that meets the user's constraints, or fail loudly.

Constraints are on the measured artifacts: top-1 drop against the baseline
(in points), file size (KiB of the `.tflite`), and p50 latency (on the host,
or on a device whose results are in the report).

A search's accuracy limit is held in two steps (`Constraints.selection`):

- `"confirmed"` (the default): the judging split proposes and a confirmation split that the search never
  scored certifies, by fixed-sequence testing of one-sided upper bounds (`builder.confirm`); the smallest
  certified file that meets the other limits wins, and `report["confirmation"]` says how.
- `"judged"`: the rule before confirmation: a file must keep `margin_se` paired standard errors of its
  judged drop (`val_paired_se`) inside the limit, and the smallest such file wins. It is right for one
  comparison, not for hundreds (`tests/test_confirm.py` measures how often it breaks its promise).

Other builds (a fixed recipe's few files) are judged on the test split. Among the artifacts that meet
every limit, the smallest by `--size` (file bytes by default, what a device holds; `report.sizes`) wins, ties
going to the more accurate. When none does,
`GateError` says which constraint failed by how much, and the best value reached; the task exits 3 so CI
can tell it from a usage error.
"""

from __future__ import annotations

import dataclasses
import logging

from edgecompress.builder import confirm, targets
from edgecompress.report import sizes
from edgecompress.report.sizes import DEFAULT_SIZE
from edgecompress.configs import Config, require
from edgecompress.report.tables import device_metric
from edgecompress.errors import EXIT_GATE, EdgeCompressError

logger = logging.getLogger(__name__)

# One paired standard error: a file whose true drop is the limit passes one time in six, one two standard
# errors over it about one in forty, where without a margin they pass one time in two and one in six.
DEFAULT_MARGIN_SE = 1.0


class GateError(EdgeCompressError):
    """No artifact met the constraints (exit code 3)."""

    exit_code = EXIT_GATE


@dataclasses.dataclass(frozen=True)
class Constraints(Config):
    """What an artifact must meet to be selected.

    Args:
        max_accuracy_drop: Most top-1 points below the baseline. Defaults to None.
        max_file_kb: Largest `.tflite` file (its bytes: what a device holds), in KiB. Defaults to None.
        max_latency_ms: Slowest p50 latency, in ms. Defaults to None.
        max_ram_kb: Largest TensorFlow Lite Micro tensor arena (`lite.micro`), in KiB: the RAM a microcontroller
            sets aside. A file TFLM does not run cannot meet it. Defaults to None.
        size: What "smallest" means (`report.sizes`): `"file"` bytes, what every device holds, or `"gzip"`
            bytes, the download. Defaults to `sizes.DEFAULT_SIZE` ("file").
        device: Judge latency on this device column of the report instead of
            the host. Defaults to None.
        margin_se: With `selection="judged"`: paired standard errors of a file's judged drop (`val_paired_se`)
            kept inside `max_accuracy_drop`. Defaults to `DEFAULT_MARGIN_SE`.
        selection: How a search's accuracy limit is held: `"confirmed"` (certified on a confirmation split,
            `builder.confirm`) or `"judged"` (the judged drop plus `margin_se` standard errors). Defaults to
            `"confirmed"`.
        confidence: The one-sided confidence of a confirmation: at most `1 - confidence` of selections
            promise a file whose true drop is over the limit. Defaults to `confirm.DEFAULT_CONFIDENCE`.
        target: What the file ships for (`targets.TARGETS`): `"cpu"`, or `"mcu"`, where only full-integer files
            TensorFlow Lite Micro runs can be selected, by file bytes. Defaults to `"cpu"`.
    """

    max_accuracy_drop: float | None = None
    max_file_kb: float | None = None
    max_latency_ms: float | None = None
    max_ram_kb: float | None = None
    size: str = DEFAULT_SIZE
    device: str | None = None
    margin_se: float = DEFAULT_MARGIN_SE
    selection: str = "confirmed"
    confidence: float = confirm.DEFAULT_CONFIDENCE
    target: str = targets.DEFAULT_TARGET

    def __post_init__(self):
        sizes.size(self.size)
        t = targets.target(self.target)
        require(t.size is None or self.size == t.size,
                f"Received --target {self.target} with --size {self.size}: {t.description}, so it is chosen by "
                f"{t.size} bytes. Drop --size.")
        for name in ("max_accuracy_drop", "max_file_kb", "max_latency_ms", "max_ram_kb", "margin_se"):
            v = getattr(self, name)
            require(v is None or v >= 0,
                     f"Received an invalid value for `{name}`, expected a number >= 0. Received: {name}={v!r}")
        require(self.selection in confirm.SELECTIONS,
                f"Received an invalid value for `selection`, expected one of {list(confirm.SELECTIONS)}. "
                f"Received: selection={self.selection!r}")
        require(isinstance(self.confidence, (int, float)) and 0.5 <= self.confidence < 1,
                "Received an invalid value for `confidence`, expected a number in [0.5, 1) (0.95: at most one "
                f"selection in 20 promises a file over the limit). Received: confidence={self.confidence!r}")

    @property
    def any(self) -> bool:
        """Whether there is anything to select by: a limit, or a target that not every file can ship for."""
        return self.target != targets.DEFAULT_TARGET or any(
            v is not None for v in (self.max_accuracy_drop, self.max_file_kb, self.max_latency_ms, self.max_ram_kb))


def _device(report, device):
    dev = (report.get("devices") or {}).get(device)
    if dev is None or "results" not in dev:
        raise EdgeCompressError(f"Received an invalid value for `device`: no results for {device!r} in the report. "
                                f"Devices: {sorted((report.get('devices') or {}))}. Run `invoke bench-device` first.")
    return dev


def _latency(report, artifact, device):
    if device is None:
        return artifact["latency_ms"]["p50"]
    r = _device(report, device)["results"].get(artifact["name"])
    return r["latency_ms"]["p50"] if r else None


def _accuracy(report, artifact, device):
    """Top-1 on `device` when it was measured there (bench-device --accuracy), else this machine's."""
    if device is not None:
        r = _device(report, device)["results"].get(artifact["name"]) or {}
        if "accuracy" in r:
            return device_metric(r["accuracy"])
    elif "val_accuracy" in artifact and "val_accuracy" in _baseline(report):
        return artifact["val_accuracy"]  # a search selects on its validation split, never on the test split
    return artifact["accuracy"]


def _baseline(report) -> dict:
    return next((a for a in report["artifacts"] if a["name"] == report.get("baseline")), {})


def measures(report, artifact, device=None, margin_se: float = 0.0) -> dict:
    """What the gate compares with the limits: the top-1 drop in points (plus `margin_se` paired standard
    errors where the file was judged on a search's validation split), file KiB, p50 ms, and TFLM arena KiB (None
    where TFLM does not run the file or it was not measured)."""
    base = next(a for a in report["artifacts"] if a["name"] == report["baseline"])
    margin = margin_se * artifact.get("val_paired_se", 0.0) if device is None and "val_accuracy" in base else 0.0
    return {"accuracy_drop": 100 * (_accuracy(report, base, device) - _accuracy(report, artifact, device)) + margin,
            "file_kb": artifact["size_bytes"] / 1024, "latency_ms": _latency(report, artifact, device),
            "ram_kb": _arena_kb(artifact)}


def _arena_kb(artifact) -> float | None:
    fit = artifact.get("tflm") or {}
    return fit["arena_bytes"] / 1024 if fit.get("arena_bytes") is not None else None


def check_device(report: dict, constraints: Constraints) -> None:
    """Refuses to gate latency on an emulated CPU; warns when device accuracy is missing."""
    from edgecompress.lite.latency import device_emulation

    if constraints.device is None:
        return
    dev = _device(report, constraints.device)
    how = device_emulation(dev)
    if how and constraints.max_latency_ms is not None:
        raise EdgeCompressError(
            f"Received --device {constraints.device!r} with --max-latency-ms {constraints.max_latency_ms:g}, but that "
            f"device's CPU is emulated ({how}): its latency is not a measurement of any board. Gate latency on a real "
            f"device (`invoke bench-device --host user@board`), or drop --max-latency-ms (accuracy from an emulated "
            f"device is real and can be used).")
    if constraints.max_accuracy_drop is not None and not any("accuracy" in r for r in dev["results"].values()):
        logger.warning("%s has no accuracy measured on it; --max-accuracy-drop uses this machine's top-1. Run "
                       "`invoke bench-device --accuracy` to judge on the device.", constraints.device)


def _limits(constraints: Constraints) -> dict:
    """Each limit by the measure it holds (`measures`' keys): None where the user set none."""
    return {"accuracy_drop": constraints.max_accuracy_drop, "file_kb": constraints.max_file_kb,
            "latency_ms": constraints.max_latency_ms, "ram_kb": constraints.max_ram_kb}


def confirms(report: dict, constraints: Constraints) -> bool:
    """Whether the accuracy limit is certified on a confirmation split (`builder.confirm`): a search's report
    whose files were measured there, a limit, `selection="confirmed"`, and this machine's top-1."""
    return (constraints.selection == "confirmed" and constraints.max_accuracy_drop is not None
            and constraints.device is None and "val_accuracy" in _baseline(report)
            and any("confirm" in a for a in report["artifacts"]))


def _select_confirmed(report: dict, constraints: Constraints) -> dict:
    """The smallest file certified by `confirm.confirm` among those meeting the size and latency limits;
    writes `report["confirmation"]`. Raises `GateError` when none meets them or none is certified."""
    base, size = _baseline(report), sizes.size(constraints.size)
    others = {k: v for k, v in _limits(constraints).items() if k != "accuracy_drop"}
    eligible = []
    for a in report["artifacts"]:
        m = measures(report, a)
        if not (_ships(a, constraints) or a["name"] == report["baseline"]):  # the baseline: the walk's reference
            continue
        if all(lim is None or (m[k] is not None and m[k] <= lim) for k, lim in others.items()):
            eligible.append(confirm.Candidate(
                a["name"], size.of(a), 100 * (base["val_accuracy"] - a["val_accuracy"]),
                confirm.PairedDrop.from_dict(a["confirm"]) if "confirm" in a else None,
                judged_se=a.get("val_paired_se") or 0.0, reference=a["name"] == report["baseline"]))
    done = confirm.confirm(eligible, constraints.max_accuracy_drop, constraints.confidence)
    report["confirmation"] = done.to_dict()
    if done.selected is not None:
        chosen = next(a for a in report["artifacts"] if a["name"] == done.selected)
        if not _ships(chosen, constraints):  # only the model's own file was certified
            return _gate_error(report, constraints)
        return chosen
    if not eligible or not done.steps:
        return _gate_error(report, constraints)
    first = done.steps[0]
    raise GateError(
        f"No file could be certified within --max-accuracy-drop {constraints.max_accuracy_drop:g} on the "
        f"confirmation split ({done.counts}): the first file of the judged front, {first.name}, drops "
        f"{first.drop:+.2f} points there with a standard error of {first.se:.2f}, so its "
        f"{100 * constraints.confidence:g}% upper bound is {first.upper:.2f}. More held-out data (more groups) "
        "narrows it; `--selection judged` selects on the judged drop alone, without this guarantee.")


def select(report: dict, constraints: Constraints) -> dict:
    """Returns the selected artifact, or raises `GateError` with what failed. A search's accuracy limit is
    certified on its confirmation split (`confirms`), which writes `report["confirmation"]`."""
    report.pop("confirmation", None)
    if confirms(report, constraints):
        return _select_confirmed(report, constraints)
    if (constraints.selection == "confirmed" and constraints.max_accuracy_drop is not None and report.get("search")
            and constraints.device is None):
        logger.warning("This search's report has no confirmation measures (it was built before them): selecting on "
                       "the judged drop and --margin-se, without the confirmation's guarantee. Build again to certify.")
    limits = _limits(constraints)
    ok = []
    for a in report["artifacts"]:
        m = measures(report, a, constraints.device, constraints.margin_se)  # the judged rule
        if _ships(a, constraints) and all(lim is None or (m[k] is not None and m[k] <= lim)
                                                  for k, lim in limits.items()):
            ok.append(a)
    if ok:
        size = sizes.size(constraints.size)
        return min(ok, key=lambda a: (size.of(a), -_accuracy(report, a, constraints.device)))
    return _gate_error(report, constraints)


def _ships(artifact: dict, constraints: Constraints) -> bool:
    """Whether `artifact` can ship for the build's target (`targets.Target.admits`)."""
    return targets.target(constraints.target).admits(artifact)


def _gate_error(report: dict, constraints: Constraints):
    """Raises `GateError` naming each limit, the best value reached for it, and by how much it was missed."""
    limits = _limits(constraints)
    margin_se = 0.0 if confirms(report, constraints) else constraints.margin_se
    flags = {"accuracy_drop": "--max-accuracy-drop", "file_kb": "--max-file-kb", "latency_ms": "--max-latency-ms",
             "ram_kb": "--max-ram-kb"}
    units = {"accuracy_drop": "points", "file_kb": "KiB", "latency_ms": "ms", "ram_kb": "KiB of TFLM arena"}
    lines = []
    for k, lim in limits.items():
        if lim is None:
            continue
        values = [(measures(report, a, constraints.device, margin_se)[k], a["name"])
                  for a in report["artifacts"]]
        values = [v for v in values if v[0] is not None]
        if not values:  # only the arena can be missing from every file: none runs on TFLM
            refused = next(((a.get("tflm") or {}).get("refused") for a in report["artifacts"]
                            if (a.get("tflm") or {}).get("refused")), "not measured (pip install tflite-micro)")
            lines.append(f"  {flags[k]} {lim:g}: no file runs on TensorFlow Lite Micro; it refuses {refused}. "
                         "Full-integer files (int8) are the ones it runs.")
            continue
        best, name = min(values)
        status = "met by some" if best <= lim else f"missed by {best - lim:.3g} {units[k]}"
        lines.append(f"  {flags[k]} {lim:g}: best {best:.3g} {units[k]} ({name}), {status}")
    held = [a for a in report["artifacts"] if a.get("val_paired_se")] if constraints.max_accuracy_drop is not None \
        and constraints.device is None and margin_se else []
    if held:
        lines.append(f"  (a file's drop counts {margin_se:g} paired standard error of it more: "
                     f"{min(a['val_paired_se'] for a in held):.2f}-{max(a['val_paired_se'] for a in held):.2f} "
                     "points here; more judging images (a `val/` folder) narrow it, --margin-se 0 drops it)")
    t = targets.target(constraints.target)
    refused = [a for a in report["artifacts"] if not t.admits(a)]
    if refused:
        lines.append(f"  --target {t.name}: {len(refused)} of {len(report['artifacts'])} files cannot ship for "
                     f"{t.description.split(':')[0]} (" + "; ".join(f"{a['name']}: {t.why_not(a)}"
                                                                   for a in refused[:3]) +
                     ("; ..." if len(refused) > 3 else "") + ")")
    raise GateError("No artifact meets all the constraints:\n" + "\n".join(lines) +
                    "\nRelax a constraint, or try another recipe (more distillation epochs, lower sparsity).")


def apply_selection(report: dict, constraints: Constraints, out_dir) -> dict | None:
    """Selects in `report` and writes `<out_dir>/selected.tflite`; marks `report["selected"]`.

    With `max_latency_ms` on this host, every file is first timed again in interleaved rounds
    (`builder.measure.time_together`): the p50s the gate compares are of the same moments of the machine, and
    `report["speedup"]` says how many times as fast as the baseline the chosen file ran in them.

    Returns the chosen artifact. On `GateError`, `selected` is None and a
    `selected.tflite` left by an earlier build is removed before re-raising,
    so the file never names something that no longer meets the constraints.
    """
    from pathlib import Path

    from edgecompress.lite.fileio import atomic_write_bytes

    out_dir = Path(out_dir)
    report["constraints"] = constraints.to_dict()
    report.pop("speedup", None)
    timed = None
    if constraints.max_latency_ms is not None and constraints.device is None:
        from edgecompress.builder.measure import time_together

        timed = time_together(report)
    try:
        chosen = select(report, constraints)
    except GateError:
        report["selected"] = None
        (out_dir / "selected.tflite").unlink(missing_ok=True)
        raise
    report["selected"] = chosen["name"]
    if report.get("confirmation"):
        c = confirm.Confirmation.from_dict(report["confirmation"])
        certified = sum(s.certified for s in c.steps)
        logger.info("Confirmed on %s: %d of the %d files tested certified within %g point(s) at %g%%; the walk "
                    "stopped: %s", c.counts, certified, len(c.steps), c.limit, 100 * c.confidence, c.stopped)
        if chosen["name"] == report.get("baseline"):
            logger.warning("Only the model's own float32 file could be certified: with %s, a file must have a "
                           "paired standard error under %.2f points to be certified. The build selected the safest "
                           "file it can defend; more held-out data (more groups) would let smaller files through.",
                           c.counts, c.certifiable_se or 0.0)
    atomic_write_bytes(out_dir / "selected.tflite", Path(chosen["path"]).read_bytes())
    if timed and chosen["name"] != report["baseline"]:
        from edgecompress.lite.speedup import speedup_line

        report["speedup"] = {"file": chosen["name"], "line": speedup_line(timed, Path(chosen["path"]).name)}
        logger.info("Timed beside the model's float32 file: %s", report["speedup"]["line"])
    return chosen


def select_in_build(out_dir, constraints: Constraints) -> dict:
    """Selects again in a finished build, e.g. on device latency after `invoke bench-device`.

    Rewrites the build's report (md, html, json) with the new `selected`
    and `constraints`, even when nothing meets them (then raises `GateError`).
    """
    from edgecompress.report.write import load_report, write_report

    report = load_report(out_dir)
    check_device(report, constraints)
    try:
        return apply_selection(report, constraints, out_dir)
    finally:
        write_report(report, out_dir)
