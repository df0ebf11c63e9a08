"""`build_edge`: data and model in, `.tflite` files and a report out.

Steps: load the data, load or train the model, run the recipe's stages,
read and validate the calibration images, convert every variant, then
measure each artifact with the real interpreter (accuracy, agreement with
the Keras model, size, gzip size, host latency) and write the report.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from pathlib import Path

from edgecompress import bench, calibration, models, report as report_lib
from edgecompress.configs import ModelSpec, Preprocessing, TrainConfig, _Config, _require
from edgecompress.data import load_dataset
from edgecompress.errors import EdgeCompressError, PartialFailure
from edgecompress.fileio import atomic_write_json, sha256_bytes
from edgecompress.gate import Constraints, GateError, apply_selection
from edgecompress.measure import convert_and_measure, publish, recover_int8, teacher_baseline
from edgecompress.recipe import Recipe, resolve_recipe
from edgecompress.results import BuildResult
from edgecompress.schemes import scheme
from edgecompress.stages import run_stages

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuildOptions(_Config):
    """Everything `invoke build-edge` takes.

    Args:
        model: A `.keras`/`.h5`/SavedModel path; `None` trains the default
            teacher. Defaults to None.
        data: A dataset source (see `data.load_dataset`); `None` is the
            bundled Fashion-MNIST subset. Defaults to None.
        calibration: Folder of calibration images. Defaults to
            `calibration_data/` for the bundled data, and to images drawn
            from the user's training split (written under `out_dir`) otherwise.
        recipe: A recipe JSON file or the name of a shipped recipe
            (`default`, `tfmot-guide`, `lowrank`, `quantize-only`); `None`
            is `default`.
        out_dir: Where artifacts and the report go. Defaults to `build/edge`.
        epochs: Teacher training epochs when no model is given. Defaults to 8.
        seed: Seeds training and data splits. Defaults to 0.
        threads: Interpreter threads for evaluation and latency. Defaults to 1.
        runs: Timed invokes per artifact for host latency. Defaults to 200.
        warmup: Warm-up invokes before them. Defaults to 20.
        scale: Pixel scaling for a user model: `auto` (read from the model's
            preprocessing layers, confirmed by measuring; see
            `pixelscale.choose_scale`), `unit`, `symmetric` or `raw`.
            Defaults to `auto`.
        safe_mode: Refuse Lambda layers when loading a model. Defaults to True.
        verbose: Keras progress bars (1) or silence (0). Defaults to 1.
        strategy: `tf.distribute` strategy for training the teacher (stages
            take theirs from the recipe). Defaults to `"default"`.
        cache: Reuse stages whose inputs did not change, from
            `<out_dir>/.cache`. Defaults to True.
        search: Instead of one recipe, search the recipes of this search
            space (a shipped name such as `default`, or a JSON file; see
            `edgecompress.search`) and keep the Pareto front. Defaults to None.
        budget_minutes: Time budget of a search or the closed loop, counted from
            the build's start (loading the model included). Defaults to 30.
        workers: Search worker processes on this machine, sharing the study
            and the cores. Defaults to 1 (trials run in this process).
        storage: The study's storage: an RDB URL other machines' workers can
            reach (`postgresql://user:pw@host/db`), or a journal file. Defaults
            to None: `<out_dir>/.edgecompress/study/study.journal`.
        artifacts: Folder of the study's artifact store (where workers put
            their files; one all machines mount). Defaults to None:
            `<out_dir>/.edgecompress/study/artifacts`.
        study: Study name in the storage. Defaults to None:
            `optimize.STUDY_NAME`.
        max_accuracy_drop, max_size_kb, max_latency_ms: Quality gate (see
            `gate.Constraints`): the artifact meeting them all is written as
            `selected.tflite`; when int8 loses too much, selective int8
            (`qdebug.recover_int8`) is tried first. Default to None.
    """

    model: str | None = None
    data: str | None = None
    calibration: str | None = None
    recipe: str | None = None
    out_dir: str = "build/edge"
    epochs: int = 8
    seed: int = 0
    threads: int = 1
    runs: int = 200
    warmup: int = 20
    scale: str = "auto"
    safe_mode: bool = True
    verbose: int = 1
    strategy: str = "default"
    cache: bool = True
    search: str | None = None
    budget_minutes: float = 30.0
    workers: int = 1
    storage: str | None = None
    artifacts: str | None = None
    study: str | None = None
    max_accuracy_drop: float | None = None
    max_size_kb: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self):
        _require(isinstance(self.budget_minutes, (int, float)) and self.budget_minutes > 0,
                 "Received an invalid value for `budget_minutes`, expected a number of minutes > 0. "
                 f"Received: budget_minutes={self.budget_minutes!r}")
        _require(isinstance(self.workers, int) and self.workers >= 1,
                 f"Received an invalid value for `workers`, expected an integer >= 1. Received: workers={self.workers!r}")
        _require(self.search or (self.workers == 1 and not self.storage and not self.artifacts and not self.study),
                 "`workers`, `storage`, `artifacts` and `study` belong to a search: add --search, or drop them.")
        _require(isinstance(self.runs, int) and self.runs >= 1,
                 f"Received an invalid value for `runs`, expected an integer >= 1. Received: runs={self.runs!r}")
        _require(isinstance(self.threads, int) and self.threads >= 1,
                 f"Received an invalid value for `threads`, expected an integer >= 1. Received: threads={self.threads!r}")
        from edgecompress.user_model import check_scale_name

        check_scale_name(self.scale)


CLOSED_LOOP_SPACE = "auto"  # edgecompress/search_spaces/auto.json: the ladder, then TPE
DEFAULT_MAX_ACCURACY_DROP = 1.0  # points, on held-out images, when a model is given and no recipe


def closed_loop(options: BuildOptions) -> BuildOptions:
    """The options a build runs with: a model given without `recipe` runs the closed loop (the `auto`
    space's ladder, then its search) and, with a search, has an accuracy limit by default. A fixed recipe,
    or the bundled default teacher, runs as asked."""
    if not options.model or options.recipe:
        return options
    changes = {}
    if not options.search:
        changes["search"] = CLOSED_LOOP_SPACE
    if options.max_accuracy_drop is None:
        changes["max_accuracy_drop"] = DEFAULT_MAX_ACCURACY_DROP
    return options.replace(**changes) if changes else options


def _step(i, n, text):
    logger.info("[%d/%d] %s", i, n, text)


def prepare_model(options: BuildOptions, cache=None):
    """Loads the user's model or trains (or reuses) the default teacher.

    Returns (model, dataset, key, source): `key` identifies the model's
    content for the cache; `source` is the `user_model.UserModel` (format,
    translation, scale choice), or None for the default teacher.
    """
    from edgecompress.cache import StageCache, make_key, versions
    from edgecompress.fileio import sha256_path

    cache = cache or StageCache(Path(options.out_dir) / ".cache", enabled=False)
    if options.model:
        from edgecompress.user_model import open_model

        user = open_model(options.model, options.data, scale=options.scale, seed=options.seed,
                          safe_mode=options.safe_mode)
        key = make_key("model", sha256_path(options.model), user.spec.to_dict(), versions())
        return user.model, user.dataset, key, user
    dataset = load_dataset(options.data, None if options.data else Preprocessing(), seed=options.seed)
    train = TrainConfig(epochs=options.epochs, seed=options.seed, strategy=options.strategy)
    key = make_key("teacher", dataset.fingerprint(), train.to_dict(), versions())
    model = cache.get_model("teacher", key)
    if model is None:
        model = models.train_default_teacher(dataset, train, verbose=options.verbose)
        cache.put_model("teacher", key, model)
    return model, dataset, key, None


def calibration_pixels(options: BuildOptions, dataset, out_dir: Path):
    folder = options.calibration
    if folder is None:
        if options.data is None:
            folder = calibration.DEFAULT_DIR
        else:
            folder = out_dir / "calibration_data"
            calibration.write_calibration_images(dataset, folder, seed=options.seed)
    return calibration.load_calibration_images(folder, dataset.preprocessing), str(folder)


def compress(teacher, dataset, recipe: Recipe, pixels, cache, teacher_key, *, seed=0, verbose=1, threads=1,
             runs=200, warmup=20):
    """Runs `recipe` on `teacher`: stages, then conversion and measurement.

    When the recipe has stages, the teacher's own float32 `.tflite` is made
    too (`teacher_float32`) and is the baseline, so the table shows the whole
    compression. Returns a `results.BuildResult`.
    """
    final, final_key, stage_log = run_stages(teacher, dataset, recipe, cache, teacher_key, seed=seed, verbose=verbose)
    provenance = {"recipe": recipe.to_dict(), "stages": [s.to_dict() for s in stage_log]}
    artifacts, failed = [], []
    kw = {"threads": threads, "runs": runs, "warmup": warmup}
    if recipe.stages:
        artifacts, failed = teacher_baseline(teacher, pixels, dataset, cache, teacher_key, stage_log[0], **kw)
    more, more_failed = convert_and_measure(final, recipe.quantize, pixels, dataset, cache, final_key,
                                            provenance=provenance, **kw)
    artifacts += more
    failed += more_failed
    if recipe.stages and artifacts and artifacts[0].name == "teacher_float32":
        from edgecompress.sanity import suspect_gain

        for a in artifacts[1:]:
            suspect = suspect_gain(a.name, a.accuracy, artifacts[0].accuracy, len(dataset.y_test))
            if suspect:
                logger.warning("%s", suspect)
    if not artifacts:
        raise EdgeCompressError("No variant could be converted: " + "; ".join(f["error"] for f in failed))
    baseline = artifacts[0].name if recipe.stages and artifacts[0].name == "teacher_float32" else next(
        (a.name for a in artifacts if scheme(a.quantization).reference), artifacts[0].name)
    return BuildResult(artifacts, failed, stage_log, baseline, final_model=final)


def build_edge(options: BuildOptions = None) -> dict:
    """Runs the whole pipeline and writes `report.json` and `report.md` (see `_build`).

    The output folder is locked for the build: a second build into the same
    folder stops at once (exit 2), naming the process that holds it.
    """
    from edgecompress.fileio import folder_lock

    options = options or BuildOptions()
    with folder_lock(options.out_dir, "invoke build-edge"):
        return _build(options)


def _build(options: BuildOptions) -> dict:
    """Runs the whole pipeline and writes `report.json` and `report.md`.

    Stages whose inputs did not change are reused from `<out_dir>/.cache`.
    New artifacts are published into `out_dir` only at the end, the report
    last, so an interrupted build leaves the previous build's files intact.

    Raises:
        PartialBuildError: when some variants failed; the others and the
            report were still written.
    """
    from edgecompress.cache import StageCache, versions

    options = closed_loop(options or BuildOptions())
    if options.search and options.recipe:
        raise EdgeCompressError(f"Received both `recipe`={options.recipe!r} and `search`={options.search!r}; "
                                "a search tries the recipes of its search space. Pass one of them.")
    space = None
    if options.search:
        from edgecompress.search import load_space

        space = load_space(options.search)
    recipe = resolve_recipe(options.recipe)
    out_dir = Path(options.out_dir)
    if space is not None and options.storage:  # an unreachable storage fails now, not after the teacher
        from edgecompress.optimize import open_storage

        open_storage(options.storage, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = StageCache(out_dir / ".cache", enabled=options.cache)
    started = time.time()
    n = 4
    _step(1, n, "Loading data and model")
    model, dataset, teacher_key, source = prepare_model(options, cache)
    spec = ModelSpec(dataset.preprocessing, dataset.class_names)
    fmt = source.format if source else "tf_keras"
    logger.info("Teacher %s: %d parameters", model.name, models.count_params(model))

    _step(2, n, "Reading calibration images")
    pixels, calib_dir = calibration_pixels(options, dataset, out_dir)

    constraints = Constraints(options.max_accuracy_drop, options.max_size_kb, options.max_latency_ms)
    if space is not None:
        from edgecompress.search import search

        if space.name == CLOSED_LOOP_SPACE:
            _step(3, n, f"Closed loop (no --recipe): the smallest file within {constraints.max_accuracy_drop:g} "
                        f"point(s) of the model on held-out images, within {options.budget_minutes:g} min: "
                        f"{len(space.ladder)} rungs from PTQ of the model to students, then {space.sampler} "
                        "(pass --recipe NAME for one fixed recipe)")
        else:
            _step(3, n, f"Searching space {space.name!r} ({space.sampler}, {len(space.parameters())} parameter(s)) "
                        f"within {options.budget_minutes:g} min, each file measured with the TFLite interpreter")
        result = search(model, dataset, space, pixels, cache, teacher_key, budget_minutes=options.budget_minutes,
                        max_accuracy_drop=constraints.max_accuracy_drop, options=options, seed=options.seed,
                        verbose=options.verbose, out_dir=out_dir, storage=options.storage, workers=options.workers,
                        artifacts=options.artifacts, study_name=options.study,
                        worker_command=worker_command(options, out_dir), started_at=started)
    else:
        _step(3, n, f"Running recipe {recipe.name!r}: {len(recipe.stages)} stage(s), {len(recipe.quantize)} variant(s), "
                    "each measured with the TFLite interpreter")
        result = compress(model, dataset, recipe, pixels, cache, teacher_key, seed=options.seed,
                          verbose=options.verbose, threads=options.threads, runs=options.runs, warmup=options.warmup)
        if constraints.max_accuracy_drop is not None:
            result.recovery = recover_int8(result, dataset, pixels, cache, constraints.max_accuracy_drop,
                                           baseline_accuracy=result.artifact(result.baseline).accuracy, options=options)

    _step(4, n, "Publishing artifacts and writing the report")
    atomic_write_json(out_dir / "model_spec.json", spec.to_dict())
    models.save_model(model, out_dir / "teacher.keras", spec, fmt=fmt)
    if result.final_model is not None and recipe.stages:
        models.save_model(result.final_model, out_dir / "final.keras", spec, fmt=fmt)
    elif (out_dir / "final.keras").exists():
        (out_dir / "final.keras").unlink()
    described = dataset.describe()
    if result.search and "report" in result.search.get("validation", {}):  # what judged, and what reported
        how = result.search["validation"]
        described.update(split=how["report"], count=how["report_count"], judged_on=how["judge"],
                         judged_count=how["judge_count"])
    report = {
        "dataset": described,
        "recipe": recipe.to_dict() if space is None else None,
        "model_spec": spec.to_dict(),
        "model_source": source.describe() if source else {"format": "tf_keras", "default_teacher": True},
        "calibration": {"path": calib_dir, "count": int(len(pixels)), "sha256": sha256_bytes(pixels.tobytes())},
        "host": {**bench.device_info(), "hostname": platform.node()},
        "versions": versions(),
        "seed": options.seed,
        "threads": options.threads,
        "latency_runs": options.runs,
        "options": options.to_dict(),
        "cache": {"reused": cache.reused, "computed": cache.computed},
        "seconds": round(time.time() - started, 1),
    }
    report = finish(result, report, out_dir, constraints)
    if cache.reused:
        logger.info("Reused %d cached step(s): %s", len(cache.reused), ", ".join(cache.reused))
    if result.failed:
        raise PartialBuildError(report, result.failed)
    return report


def worker_command(options: BuildOptions, out_dir) -> list[str]:
    """The argv that starts one search worker on this build's study (what `--workers N` runs N times)."""
    import sys

    from edgecompress.optimize import study_dir

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

    from edgecompress import optimize
    from edgecompress.cache import StageCache
    from edgecompress.search import load_space

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
    pixels, _ = calibration_pixels(options, dataset, out)
    from edgecompress.search import fingerprint, judging_split

    val, _, _ = judging_split(dataset, space, options.seed, found.user_attrs.get("holdout", "test"))

    fp = fingerprint(model_, val, space, pixels, seed=options.seed, max_accuracy_drop=options.max_accuracy_drop)
    study_ = optimize.open_study(storage_obj, space, fp, seed=options.seed, worker=worker_index + 1, name=name,
                                 join=True, where=optimize.describe_url(storage))
    from optuna.artifacts import FileSystemArtifactStore

    store = FileSystemArtifactStore(str(artifacts or study_.user_attrs["artifacts"]))
    ctx = optimize.TrialContext(model_, val, space, pixels, cache, teacher_key, study_.user_attrs["baseline_accuracy"],
                                options.max_accuracy_drop, store, seed=options.seed, verbose=verbose,
                                threads=options.threads)
    logger.info("Worker %s joined study %r (%s)", optimize.worker_id(), name, optimize.describe_url(storage))
    optimize.wait_for_local_workers(study_, worker_index)
    ran = optimize.run_worker(study_, storage_obj, ctx, deadline=study_.user_attrs["deadline"], trials=space.trials)
    logger.info("Worker %s ran %d trial(s)", optimize.worker_id(), ran)
    return ran


def finish(result: BuildResult, facts: dict, out_dir: Path, constraints: Constraints) -> dict:
    """The tail every flow shares: publish the files, select, write the report; returns it.

    `facts` are the report's other keys (dataset, host, options...). The
    report is written even when the gate fails; then `GateError` is raised.
    """
    out_dir = Path(out_dir)
    publish(result.artifacts, out_dir)
    report = {**facts, **result.report_fields(), "devices": {}}
    gate_error = None
    (out_dir / "selected_recipe.json").unlink(missing_ok=True)  # an earlier search's winner
    if constraints.any:
        try:
            chosen = apply_selection(report, constraints, out_dir)
            logger.info("Selected %s (%d bytes, %d gzipped, top-1 %.2f%%) as selected.tflite", chosen["name"],
                        chosen["size_bytes"], chosen["gzip_bytes"], 100 * chosen["accuracy"])
            if chosen["recipe"].get("search"):
                # The winning candidate as a recipe file: `invoke build-edge --recipe` reproduces it.
                winner = dict(chosen["recipe"]["recipe"])
                if chosen.get("float_layers"):  # a selective-int8 winner: its conversion joins the recipe
                    winner["quantize"] = list(winner["quantize"]) + [chosen["recipe"]["conversion"]]
                atomic_write_json(out_dir / "selected_recipe.json", winner)
        except GateError as e:
            gate_error = e
    report_lib.write_report(report, out_dir)
    if gate_error is not None:
        raise gate_error
    return report


class PartialBuildError(PartialFailure):
    """Some variants failed; the others and the report were written (exit code 4)."""

    def __init__(self, report, failed):
        self.report = report
        names = ", ".join(f["name"] for f in failed)
        super().__init__(
            f"{len(failed)} variant(s) failed ({names}); the other {len(report['artifacts'])} artifact(s) "
            "and the report were written.\n" + "\n".join(f"  {f['name']}: {f['error']}" for f in failed))
