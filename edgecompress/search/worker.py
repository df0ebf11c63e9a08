"""The worker: what runs a study's trials until its stop rule or deadline, on this machine (one or several
processes) or joining from another (`invoke search-worker`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from edgecompress.builder.options import BuildOptions
from edgecompress.builder.steps import calibration_pixels, prepare_model
from edgecompress.errors import EdgeCompressError
from edgecompress.search.ladder import enqueue_next_rung, enqueued_rungs_left
from edgecompress.search import records
from edgecompress.search.objective import (MAX_DUPLICATES_IN_A_ROW, Objective, TrialContext, finished_trials,
                                           space_for_build, trial_context)
from edgecompress.search.stale import fail_stale_trials, worker_id
from edgecompress.search.study import STUDY_NAME, describe_url, fingerprint, open_storage, open_study, study_dir

logger = logging.getLogger(__name__)



def worker_command(options: BuildOptions, out_dir) -> list[str]:
    """The argv that starts one search worker on this build's study (what `--workers N` runs N times)."""
    import sys


    storage = options.storage or f"journal:{study_dir(out_dir) / 'study.journal'}"
    cmd = [sys.executable, "-m", "edgecompress", "search-worker", "--storage", storage, "--out", str(out_dir)]
    if options.study:
        cmd += ["--study", options.study]
    if not options.verbose:
        cmd.append("--quiet")
    return cmd


def search_worker(storage: str, *, out_dir=None, study=None, model=None, data=None, search=None, artifacts=None,
                  worker_index: int = 0, verbose: int = 0) -> int:
    """Joins a running search's study and runs trials until its deadline; returns how many it ran.

    Everything else comes from the study: the build options of the search
    that made it (its model, data, space, seed, limit), with `model`, `data`
    and `search` overriding the paths on this machine. The worker computes
    its own teacher, data, space and versions fingerprint and refuses to
    join when it differs from the study's (exit 2).
    """
    from edgecompress.recipes.cache import StageCache
    from edgecompress.search.holdout import judging_split
    from edgecompress.search.space import load_space

    name = study or STUDY_NAME
    storage_obj = open_storage(storage, out_dir or ".")
    found = _wait_for_study(name, storage, storage_obj)
    setup = records.read_setup(found)
    if setup.options is None:
        raise EdgeCompressError(f"Study {name!r} was not started by `invoke build-edge`, so it holds no build "
                                "options to join from. Start the search with `invoke build-edge --search ...`.")
    stored = dict(setup.options)
    overrides = {k: v for k, v in {"model": model, "data": data, "search": search}.items() if v is not None}
    stored.update(overrides, verbose=verbose, workers=1)
    if out_dir is not None:
        stored["out_dir"] = str(out_dir)
    options = BuildOptions.from_dict(stored)
    settings = options.search_settings(holdout=setup.holdout)
    out = Path(options.out_dir)
    cache = StageCache(out / ".cache", enabled=options.cache)
    model_, dataset, teacher_key, _ = prepare_model(options, cache)
    space = space_for_build(load_space(options.search), model_, settings)  # as the search that started it
    pixels, _ = calibration_pixels(options, dataset, out)
    val, _, _ = judging_split(dataset, space, settings.seed, setup.holdout)
    fp = fingerprint(model_, val, space, pixels, seed=settings.seed, max_accuracy_drop=options.max_accuracy_drop,
                     max_latency_ms=options.max_latency_ms, margin_se=settings.margin_se, size=options.size,
                     strip_names=settings.strips_names)
    study_ = open_study(storage_obj, space, fp, seed=settings.seed, worker=worker_index + 1, name=name,
                        join=True, where=describe_url(storage))
    from optuna.artifacts import FileSystemArtifactStore

    store = FileSystemArtifactStore(str(artifacts or setup.artifacts))
    ctx = trial_context(model_, val, space, pixels, cache, teacher_key, setup, settings, store, timed_alone=False)
    logger.info("Worker %s joined study %r (%s)", worker_id(), name, describe_url(storage))
    wait_for_local_workers(study_, worker_index)
    ran = run_worker(study_, storage_obj, ctx, deadline=setup.deadline, trials=space.trials)
    logger.info("Worker %s ran %d trial(s)", worker_id(), ran)
    return ran


def _wait_for_study(name: str, storage: str, storage_obj):
    """The study `name` once its search has written its setup (`records.READY`), waiting up to 10 minutes."""
    import optuna

    waited = time.time()
    while True:  # started before the search, or before its model was measured
        try:
            found = optuna.load_study(study_name=name, storage=storage_obj)
        except KeyError:
            found = None
        if found is not None and found.user_attrs.get(records.READY):
            return found
        if time.time() - waited > 600:
            raise EdgeCompressError(f"No running study {name!r} in {describe_url(storage)} after 10 "
                                    "minutes. Start the search (`invoke build-edge --search ... --storage URL`); "
                                    "workers wait for it.")
        time.sleep(2)


def counted_trials(study) -> int:
    """Finished trials that ran (not duplicates, not failures): what `trials` in a space counts."""
    return len(finished_trials(study, -1))


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
        done = finished_trials(study, -1)
        times = [r.seconds for r in map(records.read, done) if r.seconds]
        estimate = sum(times) / len(times) if times else 0.0
        why = None
        if study.user_attrs.get(records.STOP):
            break
        if done and time.time() + estimate > deadline:
            why = f"the budget: the next trial (about {estimate:.0f} s) would end after the deadline"
        elif trials is not None and counted_trials(study) >= trials:
            why = f"the space's cap of {trials} trials"
        elif objective.duplicates_in_a_row >= MAX_DUPLICATES_IN_A_ROW:
            why = f"the space looks used up: the sampler proposed {MAX_DUPLICATES_IN_A_ROW} tried recipes in a row"
        elif isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study):
            why = "the grid is exhausted"
        elif not enqueued_rungs_left(study):
            why = stalled(study, ctx.space.patience)
        if why:
            logger.info("Search stops: %s", why)
            study.set_user_attr(records.STOPPED, why)
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
                        ", ".join(f"{t.number} ({records.read(t).worker or '?'})" for t in running))
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
    study.set_user_attr(f"{records.LAUNCH}:{token}:{index}", worker_id())
    keys = [f"{records.LAUNCH}:{token}:{i}" for i in range(int(n))]
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
        study.set_user_attr(records.STOP, True)
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
