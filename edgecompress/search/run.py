"""Search: an Optuna study over recipes, within a time budget, collected into a build's result.

What is searched is a search space (`search.space`, JSON like a recipe plus the parameters to vary). A trial is
one `.tflite` file, judged on the judging split (`search.holdout`) by `search.objective`; the study and its
storage are `search.study`, its workers `search.worker`, its stop rule `search.stop`. `search` runs the study
within the budget, then measures every file again on the confirmation split, one at a time, marks the fronts,
and returns a `results.BuildResult` whose files the selection certifies (`builder.confirm`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from edgecompress.builder.measure import MeasureSettings
from edgecompress.configs import require
from edgecompress.errors import EdgeCompressError
from edgecompress.lite import tasks
from edgecompress.report.write import TRIALS_DIR
from edgecompress.search.holdout import Confirming, judging_split, teacher_saw_validation
from edgecompress.search.objective import TrialContext
from edgecompress.search.space import SearchSpace
from edgecompress.search.study import STUDY_NAME, describe_url, fingerprint, open_storage, open_study, study_dir
from edgecompress.search.worker import run_local_workers, run_worker, wait_for_running

logger = logging.getLogger(__name__)


def _absolute(value):
    """A path option as an absolute path (a worker may start elsewhere); names such as `fashion-mnist` unchanged."""
    return str(Path(value).resolve()) if value and Path(str(value)).exists() else value


def trial_entry(t, retried: dict | None = None) -> dict:
    """One trial of the study as the report's search log has it: status (`done`, `stopped early`, `duplicate`,
    `retried`, `failed`, or Optuna's state), why, the stage top-1s, who ran it and how long. `retried` maps
    a failed trial's number to why another trial runs it again (that trial's `retry_reason`)."""
    retried = retried or {}
    from optuna.trial import TrialState

    ua = t.user_attrs
    entry = {"trial": t.number, "name": ua.get("name", f"trial{t.number}"), "choice": ua.get("choice", t.params),
             "status": t.state.name.lower(), "seconds": ua.get("seconds", 0.0), "worker": ua.get("worker"),
             "tf_threads": ua.get("tf_threads")}
    if "stages" in ua:
        entry["stage_accuracy"] = {s["stage"]: s["accuracy"] for s in ua["stages"]}
    if "rung" in ua:
        entry["rung"] = ua["rung"]
    if "suspect" in ua:
        entry["suspect"] = ua["suspect"]
    if "duplicate_of" in ua:
        entry.update(status="duplicate", reason=f"same recipe and scheme as trial {ua['duplicate_of']}")
    elif t.state == TrialState.PRUNED and "stopped_early" in ua:
        se = ua["stopped_early"]
        entry.update(status="stopped early", stage=se["stage"],
                     reason=f"after {se['stage']}: {100 * se['accuracy']:.2f}% < {100 * se['floor']:.2f}%")
    elif t.state == TrialState.PRUNED and "ended" in ua:
        entry.update(status="ended", reason=ua["ended"])
    elif t.number in retried:
        why = retried[t.number]
        how = "was interrupted" if why.get("interrupted") else "died"
        entry.update(status="retried", reason=f"its worker {why.get('worker') or '?'} {how}; run again")
    elif t.state == TrialState.FAIL:
        entry.update(status="failed", error=ua.get("error", "the worker stopped with an error; see its log"))
    elif t.state == TrialState.COMPLETE and "artifact" in ua:
        entry["status"] = "done"
    return entry


def _trial_file(t, store, cache):
    """A finished trial's `results.Artifact`, its file fetched from the artifact store into the cache (checked
    against its sha256)."""
    from optuna.artifacts import download_artifact

    from edgecompress.lite.fileio import sha256_path
    from edgecompress.report.results import Artifact

    record = t.user_attrs["artifact"]
    a = Artifact.from_dict({k: v for k, v in record.items() if k != "artifact_id"})
    local = cache.file(f"{a.name}.trial", a.sha256, ".tflite")
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        download_artifact(artifact_store=store, file_path=str(local), artifact_id=record["artifact_id"])
    if sha256_path(local) != a.sha256:
        raise EdgeCompressError(f"Trial {t.number}'s file in the artifact store does not match its recorded sha256: "
                                "the store was changed or is another study's. Point --artifacts at this study's.")
    a.cache_path = str(local)
    a.extra["trial"] = t.number
    return a


def mark_fronts(artifacts, max_accuracy_drop):
    """Marks `pareto` on every artifact: size, the study's front (validation top-1 against gzip bytes);
    latency, test top-1 against p50. Returns (size front, its hypervolume, the reference point): the
    reference point is the first artifact's (the teacher's), as `pareto.front_hypervolume` defines it."""
    from edgecompress.report.pareto import front_hypervolume, mark_pareto, pareto

    mark_pareto(artifacts)  # both fronts on test top-1; the size front is then the study's
    objectives = [(a.gzip_bytes, a.extra["val_accuracy"]) for a in artifacts]
    front = set(pareto(objectives))
    for i, a in enumerate(artifacts):
        a.extra["pareto"]["size"] = i in front
    hv = front_hypervolume(objectives[1:], objectives[0], max_accuracy_drop)
    return [a for i, a in enumerate(artifacts) if i in front], {**hv, "on": "validation top-1"}




FINISH_RESERVE_S = 90  # of a build's budget, kept for measuring every file again and writing the report


def search(teacher, dataset, space: SearchSpace, pixels, cache, teacher_key, *, budget_minutes: float = 30,
           max_accuracy_drop=None, options=None, seed=0, verbose=1, out_dir=None, storage=None, workers: int = 1,
           artifacts=None, study_name=None, worker_command=None, holdout: str = "test", started_at=None,
           measure: MeasureSettings | None = None):
    """Runs (or resumes) the space's Optuna study within the budget; returns a `results.BuildResult`.

    Trials are judged on images the teacher never learned from
    (`judging_split`: with `holdout="test"`, the data's validation split or
    half of its test split; with `"training"`, a share of the training
    images the teacher was trained without); afterwards every trial's file
    is measured again, one at a time, on the reporting images (top-1, latency).
    With `started_at` (a build's `time.time()` at its start), the budget is
    the whole build's, less `FINISH_RESERVE_S` for that last measurement.
    Artifacts are the teacher's float32 file and one file per finished
    trial, named `<candidate>_<scheme>`, each with `val_accuracy` and
    `pareto` (size: the study's front on validation top-1 and gzip bytes;
    latency: on test top-1 and p50). `search` in the result logs every
    trial (`done`, `stopped early` and at which stage, `failed`,
    `duplicate`, `retried`), the sampler, storage and workers.

    With `workers` > 1, `worker_command` (the argv of `invoke search-worker`
    for this build) is started that many times, each with a share of the
    cores, and this process waits for them.

    `measure` (`MeasureSettings`) times every file; it defaults to the
    build's (`options.measure`). `options` (a `BuildOptions`) is kept in the
    study for the workers that join it.
    """
    from optuna.artifacts import FileSystemArtifactStore

    from edgecompress.builder.measure import measure_file, teacher_baseline
    from edgecompress.recipes.runner import teacher_entry
    from edgecompress.report.results import BuildResult

    require(isinstance(budget_minutes, (int, float)) and budget_minutes > 0,
             "Received an invalid value for `budget_minutes`, expected a number > 0. "
             f"Received: budget_minutes={budget_minutes!r}")
    require(isinstance(workers, int) and workers >= 1,
             f"Received an invalid value for `workers`, expected an integer >= 1. Received: workers={workers!r}")
    require(workers == 1 or worker_command, "`workers` > 1 needs the worker command (use `invoke build-edge`).")
    out_dir = Path(out_dir) if out_dir is not None else Path(cache.root).parent
    measure = measure or (options.measure if options is not None else MeasureSettings())
    threads, runs, warmup = measure.threads, measure.runs, measure.warmup
    started = time.time()
    max_latency_ms = getattr(options, "max_latency_ms", None)
    space = space.for_build(teacher, max_latency_ms)  # levers for speed join only when speed is asked
    if getattr(options, "patience", None):
        space = dataclasses.replace(space, patience=options.patience)
    val, dataset, how = judging_split(dataset, space, seed, holdout)
    store_dir = Path(artifacts) if artifacts else study_dir(out_dir) / "artifacts"
    store_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(store_dir))
    study_storage = open_storage(storage, out_dir)
    margin_se = getattr(options, "margin_se", 0.0) if max_accuracy_drop is not None else 0.0
    fp = fingerprint(teacher, val, space, pixels, seed=seed, max_accuracy_drop=max_accuracy_drop,
                     max_latency_ms=max_latency_ms, margin_se=margin_se)
    name = study_name or STUDY_NAME
    study = open_study(study_storage, space, fp, seed=seed, name=name, where=describe_url(storage))
    study.set_user_attr("ready", False)  # until the teacher is measured and the deadline set
    resumed = len(study.trials)
    study.set_user_attr("holdout", holdout)
    if not resumed and space.sampler != "grid" and not space.ladder:
        study.enqueue_trial(space.template_choice())  # the template recipe is measured first (a ladder: its rungs)

    teacher_log = [teacher_entry(teacher, dataset, cache, teacher_key)]
    base_arts, failed = teacher_baseline(teacher, pixels, dataset, cache, teacher_key, teacher_log[0],
                                         threads=threads, runs=runs, warmup=warmup)
    if not base_arts:
        raise EdgeCompressError("The teacher could not be converted: " + "; ".join(f["error"] for f in failed))
    baseline = base_arts[0]
    judged = measure_file(baseline.cache_path, val, cache, threads=threads, runs=1, warmup=0)
    baseline.extra["val_accuracy"] = judged["accuracy"]
    seen = holdout == "training" and teacher_saw_validation(baseline.extra["val_accuracy"], len(val.y_test),
                                                            baseline.accuracy, len(dataset.y_test))
    if seen:
        logger.warning("The teacher scores %.2f%% on the validation split but %.2f%% on the test split: it was "
                       "probably trained on those images (a model you bring learned from all its training images; "
                       "the search holds %d%% of them out for its trials), so --max-accuracy-drop is judged against "
                       "an inflated top-1 and few files will meet it. Train the model without them "
                       "(`Dataset.without_validation(%g, seed=%d)` holds out the same images), or raise the limit.",
                       100 * seen["validation"], 100 * seen["test"], round(100 * space.validation_fraction),
                       space.validation_fraction, seed)
    # The budget is the build's: it counts from `started_at` (the build's start) and leaves time to measure
    # every file again and write the report.
    deadline = (started_at + 60 * budget_minutes - FINISH_RESERVE_S if started_at is not None
                else time.time() + 60 * budget_minutes)
    study.set_user_attr("deadline", deadline)
    study.set_user_attr("stop", False)
    study.set_user_attr("artifacts", str(store_dir.resolve()))
    study.set_user_attr("baseline_accuracy", baseline.extra["val_accuracy"])
    study.set_user_attr("baseline_terms", judged.get("terms"))  # for each file's paired standard error
    if options is not None and hasattr(options, "to_dict"):  # what `invoke search-worker` rebuilds its side from
        study.set_user_attr("options", {**options.to_dict(), **{k: _absolute(getattr(options, k)) for k in
                                                               ("model", "data", "search", "calibration", "out_dir")}})
    study.set_user_attr("ready", True)  # workers wait for this
    from edgecompress.models.sanity import standard_error

    t, v = tasks.task(dataset.task), baseline.extra["val_accuracy"]
    logger.info("Search %r: sampler %s, %s, budget %g min, %d worker(s)%s; trials are judged on %d images (%s; "
                "teacher's float32 file: %s), reported on %d (%s)", space.name, space.sampler,
                describe_url(storage), budget_minutes, workers,
                f", resuming a study of {resumed} trial(s)" if resumed else "", how["judge_count"], how["judge"],
                f"{100 * v:.2f}% +/- {100 * standard_error(v, how['judge_count']):.2f}" if t.as_percent else t.says(v),
                how["report_count"], how["report"])
    if max_accuracy_drop is not None:
        from edgecompress.builder.confirm import DEFAULT_CONFIDENCE, certifiable_se
        from edgecompress.models.sanity import interval_counts

        g = how.get("report_groups")
        logger.info("The selected file will be certified on the confirmation split (%s: %s), which no trial is "
                    "scored on: a file that "
                    "loses nothing is certified only when its paired standard error there is under %.2f points",
                    how["report"], interval_counts(how["report_count"], g),
                    certifiable_se(max_accuracy_drop, getattr(options, "confidence", DEFAULT_CONFIDENCE), g))
    if workers == 1:
        ctx = TrialContext(teacher, val, space, pixels, cache, teacher_key, baseline.extra["val_accuracy"],
                                    max_accuracy_drop, store, seed=seed, verbose=verbose,
                                    measure=MeasureSettings(threads, runs=20, warmup=5),
                                    max_latency_ms=max_latency_ms, baseline_terms=judged.get("terms"),
                                    margin_se=margin_se)
        run_worker(study, study_storage, ctx, deadline=deadline, trials=space.trials)
    else:
        run_local_workers(study, study_storage, worker_command, workers)
    wait_for_running(study, study_storage)  # workers on other machines finish their trial

    # Collect: every trial's file, measured again on the test split (the confirmation split), one at a time.
    confirming = Confirming(baseline, dataset, cache, MeasureSettings(threads, runs=runs, warmup=warmup))
    trials = study.get_trials(deepcopy=False)
    log, arts, names = [], [], set()
    retried = {t.user_attrs["retry_of"]: t.user_attrs.get("retry_reason", {}) for t in trials if "retry_of" in t.user_attrs}
    for t in trials:
        entry = trial_entry(t, retried)
        if entry["status"] == "done":
            a = _trial_file(t, store, cache)
            if a.name in names:
                a.name = f"{a.name}-t{t.number}"
            names.add(a.name)
            a.path = f"{TRIALS_DIR}/t{t.number:03d}.tflite"  # short names under trials/; trials.csv maps them
            m = measure_file(a.cache_path, dataset, cache, threads=threads, runs=runs, warmup=warmup)
            a.extra["val_accuracy"], a.accuracy = a.accuracy, m["accuracy"]
            a.latency_ms, a.init_ms, a.agreement = m["latency_ms"], m["init_ms"], None
            a.extra["confirm"] = confirming.paired(m["terms"]).to_dict()
            arts.append(a)
            entry["artifacts"] = [a.name]
        log.append(entry)
    made = {trials[e["trial"]].user_attrs.get("config") for e in log if e["status"] == "done"}
    for e in log:  # a failure counts (exit 4) unless a later trial made the same file
        if e["status"] == "failed" and trials[e["trial"]].user_attrs.get("config") not in made:
            failed.append({"name": e["name"], "error": e["error"]})
    done = sum(e["status"] == "done" for e in log)
    if not done:
        raise EdgeCompressError(f"Search {space.name!r}: no trial finished:\n" + "\n".join(
            f"  trial {e['trial']} {e['name']}: {e['status']} {e.get('error') or e.get('reason') or ''}" for e in log))
    baseline.extra["confirm"] = confirming.reference().to_dict()
    artifacts = [baseline] + arts
    front, hv = mark_fronts(artifacts, max_accuracy_drop)
    logger.info("Search done: %d trial(s) finished of %d in %.0f s; front: %s; hypervolume %.4g KB x points", done,
                len(trials), time.time() - started, ", ".join(a.name for a in front), hv["value"])
    counts = {}
    for e in log:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    return BuildResult(artifacts, failed, teacher_log, baseline.name, search={
        "space": space.to_dict(), "budget_minutes": budget_minutes, "seconds": round(time.time() - started, 1),
        "sampler": space.sampler, "storage": describe_url(storage), "study": name, "workers": workers,
        "validation": {"count": int(len(val.y_test)), "fraction": space.validation_fraction, **how,
                       **({"teacher_saw_it": seen} if seen else {})},
        "ladder_skipped": study.user_attrs.get("ladder_skipped") or {},
        "stopped": study.user_attrs.get("stopped") or "the budget",
        "resumed_trials": resumed, "counts": counts, "candidates": log,
        "hypervolume": hv})
