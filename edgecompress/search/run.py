"""Search: an Optuna study over recipes, within a time budget, collected into a build's result.

What is searched is a search space (`search.space`, JSON like a recipe plus the parameters to vary). A trial is
one `.tflite` file, judged on the judging split (`search.holdout`) by `search.objective`; the study and its
storage are `search.study`, its workers `search.worker`, its stop rule `search.stop`. `search` runs the study
within the budget, then measures every file again on the confirmation split, one at a time, marks the fronts,
and returns a `results.BuildResult` whose files the selection certifies (`builder.confirm`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from edgecompress.builder.options import SearchSettings
from edgecompress.configs import require
from edgecompress.errors import EdgeCompressError
from edgecompress.lite import tasks
from edgecompress.report import sizes
from edgecompress.report.write import TRIALS_DIR
from edgecompress.search import records
from edgecompress.search.holdout import Confirming, judging_split, teacher_saw_validation
from edgecompress.search.objective import space_for_build, trial_context
from edgecompress.search.records import StudySetup
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

    r = records.read(t)
    entry = {"trial": t.number, "name": r.name or f"trial{t.number}", "choice": r.choice or t.params,
             "status": t.state.name.lower(), "seconds": r.seconds, "worker": r.worker, "tf_threads": r.tf_threads}
    if r.stages:
        entry["stage_accuracy"] = {s.stage: s.metric for s in r.stages}
    if r.rung:
        entry["rung"] = r.rung
    if r.suspect:
        entry["suspect"] = r.suspect
    if r.duplicate_of is not None:
        entry.update(status="duplicate", reason=f"same recipe and scheme as trial {r.duplicate_of}")
    elif t.state == TrialState.PRUNED and r.stopped_early is not None:
        se = r.stopped_early
        entry.update(status="stopped early", stage=se.stage,
                     reason=f"after {se.stage}: {100 * se.metric:.2f}% < {100 * se.floor:.2f}%")
    elif t.state == TrialState.PRUNED and r.ended:
        entry.update(status="ended", reason=r.ended)
    elif t.number in retried:
        why = retried[t.number]
        how = "was interrupted" if why.get("interrupted") else "died"
        entry.update(status="retried", reason=f"its worker {why.get('worker') or '?'} {how}; run again")
    elif t.state == TrialState.FAIL:
        entry.update(status="failed", error=r.error or "the worker stopped with an error; see its log")
    elif t.state == TrialState.COMPLETE and r.artifact is not None:
        entry["status"] = "done"
    return entry


def _trial_file(t, store, cache):
    """A finished trial's `results.Artifact`, its file fetched from the artifact store into the cache (checked
    against its sha256)."""
    from optuna.artifacts import download_artifact

    from edgecompress.lite.fileio import sha256_path
    from edgecompress.report.results import Artifact

    record = records.read(t).artifact
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


def mark_fronts(artifacts, max_accuracy_drop, size):
    """Marks `pareto` on every artifact: size, the study's front (validation metric against `size`, a
    `sizes.Size`); latency, test metric against p50. Returns (size front, its hypervolume, the reference point):
    the reference point is the first artifact's (the teacher's), as `pareto.front_hypervolume` defines it."""
    from edgecompress.report.pareto import front_hypervolume, mark_pareto, pareto

    mark_pareto(artifacts, size)  # both fronts on test top-1; the size front is then the study's
    objectives = [(size.of(a), a.extra["val_accuracy"]) for a in artifacts]
    front = set(pareto(objectives))
    for i, a in enumerate(artifacts):
        a.extra["pareto"]["size"] = i in front
    hv = front_hypervolume(objectives[1:], objectives[0], max_accuracy_drop)
    return [a for i, a in enumerate(artifacts) if i in front], {**hv, "on": "validation top-1"}




FINISH_RESERVE_S = 90  # of a build's budget, kept for measuring every file again and writing the report


def search(teacher, dataset, space: SearchSpace, pixels, cache, teacher_key, settings: SearchSettings | None = None,
           *, out_dir=None, worker_command=None, worker_options: dict | None = None, started_at=None):
    """Runs (or resumes) the space's Optuna study within the budget; returns a `results.BuildResult`.

    Trials are judged on images the model never learned from (`holdout.judging_split`: with
    `settings.holdout="test"`, the data's validation split or half of its test split; with `"training"`, a
    share of the training images the model was trained without); afterwards every trial's file is measured
    again, one at a time, on the confirmation split (`holdout.Confirming`), and the fronts are marked.

    Args:
        settings: `options.SearchSettings`: the budget, the limits, the timing, the study's storage. Defaults to
            `SearchSettings()`.
        out_dir: The build folder (the study's journal and artifact store go under it). Defaults to the
            cache's parent.
        worker_command: With `settings.workers` > 1, the argv of `invoke search-worker` for this build
            (`worker.worker_command`), started that many times, each with a share of the cores.
        worker_options: The build's `BuildOptions.to_dict()`, kept in the study (`records.StudySetup`) for
            workers that join it from elsewhere. Defaults to None: none can.
        started_at: A build's `time.time()` at its start: the budget is then the whole build's, less
            `FINISH_RESERVE_S` for the last measurement. Defaults to None: from now.

    Artifacts are the model's float32 file and one file per finished trial, named `<candidate>_<scheme>`,
    each with `val_accuracy` and `pareto`. `search` in the result logs every trial (`trial_entry`).
    """
    from optuna.artifacts import FileSystemArtifactStore

    from edgecompress.recipes.runner import teacher_entry
    from edgecompress.report.results import BuildResult

    settings = settings or SearchSettings()
    require(settings.workers == 1 or worker_command, "`workers` > 1 needs the worker command (use `invoke build-edge`).")
    limit = settings.constraints.max_accuracy_drop
    out_dir = Path(out_dir) if out_dir is not None else Path(cache.root).parent
    measure = settings.measure
    started = time.time()
    space = space_for_build(space, teacher, settings)
    val, dataset, how = judging_split(dataset, space, settings.seed, settings.holdout)
    store_dir = Path(settings.artifacts) if settings.artifacts else study_dir(out_dir) / "artifacts"
    store_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(store_dir))
    study_storage = open_storage(settings.storage, out_dir)
    fp = fingerprint(teacher, val, space, pixels, seed=settings.seed, max_accuracy_drop=limit,
                     max_latency_ms=settings.constraints.max_latency_ms, margin_se=settings.margin_se,
                     size=settings.constraints.size,
                     strip_names=settings.strips_names)
    name = settings.study or STUDY_NAME
    study = open_study(study_storage, space, fp, seed=settings.seed, name=name, where=describe_url(settings.storage))
    study.set_user_attr(records.READY, False)  # until the model is measured and the deadline set
    resumed = len(study.trials)
    if not resumed and space.sampler != "grid" and not space.ladder:
        study.enqueue_trial(space.template_choice())  # the template recipe is measured first (a ladder: its rungs)

    teacher_log = [teacher_entry(teacher, dataset, cache, teacher_key)]
    baseline, judged, failed = _baseline(teacher, pixels, dataset, val, cache, teacher_key, teacher_log[0], measure)
    seen = _saw_the_judging_split(baseline, val, dataset, space, settings)
    # The budget is the build's: it counts from `started_at` (the build's start) and leaves time to measure
    # every file again and write the report.
    deadline = (started_at + 60 * settings.budget_minutes - FINISH_RESERVE_S if started_at is not None
                else time.time() + 60 * settings.budget_minutes)
    options = None if worker_options is None else {
        **worker_options, **{k: _absolute(worker_options.get(k)) for k in ("model", "data", "search", "calibration",
                                                                          "out_dir")}}
    setup = StudySetup(holdout=settings.holdout, deadline=deadline, artifacts=str(store_dir.resolve()),
                       baseline=judged["accuracy"], baseline_terms=judged.get("terms"), options=options)
    records.write_setup(study, setup)
    study.set_user_attr(records.STOP, False)
    study.set_user_attr(records.READY, True)  # workers wait for this
    _log_start(space, settings, resumed, how, baseline, dataset)
    if settings.workers == 1:
        ctx = trial_context(teacher, val, space, pixels, cache, teacher_key, setup, settings, store, timed_alone=True)
        run_worker(study, study_storage, ctx, deadline=deadline, trials=space.trials)
    else:
        run_local_workers(study, study_storage, worker_command, settings.workers)
    wait_for_running(study, study_storage)  # workers on other machines finish their trial
    log, arts = _collect(study, store, cache, dataset, baseline, measure, failed, space.name)
    artifacts = [baseline] + arts
    front, hv = mark_fronts(artifacts, limit, sizes.size(settings.constraints.size))
    logger.info("Search done: %d trial(s) finished of %d in %.0f s; front: %s; hypervolume %.4g KB x points",
                sum(e["status"] == "done" for e in log), len(log), time.time() - started,
                ", ".join(a.name for a in front), hv["value"])
    return BuildResult(artifacts, failed, teacher_log, baseline.name, search={
        "space": space.to_dict(), "budget_minutes": settings.budget_minutes, "seconds": round(time.time() - started, 1),
        "sampler": space.sampler, "storage": describe_url(settings.storage), "study": name,
        "workers": settings.workers,
        "validation": {"count": int(len(val.y_test)), "fraction": space.validation_fraction, **how,
                       **({"teacher_saw_it": seen} if seen else {})},
        "ladder_skipped": study.user_attrs.get(records.LADDER_SKIPPED) or {},
        "stopped": study.user_attrs.get(records.STOPPED) or "the budget",
        "resumed_trials": resumed, "counts": dict(Counter(e["status"] for e in log)), "candidates": log,
        "hypervolume": hv})


def _baseline(teacher, pixels, dataset, val, cache, teacher_key, entry, measure):
    """The model's float32 file, measured on the reporting split and judged on `val`: (its `Artifact`, its
    judging measures with per-example terms, the variants that failed)."""
    from edgecompress.builder.measure import measure_file, teacher_baseline

    base_arts, failed = teacher_baseline(teacher, pixels, dataset, cache, teacher_key, entry, **measure.kwargs())
    if not base_arts:
        raise EdgeCompressError("The teacher could not be converted: " + "; ".join(f["error"] for f in failed))
    baseline = base_arts[0]
    judged = measure_file(baseline.cache_path, val, cache, threads=measure.threads, runs=1, warmup=0)
    baseline.extra["val_accuracy"] = judged["accuracy"]
    return baseline, judged, failed


def _saw_the_judging_split(baseline, val, dataset, space, settings) -> dict | None:
    """With `holdout="training"`: the model's scores when it probably learned from the judging images (and a
    warning), else None."""
    if settings.holdout != "training":
        return None
    seen = teacher_saw_validation(baseline.extra["val_accuracy"], len(val.y_test), baseline.accuracy,
                                  len(dataset.y_test))
    if seen:
        logger.warning("The teacher scores %.2f%% on the validation split but %.2f%% on the test split: it was "
                       "probably trained on those images (a model you bring learned from all its training images; "
                       "the search holds %d%% of them out for its trials), so --max-accuracy-drop is judged against "
                       "an inflated top-1 and few files will meet it. Train the model without them "
                       "(`Dataset.without_validation(%g, seed=%d)` holds out the same images), or raise the limit.",
                       100 * seen["validation"], 100 * seen["test"], round(100 * space.validation_fraction),
                       space.validation_fraction, settings.seed)
    return seen


def _log_start(space, settings, resumed, how, baseline, dataset) -> None:
    """What the search is about to do, and on which images."""
    from edgecompress.models.sanity import standard_error

    t, v = tasks.task(dataset.task), baseline.extra["val_accuracy"]
    logger.info("Search %r: sampler %s, %s, budget %g min, %d worker(s)%s; trials are judged on %d images (%s; "
                "teacher's float32 file: %s), reported on %d (%s)", space.name, space.sampler,
                describe_url(settings.storage), settings.budget_minutes, settings.workers,
                f", resuming a study of {resumed} trial(s)" if resumed else "", how["judge_count"], how["judge"],
                f"{100 * v:.2f}% +/- {100 * standard_error(v, how['judge_count']):.2f}" if t.as_percent else t.says(v),
                how["report_count"], how["report"])
    if settings.constraints.max_accuracy_drop is not None:
        from edgecompress.builder.confirm import certifiable_se
        from edgecompress.models.sanity import interval_counts

        logger.info("The selected file will be certified on the confirmation split (%s: %s), which no trial is "
                    "scored on: a file that loses nothing is certified only when its paired standard error there "
                    "is under %.2f points", how["report"], interval_counts(how["report_count"], how.get("report_groups")),
                    certifiable_se(settings.constraints.max_accuracy_drop, settings.constraints.confidence,
                                   how.get("report_groups")))


def _collect(study, store, cache, dataset, baseline, measure, failed: list, label: str = ""):
    """Every finished trial's file, measured again on the confirmation split one at a time: (the search log,
    the artifacts). Adds to `failed` each failure no later trial made good."""
    from edgecompress.builder.measure import measure_file

    confirming = Confirming(baseline, dataset, cache, measure)
    trials = study.get_trials(deepcopy=False)
    log, arts, names = [], [], set()
    retried = {r.retry_of: r.retry_reason or {} for r in map(records.read, trials) if r.retry_of is not None}
    for t in trials:
        entry = trial_entry(t, retried)
        if entry["status"] == "done":
            a = _trial_file(t, store, cache)
            if a.name in names:
                a.name = f"{a.name}-t{t.number}"
            names.add(a.name)
            a.path = f"{TRIALS_DIR}/t{t.number:03d}.tflite"  # short names under trials/; trials.csv maps them
            m = measure_file(a.cache_path, dataset, cache, **measure.kwargs())
            a.extra["val_accuracy"], a.accuracy = a.accuracy, m["accuracy"]
            a.latency_ms, a.init_ms, a.agreement = m["latency_ms"], m["init_ms"], None
            a.extra["confirm"] = confirming.paired(m["terms"]).to_dict()
            arts.append(a)
            entry["artifacts"] = [a.name]
        log.append(entry)
    made = {records.read(trials[e["trial"]]).config for e in log if e["status"] == "done"}
    for e in log:  # a failure counts (exit 4) unless a later trial made the same file
        if e["status"] == "failed" and records.read(trials[e["trial"]]).config not in made:
            failed.append({"name": e["name"], "error": e["error"]})
    if not any(e["status"] == "done" for e in log):
        raise EdgeCompressError(f"Search {label!r}: no trial finished:\n" + "\n".join(
            f"  trial {e['trial']} {e['name']}: {e['status']} {e.get('error') or e.get('reason') or ''}" for e in log))
    baseline.extra["confirm"] = confirming.reference().to_dict()
    return log, arts


