"""One trial: the recipe's stages (cached), one file, measured on the judging split; stopped early when its
stage top-1 leaves no hope; not run twice.

- **Stopping early.** After each stage, a trial whose judged top-1 is below what the limit allows, even with the
  best recovery later stages gave earlier trials (plus half a point), raises `optuna.TrialPruned` and records the
  stage (`stopped_early`). Optuna's own pruners are single-objective only.
- **Not twice.** Trials whose recipe and scheme equal a finished one's (`recipes.recipe.config_key`) take its
  result without running; one running elsewhere is waited for.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from edgecompress.builder.measure import MeasureSettings
from edgecompress.errors import EdgeCompressError, NotApplicable
from edgecompress.lite import tasks
from edgecompress.models.sanity import ImplausibleResult, limit_verdict, suspect_gain
from edgecompress.report import sizes
from edgecompress.search import records
from edgecompress.search.records import EarlyStop, StageScore
from edgecompress.search.stale import Heartbeat, fail_stale_trials, heartbeat_storage, retry, worker_id

logger = logging.getLogger(__name__)


MAX_DUPLICATES_IN_A_ROW = 20


RECOVERY_SLACK = 0.005  # half a point on top of the best recovery seen

# A trial's file is timed briefly: every file is timed again, one at a time, after the loop (`run._collect`).
TRIAL_RUNS, TRIAL_WARMUP = 20, 5


@dataclasses.dataclass
class TrialContext:
    """What every trial of one worker needs; built once per process."""

    teacher: object
    dataset: object  # training images minus the validation split; its test split is the validation split
    space: object
    pixels: object
    cache: object
    teacher_key: str
    baseline_metric: float  # the teacher's float32 file, validation top-1
    max_accuracy_drop: float | None
    artifact_store: object
    seed: int = 0
    verbose: int = 0
    # Latency is measured again one file at a time after the study; a trial's is only indicative.
    measure: MeasureSettings = MeasureSettings(runs=TRIAL_RUNS, warmup=TRIAL_WARMUP)
    # `--max-latency-ms` as a constraint on each trial (p50 of its file, minus the limit): only where the
    # trial's file is timed alone (one worker); with several, the final selection holds it.
    max_latency_ms: float | None = None
    # The teacher's float32 file's per-example metric terms on the judging images (`evaluation.pack_terms`),
    # and how many paired standard errors of its drop a file must keep inside the limit
    # (`selection.Constraints.margin_se`).
    baseline_terms: str | None = None
    margin_se: float = 0.0
    deadline: float | None = None  # the loop's end (`records.StudySetup.deadline`), for the log
    size: str = sizes.DEFAULT_SIZE  # the second objective: file or gzip bytes (`report.sizes`)
    strip_names: bool = False  # each file without the names no kernel reads (the target's, `lite.strip`)


def space_for_build(space, teacher, settings):
    """`space` as a build searches it, the same in the search and in every worker that joins it (the study's
    fingerprint holds it): speed's levers join only when a latency limit is asked (`SearchSpace.for_build`),
    and `settings.patience` replaces the space's own."""
    space = space.for_build(teacher, settings.constraints.max_latency_ms, settings.constraints.size,
                            settings.constraints.target)
    return dataclasses.replace(space, patience=settings.patience) if settings.patience else space


def trial_context(teacher, val, space, pixels, cache, teacher_key, setup, settings, store, *,
                  timed_alone: bool) -> TrialContext:
    """The one way a worker's `TrialContext` is built, in the search's own process and in a worker that joins
    it (`worker.search_worker`): from the study's `setup` (`records.StudySetup`: the baseline it judges
    against, the deadline) and the search's `settings` (`options.SearchSettings`). `timed_alone`: the trial's
    file is timed with no other worker running, so `--max-latency-ms` can be a constraint on each trial."""
    c = settings.constraints
    return TrialContext(teacher, val, space, pixels, cache, teacher_key, setup.baseline, c.max_accuracy_drop, store,
                        seed=settings.seed, verbose=settings.verbose,
                        measure=MeasureSettings(settings.measure.threads, runs=TRIAL_RUNS, warmup=TRIAL_WARMUP),
                        max_latency_ms=c.max_latency_ms if timed_alone else None,
                        baseline_terms=setup.baseline_terms, margin_se=settings.margin_se, deadline=setup.deadline,
                        size=c.size, strip_names=settings.strips_names)


def finished_trials(study, exclude: int):
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.number != exclude and records.read(t).duplicate_of is None]


def recovery_margins(study, exclude: int = -1) -> dict:
    """Per stage kind, what finished trials' files gained (or lost) after that stage: the file's judged metric
    minus the stage's, every observation."""
    from optuna.trial import TrialState

    out: dict = {}
    for t in finished_trials(study, exclude):
        r = records.read(t)
        if t.state != TrialState.COMPLETE or r.judged is None:
            continue
        for s in r.stages:
            out.setdefault(s.stage, []).append(r.judged - s.metric)
    return out


def early_stop_floor(study, stage: str, baseline: float, max_accuracy_drop, *, exclude: int = -1,
                     min_seen: int = 2) -> float | None:
    """The validation top-1 below which a trial stops after `stage`, or None (no limit, or fewer than
    `min_seen` finished trials to learn from).

    The floor is what the limit allows (`baseline - max_accuracy_drop`)
    less the largest gain any finished trial's file made over its own
    top-1 after that stage kind, less `RECOVERY_SLACK`: a trial is stopped
    only when even the best recovery seen would not bring it within the limit.
    """
    if max_accuracy_drop is None:
        return None
    seen = recovery_margins(study, exclude).get(stage, [])
    if len(seen) < min_seen:
        return None
    return baseline - max_accuracy_drop / 100 - max(0.0, max(seen)) - RECOVERY_SLACK


class Objective:
    """One trial: the recipe's stages (cached), one file, measured on the validation split."""

    def __init__(self, ctx: TrialContext, storage):
        self.ctx = ctx
        self.storage = storage  # the study's, for the stale-trial check while waiting on a duplicate
        self.duplicates_in_a_row = 0

    def __call__(self, trial):
        import optuna
        from optuna.trial import TrialState

        from edgecompress.recipes.recipe import config_key

        ctx = self.ctx
        choice = ctx.space.suggest(trial)
        recipe = ctx.space.recipe(choice)
        rung = records.read(trial).rung
        if rung:  # a ladder rung's files carry its name (`model_int8`, `prune-50_int8`)
            recipe = recipe.replace(name=rung)
        key = config_key(recipe)
        # who handled it, a duplicate too
        records.update(trial, config=key, name=recipe.name, choice=choice, worker=worker_id())
        same = self._same(trial, key)
        if same is not None:
            self.duplicates_in_a_row += 1
            theirs = records.read(same)
            records.update(trial, duplicate_of=same.number, over_limit=theirs.over_limit,
                           over_latency=theirs.over_latency)
            logger.info("[trial %d] %s: same recipe and scheme as trial %d, not run again", trial.number,
                        recipe.name, same.number)
            if same.state == TrialState.PRUNED:
                raise optuna.TrialPruned(f"as trial {same.number}")
            if theirs.over_limit is not None:
                trial.set_constraint("accuracy_drop", theirs.over_limit)
            if theirs.over_latency is not None:
                trial.set_constraint("latency_ms", theirs.over_latency)
            return tuple(same.values)
        self.duplicates_in_a_row = 0
        with Heartbeat(trial, beat=not heartbeat_storage(self.storage)):
            try:
                return self._run(trial, recipe)
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C: Optuna fails the trial; run it again on resume
                retry(trial.study, trial, {"worker": worker_id(), "seen": time.time(), "interrupted": True})
                raise

    def _same(self, trial, key):
        """A finished trial with the same config (waiting for one still running elsewhere), or None."""
        from optuna.trial import TrialState

        while True:
            others = [t for t in trial.study.get_trials(deepcopy=False)
                      if t.number != trial.number and (r := records.read(t)).config == key
                      and r.duplicate_of is None]
            done = [t for t in others if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            if done:
                return done[0]
            running = [t for t in others if t.state == TrialState.RUNNING and t.number < trial.number]
            if not running:
                return None
            time.sleep(2)
            fail_stale_trials(trial.study, self.storage)

    def _run(self, trial, recipe):
        """The trial's file, made and judged; a failure ends the trial, never the study."""
        import optuna

        from edgecompress.models.backend import tf

        t0 = time.time()
        logger.info("[trial %d] %s", trial.number, recipe.name)
        # 0: TensorFlow's default (every core); a local worker's share otherwise (`run_local_workers`)
        records.update(trial, tf_threads=tf.config.threading.get_intra_op_parallelism_threads())
        try:
            art, se = self._make_file(trial, recipe, t0)
        except optuna.TrialPruned:
            raise
        except (ImplausibleResult, NotApplicable) as e:  # a number that cannot be true, or a stage with nothing
            # to do in this model, ends this branch, not the study
            records.update(trial, ended=str(e)[:2000], seconds=round(time.time() - t0, 1))
            logger.warning("[trial %d] %s ended: %s", trial.number, recipe.name, e)
            raise optuna.TrialPruned(str(e)) from None
        except Exception as e:  # one trial's failure (ours, or TensorFlow's) must not end the study
            message = str(e) if isinstance(e, EdgeCompressError) else f"{type(e).__name__}: {e}"
            records.update(trial, error=message[:2000], seconds=round(time.time() - t0, 1))
            logger.error("[trial %d] %s failed: %s", trial.number, recipe.name, message,
                         exc_info=not isinstance(e, EdgeCompressError))
            raise
        return self._record(trial, recipe, art, se, t0)

    def _early_stop(self, trial, t0):
        """`run_stages`' `on_stage`: records each stage's judged metric, and stops the trial (`TrialPruned`) when
        it is under `early_stop_floor`."""
        import optuna

        ctx, stages = self.ctx, []

        def check(index, result):
            acc = result.metrics.get("accuracy")
            if acc is None:
                return
            stages.append(StageScore(result.stage, acc, result.seconds, result.cached))
            records.update(trial, stages=tuple(stages))
            floor = early_stop_floor(trial.study, result.stage, ctx.baseline_metric, ctx.max_accuracy_drop,
                                     exclude=trial.number)
            if floor is not None and acc < floor:
                records.update(trial, stopped_early=EarlyStop(result.stage, index, acc, floor),
                               seconds=round(time.time() - t0, 1))
                t = tasks.task(ctx.dataset.task)
                logger.info("[trial %d] stopped early after %s: %s < %s (the limit, less the best "
                            "recovery later stages gave earlier trials)", trial.number, result.stage, t.says(acc),
                            t.format(floor))
                raise optuna.TrialPruned(f"stopped early after {result.stage}")

        return check

    def _make_file(self, trial, recipe, t0):
        """The recipe's stages (cached), its one file converted and judged: (its `Artifact`, the paired standard
        error of its drop in points or None). A selective-int8 file replaces an int8 file over the limit."""
        from edgecompress.builder.measure import convert_and_measure
        from edgecompress.recipes.runner import run_stages

        ctx = self.ctx
        final, final_key, stage_log = run_stages(ctx.teacher, ctx.dataset, recipe, ctx.cache, ctx.teacher_key,
                                                 seed=ctx.seed, verbose=ctx.verbose,
                                                 on_stage=self._early_stop(trial, t0))
        prov = {"recipe": recipe.to_dict(), "stages": [s.to_dict() for s in stage_log],
                "search": {"trial": trial.number, "choice": records.read(trial).choice}}
        arts, failed = convert_and_measure(final, recipe.quantize, ctx.pixels, ctx.dataset, ctx.cache, final_key,
                                           prefix=f"{recipe.name}_", provenance=prov, strip_names=ctx.strip_names,
                                           **ctx.measure.kwargs())
        if failed:
            raise EdgeCompressError(failed[0]["error"])
        art = arts[0]
        suspect = suspect_gain(art.name, art.accuracy, ctx.baseline_metric, len(ctx.dataset.y_test),
                               source="the teacher's float32 file")
        if suspect:
            records.update(trial, suspect=suspect)
            logger.warning("[trial %d] %s", trial.number, suspect)
        se = paired_se_points(ctx, art)
        return self._selective(trial, recipe, arts, final, art, se)

    def _selective(self, trial, recipe, arts, final, art, se):
        """(`art`, `se`), or a selective-int8 file and its error where `art` is int8 over the limit (margin
        included) and the space allows it (`SearchSpace.selective_int8`)."""
        from edgecompress.builder.measure import recover_int8, recoverable
        from edgecompress.report.results import BuildResult

        ctx = self.ctx
        margin = ctx.margin_se * (se or 0.0) if ctx.max_accuracy_drop is not None else 0
        if not (ctx.space.selective_int8 and ctx.max_accuracy_drop is not None and recoverable(art)
                and 100 * (ctx.baseline_metric - art.accuracy) + margin > ctx.max_accuracy_drop):
            return art, se
        result = BuildResult(arts, final_model=final)
        try:  # the recovery aims inside the margin too
            rec = recover_int8(result, ctx.dataset, ctx.pixels, ctx.cache, max(ctx.max_accuracy_drop - margin, 0.0),
                               baseline_metric=ctx.baseline_metric, measure=ctx.measure,
                               prefix=f"{recipe.name}_", offer=False)
        except Exception as e:  # TF's debugger refuses some models; the plain int8 file stays the result
            logger.warning("[trial %d] selective int8 could not be made (%s: %s); keeping full int8",
                           trial.number, type(e).__name__, e)
            return art, se
        selective = [a for a in result.artifacts if a.name.endswith("_int8_selective")]
        if not (rec and selective and selective[0].accuracy > art.accuracy):
            return art, se
        records.update(trial, int8_recovery={k: rec[k] for k in ("float_layers",) if k in rec})
        return selective[0], paired_se_points(ctx, selective[0])  # the file that replaced it, measured again

    def _record(self, trial, recipe, art, se, t0):
        """Uploads the trial's file, writes its record and constraints, logs it; returns the trial's values."""
        from optuna.artifacts import upload_artifact

        ctx = self.ctx
        if se is not None:
            art.extra["val_paired_se"] = round(se, 4)
        record = art.to_dict()
        record["artifact_id"] = upload_artifact(artifact_store=ctx.artifact_store, file_path=art.cache_path,
                                                study_or_trial=trial)
        drop = 100 * (ctx.baseline_metric - art.accuracy)
        margin = ctx.margin_se * record.get("val_paired_se", 0.0)
        over = over_latency = None
        if ctx.max_accuracy_drop is not None:  # points over the limit, margin included; <= 0 is feasible
            over = drop + margin - ctx.max_accuracy_drop
            trial.set_constraint("accuracy_drop", over)
        slow = ""
        if ctx.max_latency_ms is not None and art.p50_ms is not None:  # ms over the limit; <= 0 is feasible
            over_latency = art.p50_ms - ctx.max_latency_ms
            trial.set_constraint("latency_ms", over_latency)
            slow = (f"; p50 {art.p50_ms:.3f} ms, {'within' if art.p50_ms <= ctx.max_latency_ms else 'over'} "
                    f"--max-latency-ms {ctx.max_latency_ms:g}")
        done = records.update(trial, artifact=record, judged=art.accuracy, over_limit=over,
                              margin=margin if over is not None else 0.0, over_latency=over_latency,
                              seconds=round(time.time() - t0, 1))
        rung = f" (ladder: {done.rung})" if done.rung else ""
        verdict = "" if ctx.max_accuracy_drop is None else (
            f"; {-drop + 0.0:+.2f} points against the teacher's file, "
            + limit_verdict(drop, margin, ctx.max_accuracy_drop, ctx.margin_se))
        left = f"; {max(0.0, ctx.deadline - time.time()) / 60:.0f} min of the budget left" if ctx.deadline else ""
        logger.info("[trial %d] %s%s: held-out %s at %.1f KB file, %.1f KB gzipped (%.0f s)%s%s; levers: %s%s",
                    trial.number, art.name, rung, tasks.task(ctx.dataset.task).says(art.accuracy),
                    art.size_bytes / 1024, art.gzip_bytes / 1024, time.time() - t0, verdict, slow, recipe.levers(),
                    left)
        return art.accuracy, float(sizes.size(ctx.size).of(art))


def paired_se_points(ctx: TrialContext, art) -> float | None:
    """The paired standard error, in points, of `art`'s drop from the teacher's float32 file on the judging
    images (`sanity.paired_standard_error` of their per-example metric terms, `lite.tasks.Task.terms`,
    cluster-robust over the judging split's groups when it has them), or None
    where the study holds no terms of the teacher's (one started before they were kept)."""
    import numpy as np

    from edgecompress.data.preprocessing import to_model_input
    from edgecompress.lite.evaluation import evaluate_tflite, read_terms
    from edgecompress.models.sanity import paired_standard_error

    if ctx.baseline_terms is None:
        return None
    terms = art.terms
    if terms is None:  # a file measured without it (a selective-int8 file): measured again on the same images
        result, _ = evaluate_tflite(art.cache_path, to_model_input(ctx.dataset.x_test, ctx.dataset.preprocessing),
                                    ctx.dataset.y_test, task=ctx.dataset.task)
        terms = result["terms"]
    n = len(np.asarray(ctx.dataset.y_test))
    return 100 * paired_standard_error(read_terms(ctx.baseline_terms, n), read_terms(terms, n),
                                       ctx.dataset.groups_test)  # by group, when the judging split has groups
