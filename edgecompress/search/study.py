"""A search's Optuna study: storage, samplers, trials, early stopping, stale trials, workers.

One study per search, two objectives: validation top-1 (maximize) and gzip
bytes (minimize), with `--max-accuracy-drop` as its constraint: each trial
sets `accuracy_drop` = drop - limit in points (`Trial.set_constraint`,
Optuna 5's replacement for `constraints_func`; feasible when <= 0), which
TPE and NSGA-II read.

- **Storage.** By default a journal file under the build folder,
  `<out>/.edgecompress/study/study.journal` (several processes of this
  machine share it through its file lock); `--storage URL` takes an RDB URL
  (`postgresql://...`, `mysql+pymysql://...`, `sqlite:///local.db`) that
  workers on other machines can reach. The study keeps, as user attributes,
  what made it: teacher, data, space, seed, limit and library versions
  (`fingerprint`); a worker whose own differ is refused.
- **Files.** Each trial's `.tflite` goes to an Optuna artifact store, a
  folder (`<out>/.edgecompress/study/artifacts`, or `--artifacts DIR` that
  every machine mounts); the process that selects downloads them.
- **Stopping early.** After each stage, a trial whose validation top-1 is
  below what the limit allows, even with the best recovery later stages
  gave earlier trials (plus half a point), raises `optuna.TrialPruned` and
  records the stage (`stopped_early`). Optuna's own pruners are
  single-objective only.
- **Not twice.** Trials whose recipe and scheme equal a finished one's
  (`search.config_key`) take its result without running; one running
  elsewhere is waited for.
- **Stale trials.** Every running trial records its worker (host:pid). On an
  RDB storage, Optuna's heartbeat finds a trial whose worker stopped beating
  for `STALE_S`; on a journal file (Optuna's journal has no heartbeat), a
  trial whose worker died on this host (pid gone) or whose `heartbeat`
  attribute is older than `STALE_S`. Either is failed and enqueued again,
  the new trial naming the one it retries (`retry_of`, `retry_reason`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import warnings
from pathlib import Path

from edgecompress.builder.measure import MeasureSettings
from edgecompress.lite import tasks
from edgecompress.errors import EdgeCompressError, NotApplicable
from edgecompress.lite.fileio import pid_alive
from edgecompress.models.sanity import ImplausibleResult, limit_verdict, suspect_gain

logger = logging.getLogger(__name__)

STUDY_NAME = "edgecompress-search"
HEARTBEAT_S = 15
STALE_S = 90
MAX_DUPLICATES_IN_A_ROW = 20
RECOVERY_SLACK = 0.005  # half a point on top of the best recovery seen
RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")


def study_dir(out_dir) -> Path:
    """Where a build's own study lives: `<out>/.edgecompress/study/`."""
    return Path(out_dir) / ".edgecompress" / "study"


def describe_url(url: str | None) -> str:
    """The storage for messages and the report: a URL without its password."""
    if not url:
        return "journal file under the build folder"
    import re

    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str | None, out_dir, *, heartbeat_s: int = HEARTBEAT_S, stale_s: int = STALE_S):
    """The study's storage: `url` (journal file path or RDB URL), or the build folder's journal file.

    An RDB storage beats Optuna's heartbeat every `heartbeat_s` and fails a trial silent for `stale_s`."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if not url or url.startswith("journal:") or url.endswith((".journal", ".log")):
        path = Path(url.removeprefix("journal:")) if url else study_dir(out_dir) / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    scheme = url.partition(":")[0].partition("+")[0]
    if scheme not in RDB_SCHEMES:
        raise EdgeCompressError(
            f"Received an invalid value for `storage`: {describe_url(url)!r}. Expected an RDB URL "
            f"({', '.join(s + '://...' for s in RDB_SCHEMES[:3])}) or a journal file (`journal:PATH`). SQLite only "
            "on a local disk: not over a network filesystem.")
    try:
        return _rdb_storage(url, heartbeat_s=heartbeat_s, stale_s=stale_s)
    except Exception as e:  # sqlalchemy's OperationalError, a missing driver (ModuleNotFoundError)...
        hint = (f" Install its driver (`pip install {'psycopg[binary]' if scheme == 'postgresql' else 'pymysql'}`)."
                if isinstance(e, ImportError) else " Check the host, port, user and that the database exists.")
        raise EdgeCompressError(f"Cannot open the study storage {describe_url(url)}: "
                                f"{type(e).__name__}: {str(e).splitlines()[0][:300]}.{hint}") from None


def _rdb_storage(url: str, attempts: int = 5, *, heartbeat_s: int = HEARTBEAT_S, stale_s: int = STALE_S):
    """Optuna's RDBStorage, retried while another process creates the same tables.

    Two processes opening a new database at once (a worker started before its
    search) race in `CREATE TABLE`: PostgreSQL answers the loser with a unique
    violation on `pg_type`. Table creation is idempotent once the winner is done.
    """
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat_s,
                                              grace_period=stale_s, heartbeat_stale_trial_callback=_retry_stale)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + attempt)


def _tpe(space, seed):
    import optuna

    # Multivariate and grouped (dropped stages do not blur it); constant liar, so parallel workers do not
    # propose the point another is running.
    return optuna.samplers.TPESampler(n_startup_trials=space.startup_trials, multivariate=True, group=True,
                                      constant_liar=True, seed=seed)


def _nsga2(space, seed):
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=space.startup_trials, seed=seed)


def _grid(space, seed):
    import optuna

    return optuna.samplers.GridSampler(space.grid_space(), seed=seed)


def _random(space, seed):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


# name -> (factory(space, seed), whether every worker must share the seed)
SAMPLERS = {"tpe": (_tpe, False), "nsga2": (_nsga2, False), "grid": (_grid, True), "random": (_random, False)}


def make_sampler(space, seed: int, worker: int = 0):
    """The space's sampler (`SAMPLERS`), with settings for 20-40 trials.

    - `tpe` (default): `startup_trials` (8) random trials, then multivariate
      TPE.
    - `nsga2`: population `startup_trials` (Optuna's default 50 would never
      leave the first generation in 40 trials).
    - `grid`: every listed combination, in a random order.
    - `random`: a baseline.

    Each worker seeds its own sampler (`seed + worker`), but the grid's,
    whose seed orders the grid that all workers index into.
    """
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # TPE's `group`
    factory, shared = SAMPLERS[space.sampler]
    return factory(space, seed if shared else seed + worker)


def open_study(storage, space, fingerprint: dict, *, seed=0, worker=0, name=STUDY_NAME, join=False,
               where: str = "this storage"):
    """Creates (or loads) the study; refuses one whose fingerprint differs from ours.

    With `join` (a worker), the study must exist. Raises `EdgeCompressError`
    naming what differs: another space, teacher, data, seed, limit or versions
    (`where` names the storage in messages, without its password).
    """
    import optuna

    sampler = make_sampler(space, seed, worker)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if join and name not in names:
        raise EdgeCompressError(f"No study {name!r} in that storage (it has {names or 'none'}). Start the search "
                                "first (`invoke build-edge --search ... --storage URL`), then the workers.")
    if name in names:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        theirs = study.user_attrs.get("fingerprint") or {}
        diff = [k for k in sorted(set(theirs) | set(fingerprint)) if theirs.get(k) != fingerprint.get(k)]
        if diff:
            what = "; ".join(f"{k}: study {theirs.get(k)!r}, here {fingerprint.get(k)!r}" for k in diff)
            raise EdgeCompressError(
                f"The study {name!r} in {where} was made by another "
                f"search ({what}). Resume with the same space, teacher and data; or start a new study "
                f"(`--study NAME`), or remove the build folder's .edgecompress/study/ to start over.")
        return study
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=["maximize", "minimize"], load_if_exists=True)
    study.set_user_attr("fingerprint", fingerprint)
    return study


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


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale_trials(study, storage) -> list[int]:
    """Fails trials left RUNNING by a dead worker and queues their parameters again; returns their numbers.

    On an RDB storage this is Optuna's own heartbeat (`RDBStorage(heartbeat_interval=HEARTBEAT_S,
    grace_period=STALE_S)`, see `_rdb_storage`): `optuna.storages.fail_stale_trials` fails what it finds
    stale and calls `_retry_stale` for each. Optuna's journal storage has no heartbeat, so for a journal
    file (one host, or a shared disk) a trial is stale when its worker is on this host and its pid is gone,
    or when its `heartbeat` user attribute (`_Heartbeat`) is older than `STALE_S`.
    """
    import optuna
    from optuna.trial import TrialState

    if _heartbeat_storage(storage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with warnings.catch_warnings():  # experimental since Optuna 2.9; Optuna calls it so itself
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return sorted({t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} - before)
    me, host, now, retried = worker_id(), socket.gethostname(), time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = t.user_attrs.get("worker", "")
        if who == me:
            continue
        beat = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else now)
        w_host, _, pid = who.rpartition(":")
        dead = (w_host == host and pid.isdigit() and not pid_alive(int(pid))) or now - beat > STALE_S
        if not dead:
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker got there first (finished, or finished meanwhile)
            continue
        _retry(study, t, {"worker": who, "seen": now})
        retried.append(t.number)
    return retried


def _heartbeat_storage(storage) -> bool:
    from optuna.storages import RDBStorage

    return isinstance(storage, RDBStorage) and storage.heartbeat_interval is not None


def _retry(study, trial, why: dict) -> None:
    """Queues a failed trial's parameters again; the new trial says which it retries and why."""
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retry_reason": why, **_rung_of(trial)})
    if not why.get("interrupted"):
        logger.warning("Trial %d was left running by %s, which is gone: marked failed, its parameters queued again",
                       trial.number, why.get("worker") or "an unknown worker")


def _retry_stale(study, trial) -> None:
    """Optuna's `heartbeat_stale_trial_callback` on an RDB storage: the trial's worker stopped beating."""
    _retry(study, trial, {"worker": trial.user_attrs.get("worker", ""), "seen": time.time()})


def _rung_of(t) -> dict:
    return {"rung": t.user_attrs["rung"]} if "rung" in t.user_attrs else {}


def rung_outcome(t) -> str | None:
    """Why a ladder rung's trial does not let the next rung climb from it, or None when it may: it met the
    limit, or it has not finished (another worker's)."""
    from optuna.trial import TrialState

    if t is None or t.state in (TrialState.RUNNING, TrialState.WAITING):
        return None
    if t.state == TrialState.COMPLETE:
        # As measured, without the selection's margin: a rung that met the limit but not by its margin is
        # still worth climbing from (the margin decides what is selected, not what is tried).
        over = (t.user_attrs.get("constraint") or [0.0])[0] - t.user_attrs.get("margin", 0.0)
        return None if over <= 0 else f"missed the accuracy limit by {over:.2f} points"
    if t.state == TrialState.PRUNED:
        return "ended: " + t.user_attrs["ended"] if "ended" in t.user_attrs else (
            "was stopped early: it could not recover")
    return "failed"


def too_slow_for_its_levers(space, rung: dict, by_rung: dict) -> str | None:
    """Why a ladder rung cannot meet the build's --max-latency-ms, or None when it may: its stages pull only
    unstructured levers (zeros, shared values: the model's dense work on a CPU), and every finished rung of
    the model's dense work under quantization alone (`model`, `model-dynamic`) was over the limit. Such a
    rung makes a smaller file no faster than those; the budget goes to the rungs that remove work. A
    trial has `latency_constraint` (ms over the limit) only in a build with --max-latency-ms."""
    if space.recipe(space.rung_choice(rung)).lever_kinds() != {"unstructured"}:
        return None
    rungs = {r["name"]: r for r in space.ladder}
    dense = [(t.user_attrs["latency_constraint"], name) for name, t in by_rung.items()
             if "latency_constraint" in t.user_attrs and name in rungs
             and not space.recipe(space.rung_choice(rungs[name])).lever_kinds()]
    if not dense or min(dense)[0] <= 0:
        return None
    over, name = min(dense)
    return (f"pulls only unstructured levers (the model's dense work, no faster on a CPU), and {name}, the "
            f"fastest file of that work, was {over:.3f} ms over --max-latency-ms")


def enqueue_next_rung(study, space) -> str | None:
    """Queues the space's next ladder rung (`SearchSpace.ladder`), skipping, with the reason, each rung
    whose `after` rung missed the limit, or that cannot meet --max-latency-ms (`too_slow_for_its_levers`);
    returns its name, or None when the ladder is done or a trial is
    already waiting."""
    from optuna.trial import TrialState

    if not space.ladder:
        return None
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    by_rung = {t.user_attrs["rung"]: t for t in trials if "rung" in t.user_attrs}  # the latest try of each
    skipped = dict(study.user_attrs.get("ladder_skipped") or {})
    for rung in space.ladder:
        name, parent = rung["name"], rung.get("after")
        if name in by_rung or name in skipped:
            continue
        why = f"climbs from {parent}, which was skipped" if parent in skipped else (
            rung_outcome(by_rung.get(parent)) if parent else None)
        slow = None if why is not None else too_slow_for_its_levers(space, rung, by_rung)
        if why is not None or slow is not None:
            skipped[name] = slow or (why if parent in skipped else f"climbs from {parent}, which {why}")
            study.set_user_attr("ladder_skipped", skipped)
            logger.info("[ladder] %s: skipped, it %s", name, skipped[name])
            continue
        study.enqueue_trial(space.rung_params(rung), user_attrs={"rung": name})
        return name
    return None


class _Heartbeat:
    """Records the trial's worker; with `beat` (a journal file, which Optuna gives no heartbeat), also writes
    its `heartbeat` user attribute every `HEARTBEAT_S` seconds while it runs."""

    def __init__(self, trial, beat: bool = True):
        self.trial, self.beat, self.stop = trial, beat, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # pragma: no cover - the storage went away; the trial will say so
                return

    def __enter__(self):
        self.trial.set_user_attr("worker", worker_id())
        if self.beat:
            self.trial.set_user_attr("heartbeat", time.time())
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def _finished(study, exclude: int):
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.number != exclude and "duplicate_of" not in t.user_attrs]


def recovery_margins(study, exclude: int = -1) -> dict:
    """Per stage kind, what finished trials' files gained (or lost) after that stage: file top-1 minus the
    stage's validation top-1, every observation."""
    from optuna.trial import TrialState

    out: dict = {}
    for t in _finished(study, exclude):
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
        with _Heartbeat(trial, beat=not _heartbeat_storage(self.storage)):
            try:
                return self._run(trial, recipe)
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C: Optuna fails the trial; run it again on resume
                _retry(trial.study, trial, {"worker": worker_id(), "seen": time.time(), "interrupted": True})
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
        from edgecompress.report.results import BuildResult
        from edgecompress.recipes.runner import run_stages

        from edgecompress.models.backend import tf

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


def _counted(study) -> int:
    """Finished trials that ran (not duplicates, not failures): what `trials` in a space counts."""
    return len(_finished(study, -1))


def enqueued_rungs_left(study) -> bool:
    """Whether ladder rungs are still waiting to run (the stall rule waits for the ladder)."""
    from optuna.trial import TrialState

    return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))


def run_worker(study, storage, ctx: TrialContext, *, deadline: float, trials: int | None = None) -> int:
    """Runs trials until the deadline (the next trial's estimated time would pass it), `trials` finished
    trials, a stop flag in the study, the space is used up, or its judged front has not moved for the space's
    `patience` proposals (`search.stop`); records why in the study (`stopped`); returns how many it ran."""
    import optuna

    from edgecompress.search.stop import stalled

    objective = Objective(ctx, storage)
    ran = 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    while True:
        fail_stale_trials(study, storage)
        done = _finished(study, -1)
        times = [t.user_attrs["seconds"] for t in done if "seconds" in t.user_attrs]
        estimate = sum(times) / len(times) if times else 0.0
        why = None
        if study.user_attrs.get("stop"):
            break
        if done and time.time() + estimate > deadline:
            why = f"the budget: the next trial (about {estimate:.0f} s) would end after the deadline"
        elif trials is not None and _counted(study) >= trials:
            why = f"the space's cap of {trials} trials"
        elif objective.duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
            why = f"the space looks used up: the sampler proposed {MAX_DUPLICATES_IN_A_ROW} tried recipes in a row"
        elif isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
            why = "the grid is exhausted"
        elif not enqueued_rungs_left(study):
            why = stalled(study, ctx.space.patience)
        if why:
            logger.info("Search stops: %s", why)
            study.set_user_attr("stopped", why)
            break
        enqueue_next_rung(study, ctx.space)
        study.optimize(objective, n_trials=1, catch=(Exception,))  # recorded as FAIL with its error
        ran += 1
    return ran


def wait_for_running(study, storage, poll_s: float = 2.0) -> None:
    """Waits until no trial is running (another machine's worker finishing its last one); dead ones are failed."""
    from optuna.trial import TrialState

    said = False
    while True:
        fail_stale_trials(study, storage)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not said:
            logger.info("Waiting for %d trial(s) still running on other workers: %s", len(running),
                        ", ".join(f"{t.number} ({t.user_attrs.get('worker', '?')})" for t in running))
            said = True
        time.sleep(poll_s)


LAUNCH_ENV = "EDGECOMPRESS_LOCAL_LAUNCH"  # "<token>:<n>", set by `run_local_workers` for the workers it starts
START_TIMEOUT_S = 300.0


def wait_for_local_workers(study, index: int, *, timeout_s: float = START_TIMEOUT_S, poll_s: float = 0.5) -> int:
    """Start barrier of the workers one `run_local_workers` started: each says it is ready (its teacher, data
    and fingerprint checked) and waits until all `n` are, so the first one up does not take every trial
    before the others have loaded TensorFlow. A worker that never comes (it failed: its log says why) is
    waited for `timeout_s` at most. Returns how many were ready; 1 for a worker started by hand."""
    launch = os.environ.get(LAUNCH_ENV, "")
    token, _, n = launch.rpartition(":")
    if not token or not n.isdigit() or int(n) < 2:
        return 1
    study.set_user_attr(f"launch:{token}:{index}", worker_id())
    keys = [f"launch:{token}:{i}" for i in range(int(n))]
    deadline = time.time() + timeout_s
    while True:
        ready = sum(k in study.user_attrs for k in keys)
        if ready == int(n) or time.time() > deadline:
            break
        time.sleep(poll_s)  # `study.user_attrs` reads the storage again
    if ready < int(n):
        logger.warning("Only %d of %d local workers are ready after %.0f s; starting without the others",
                       ready, int(n), timeout_s)
    return ready


def run_local_workers(study, storage, command: list, n: int) -> None:
    """Starts `command` (an `invoke search-worker` argv) `n` times, each with cores/n TensorFlow threads, and
    waits for them; Ctrl-C stops them all (their running trials are retried on resume)."""
    import subprocess

    import uuid

    threads = max(1, (os.cpu_count() or 1) // n)
    env = {**os.environ, "EDGECOMPRESS_TF_THREADS": str(threads), LAUNCH_ENV: f"{uuid.uuid4().hex}:{n}"}
    logger.info("Starting %d workers (%d TensorFlow thread(s) each): %s", n, threads, " ".join(command))
    procs = [subprocess.Popen(command + ["--worker-index", str(i)], env=env) for i in range(n)]
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        study.set_user_attr("stop", True)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    for i, c in bad:
        logger.warning("Worker %d exited with code %d (its log is above); the study keeps what it finished", i, c)
    if len(bad) == n:
        raise EdgeCompressError(f"All {n} search workers failed (exit codes {codes}); see their logs above.")
