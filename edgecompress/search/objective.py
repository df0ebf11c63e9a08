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
from edgecompress.search.stale import Heartbeat, fail_stale_trials, heartbeat_storage, retry, worker_id

logger = logging.getLogger(__name__)


MAX_DUPLICATES_IN_A_ROW = 20


RECOVERY_SLACK = 0.005  # half a point on top of the best recovery seen


@dataclasses.dataclass
class TrialContext:
    """What every trial of one worker needs; built once per process."""

    teacher: object
    dataset: object  # training images minus the validation split; its test split is the validation split
    space: object
    pixels: object
    cache: object
    teacher_key: str
    baseline_accuracy: float  # the teacher's float32 file, validation top-1
    max_accuracy_drop: float | None
    artifact_store: object
    seed: int = 0
    verbose: int = 0
    # Latency is measured again one file at a time after the study; a trial's is only indicative.
    measure: MeasureSettings = MeasureSettings(runs=20, warmup=5)
    # `--max-latency-ms` as a constraint on each trial (p50 of its file, minus the limit): only where the
    # trial's file is timed alone (one worker); with several, the final selection holds it.
    max_latency_ms: float | None = None
    # The teacher's float32 file's per-example metric terms on the judging images (`evaluation.pack_terms`),
    # and how many paired standard errors of its drop a file must keep inside the limit
    # (`selection.Constraints.margin_se`).
    baseline_terms: str | None = None
    margin_se: float = 0.0


def finished_trials(study, exclude: int):
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.number != exclude and "duplicate_of" not in t.user_attrs]


def recovery_margins(study, exclude: int = -1) -> dict:
    """Per stage kind, what finished trials' files gained (or lost) after that stage: file top-1 minus the
    stage's validation top-1, every observation."""
    from optuna.trial import TrialState

    out: dict = {}
    for t in finished_trials(study, exclude):
        if t.state != TrialState.COMPLETE or "val_accuracy" not in t.user_attrs:
            continue
        for s in t.user_attrs.get("stages", []):
            out.setdefault(s["stage"], []).append(t.user_attrs["val_accuracy"] - s["accuracy"])
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
        if "rung" in trial.user_attrs:  # a ladder rung's files carry its name (`model_int8`, `prune-50_int8`)
            recipe = recipe.replace(name=trial.user_attrs["rung"])
        key = config_key(recipe)
        trial.set_user_attr("config", key)
        trial.set_user_attr("name", recipe.name)
        trial.set_user_attr("choice", choice)
        trial.set_user_attr("worker", worker_id())  # who handled it, a duplicate too
        same = self._same(trial, key)
        if same is not None:
            self.duplicates_in_a_row += 1
            trial.set_user_attr("duplicate_of", same.number)
            logger.info("[trial %d] %s: same recipe and scheme as trial %d, not run again", trial.number,
                        recipe.name, same.number)
            if same.state == TrialState.PRUNED:
                raise optuna.TrialPruned(f"as trial {same.number}")
            if "constraint" in same.user_attrs:
                trial.set_user_attr("constraint", same.user_attrs["constraint"])
                trial.set_constraint("accuracy_drop", same.user_attrs["constraint"][0])
            if "latency_constraint" in same.user_attrs:
                trial.set_user_attr("latency_constraint", same.user_attrs["latency_constraint"])
                trial.set_constraint("latency_ms", same.user_attrs["latency_constraint"])
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
                      if t.number != trial.number and t.user_attrs.get("config") == key
                      and "duplicate_of" not in t.user_attrs]
            done = [t for t in others if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            if done:
                return done[0]
            running = [t for t in others if t.state == TrialState.RUNNING and t.number < trial.number]
            if not running:
                return None
            time.sleep(2)
            fail_stale_trials(trial.study, self.storage)

    def _run(self, trial, recipe):
        import optuna
        from optuna.artifacts import upload_artifact

        from edgecompress.builder.measure import convert_and_measure, recover_int8, recoverable
        from edgecompress.models.backend import tf
        from edgecompress.recipes.runner import run_stages
        from edgecompress.report.results import BuildResult

        ctx = self.ctx
        t0 = time.time()
        logger.info("[trial %d] %s", trial.number, recipe.name)
        # 0: TensorFlow's default (every core); a local worker's share otherwise (`run_local_workers`)
        trial.set_user_attr("tf_threads", tf.config.threading.get_intra_op_parallelism_threads())
        stages = []

        def check(index, result):
            acc = result.metrics.get("accuracy")
            if acc is None:
                return
            stages.append({"stage": result.stage, "accuracy": acc, "seconds": result.seconds, "cached": result.cached})
            trial.set_user_attr("stages", stages)
            floor = early_stop_floor(trial.study, result.stage, ctx.baseline_accuracy, ctx.max_accuracy_drop,
                                     exclude=trial.number)
            if floor is not None and acc < floor:
                trial.set_user_attr("stopped_early", {"stage": result.stage, "index": index, "accuracy": acc,
                                                      "floor": floor})
                trial.set_user_attr("seconds", round(time.time() - t0, 1))
                t = tasks.task(ctx.dataset.task)
                logger.info("[trial %d] stopped early after %s: %s < %s (the limit, less the best "
                            "recovery later stages gave earlier trials)", trial.number, result.stage, t.says(acc),
                            t.format(floor))
                raise optuna.TrialPruned(f"stopped early after {result.stage}")

        try:
            final, final_key, stage_log = run_stages(ctx.teacher, ctx.dataset, recipe, ctx.cache, ctx.teacher_key,
                                                     seed=ctx.seed, verbose=ctx.verbose, on_stage=check)
            prov = {"recipe": recipe.to_dict(), "stages": [s.to_dict() for s in stage_log],
                    "search": {"trial": trial.number, "choice": trial.user_attrs["choice"]}}
            arts, failed = convert_and_measure(final, recipe.quantize, ctx.pixels, ctx.dataset, ctx.cache, final_key,
                                               prefix=f"{recipe.name}_", provenance=prov,
                                               **ctx.measure.kwargs())
            if failed:
                raise EdgeCompressError(failed[0]["error"])
            art = arts[0]
            suspect = suspect_gain(art.name, art.accuracy, ctx.baseline_accuracy, len(ctx.dataset.y_test),
                                   source="the teacher's float32 file")
            if suspect:
                trial.set_user_attr("suspect", suspect)
                logger.warning("[trial %d] %s", trial.number, suspect)
            se = paired_se_points(ctx, art)
            margin = ctx.margin_se * (se or 0.0) if ctx.max_accuracy_drop is not None else 0
            if (ctx.space.selective_int8 and ctx.max_accuracy_drop is not None and recoverable(art)
                    and 100 * (ctx.baseline_accuracy - art.accuracy) + margin > ctx.max_accuracy_drop):
                result = BuildResult(arts, final_model=final)
                try:  # the recovery aims inside the margin too
                    rec = recover_int8(result, ctx.dataset, ctx.pixels, ctx.cache,
                                       max(ctx.max_accuracy_drop - margin, 0.0),
                                       baseline_accuracy=ctx.baseline_accuracy, measure=ctx.measure,
                                       prefix=f"{recipe.name}_", offer=False)
                except Exception as e:  # TF's debugger refuses some models; the plain int8 file stays the result
                    logger.warning("[trial %d] selective int8 could not be made (%s: %s); keeping full int8",
                                   trial.number, type(e).__name__, e)
                    rec = None
                selective = [a for a in result.artifacts if a.name.endswith("_int8_selective")]
                if rec and selective and selective[0].accuracy > art.accuracy:
                    trial.set_user_attr("int8_recovery", {k: rec[k] for k in ("float_layers",) if k in rec})
                    art = selective[0]
                    se = paired_se_points(ctx, art)  # the file that replaced it, measured again
        except optuna.TrialPruned:
            raise
        except (ImplausibleResult, NotApplicable) as e:  # a number that cannot be true, or a stage with nothing
            # to do in this model, ends this branch, not the study
            trial.set_user_attr("ended", str(e)[:2000])
            trial.set_user_attr("seconds", round(time.time() - t0, 1))
            logger.warning("[trial %d] %s ended: %s", trial.number, recipe.name, e)
            raise optuna.TrialPruned(str(e)) from None
        except Exception as e:  # one trial's failure (ours, or TensorFlow's) must not end the study
            message = str(e) if isinstance(e, EdgeCompressError) else f"{type(e).__name__}: {e}"
            trial.set_user_attr("error", message[:2000])
            trial.set_user_attr("seconds", round(time.time() - t0, 1))
            logger.error("[trial %d] %s failed: %s", trial.number, recipe.name, message,
                         exc_info=not isinstance(e, EdgeCompressError))
            raise
        if se is not None:
            art.extra["val_paired_se"] = round(se, 4)
        record = art.to_dict()
        record["artifact_id"] = upload_artifact(artifact_store=ctx.artifact_store, file_path=art.cache_path,
                                                study_or_trial=trial)
        drop = 100 * (ctx.baseline_accuracy - art.accuracy)
        trial.set_user_attr("artifact", record)
        trial.set_user_attr("val_accuracy", art.accuracy)
        margin = ctx.margin_se * record.get("val_paired_se", 0.0)
        if ctx.max_accuracy_drop is not None:  # points over the limit, margin included; <= 0 is feasible
            trial.set_user_attr("constraint", [drop + margin - ctx.max_accuracy_drop])
            trial.set_user_attr("margin", margin)
            trial.set_constraint("accuracy_drop", drop + margin - ctx.max_accuracy_drop)
        slow = ""
        if ctx.max_latency_ms is not None and art.p50_ms is not None:  # ms over the limit; <= 0 is feasible
            trial.set_user_attr("latency_constraint", art.p50_ms - ctx.max_latency_ms)
            trial.set_constraint("latency_ms", art.p50_ms - ctx.max_latency_ms)
            slow = (f"; p50 {art.p50_ms:.3f} ms, {'within' if art.p50_ms <= ctx.max_latency_ms else 'over'} "
                    f"--max-latency-ms {ctx.max_latency_ms:g}")
        trial.set_user_attr("seconds", round(time.time() - t0, 1))
        rung = f" (ladder: {trial.user_attrs['rung']})" if "rung" in trial.user_attrs else ""
        verdict = "" if ctx.max_accuracy_drop is None else (
            f"; {-drop + 0.0:+.2f} points against the teacher's file, "
            + limit_verdict(drop, margin, ctx.max_accuracy_drop, ctx.margin_se))
        deadline = trial.study.user_attrs.get("deadline")
        left = f"; {max(0.0, deadline - time.time()) / 60:.0f} min of the budget left" if deadline else ""
        logger.info("[trial %d] %s%s: held-out %s at %.1f KB gzipped (%.0f s)%s%s; levers: %s%s", trial.number,
                    art.name, rung, tasks.task(ctx.dataset.task).says(art.accuracy), art.gzip_bytes / 1024,
                    time.time() - t0, verdict, slow, recipe.levers(), left)
        return art.accuracy, float(art.gzip_bytes)


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
