"""Search workers: the argv that starts one, and what one does when it joins a running study."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from edgecompress.errors import EdgeCompressError

from edgecompress.builder.measure import MeasureSettings
from edgecompress.builder.options import BuildOptions
from edgecompress.builder.steps import calibration_pixels, prepare_model

logger = logging.getLogger(__name__)



def worker_command(options: BuildOptions, out_dir) -> list[str]:
    """The argv that starts one search worker on this build's study (what `--workers N` runs N times)."""
    import sys

    from edgecompress.search.study import study_dir

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
    import optuna

    from edgecompress.search import study as optimize
    from edgecompress.recipes.cache import StageCache
    from edgecompress.search.run import load_space

    name = study or optimize.STUDY_NAME
    storage_obj = optimize.open_storage(storage, out_dir or ".")
    waited, found = time.time(), None
    while found is None or not found.user_attrs.get("ready"):  # started before the search, or before its teacher
        try:
            found = optuna.load_study(study_name=name, storage=storage_obj)
        except KeyError:
            found = None
        if found is not None and found.user_attrs.get("ready"):
            break
        if time.time() - waited > 600:
            raise EdgeCompressError(f"No running study {name!r} in {optimize.describe_url(storage)} after 10 "
                                    "minutes. Start the search (`invoke build-edge --search ... --storage URL`); "
                                    "workers wait for it.")
        time.sleep(2)
    stored = dict(found.user_attrs.get("options") or {})
    overrides = {k: v for k, v in {"model": model, "data": data, "search": search}.items() if v is not None}
    stored.update(overrides, verbose=verbose, workers=1)
    if out_dir is not None:
        stored["out_dir"] = str(out_dir)
    options = BuildOptions.from_dict(stored)
    space = load_space(options.search)
    out = Path(options.out_dir)
    cache = StageCache(out / ".cache", enabled=options.cache)
    model_, dataset, teacher_key, _ = prepare_model(options, cache)
    space = space.for_build(model_, options.max_latency_ms)  # as the search that started the study did
    pixels, _ = calibration_pixels(options, dataset, out)
    from edgecompress.search.run import fingerprint, judging_split

    val, _, _ = judging_split(dataset, space, options.seed, found.user_attrs.get("holdout", "test"))

    margin_se = options.margin_se if options.max_accuracy_drop is not None else 0.0
    fp = fingerprint(model_, val, space, pixels, seed=options.seed, max_accuracy_drop=options.max_accuracy_drop,
                     max_latency_ms=options.max_latency_ms, margin_se=margin_se)
    study_ = optimize.open_study(storage_obj, space, fp, seed=options.seed, worker=worker_index + 1, name=name,
                                 join=True, where=optimize.describe_url(storage))
    from optuna.artifacts import FileSystemArtifactStore

    store = FileSystemArtifactStore(str(artifacts or study_.user_attrs["artifacts"]))
    ctx = optimize.TrialContext(model_, val, space, pixels, cache, teacher_key, study_.user_attrs["baseline_accuracy"],
                                options.max_accuracy_drop, store, seed=options.seed, verbose=verbose,
                                measure=MeasureSettings(options.threads, runs=20, warmup=5),
                                baseline_terms=study_.user_attrs.get("baseline_terms"), margin_se=margin_se)
    logger.info("Worker %s joined study %r (%s)", optimize.worker_id(), name, optimize.describe_url(storage))
    optimize.wait_for_local_workers(study_, worker_index)
    ran = optimize.run_worker(study_, storage_obj, ctx, deadline=study_.user_attrs["deadline"], trials=space.trials)
    logger.info("Worker %s ran %d trial(s)", optimize.worker_id(), ran)
    return ran
