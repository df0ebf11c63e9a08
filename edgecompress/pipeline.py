"""`build_edge`: data and model in, `.tflite` files and a report out.

Steps: load the data, load or train the model, run the recipe's stages,
read and validate the calibration images, convert every variant, then
measure each artifact with the real interpreter (accuracy, agreement with
the Keras model, size, gzip size, host latency) and write the report.
"""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

from edgecompress.lite import latency
from edgecompress.models import keras_io
from edgecompress.configs import Preprocessing
from edgecompress.data import calibration
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.fileio import atomic_write_json, sha256_bytes
from edgecompress.builder import targets
from edgecompress.builder.measure import recover_int8
from edgecompress.recipes.recipe import resolve_recipe

from edgecompress.builder.options import BuildOptions
from edgecompress.builder.steps import PartialBuildError, calibration_pixels, compress, finish, prepare_model, step
from edgecompress.search.worker import worker_command

logger = logging.getLogger(__name__)

CLOSED_LOOP_SPACE = "auto"  # edgecompress/search/spaces/auto.json: the ladder, then TPE
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


def build_edge(options: BuildOptions = None) -> dict:
    """Runs the whole pipeline and writes `report.json` and `report.md` (see `_build`).

    The output folder is locked for the build: a second build into the same
    folder stops at once (exit 2), naming the process that holds it.
    """
    from edgecompress.lite.fileio import folder_lock

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
    from edgecompress.recipes.cache import StageCache, versions

    options, space, recipe = _checked(options)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = StageCache(out_dir / ".cache", enabled=options.cache)
    started = time.time()
    n = 4
    step(1, n, "Loading data and model")
    model, dataset, teacher_key, source = prepare_model(options, cache)
    if options.disjoint_groups:
        from edgecompress.data.groups import check_disjoint

        check_disjoint(dataset.groups_train, dataset.groups_test, options.data)
    logger.info("Teacher %s: %d parameters", model.name, keras_io.count_params(model))
    targets.check_model_for(options.target, model)  # an op the target's runtime lacks, named before training

    step(2, n, "Reading calibration images" if isinstance(dataset.preprocessing, Preprocessing) else
         "Drawing calibration examples from the training split")
    pixels, calib_dir = calibration_pixels(options, dataset, out_dir)
    if space is not None:
        result = _search(options, model, dataset, space, pixels, cache, teacher_key, started, step_of=(3, n))
    else:
        step(3, n, f"Running recipe {recipe.name!r}: {len(recipe.stages)} stage(s), {len(recipe.quantize)} variant(s), "
                    "each measured with the TFLite interpreter")
        result = compress(model, dataset, recipe, pixels, cache, teacher_key, seed=options.seed,
                          verbose=options.verbose, strip_names=targets.strips_names(options.target, options.strip_names),
                          **options.measure.kwargs())
        if options.max_accuracy_drop is not None:
            result.recovery = recover_int8(result, dataset, pixels, cache, options.max_accuracy_drop,
                                           baseline_metric=result.artifact(result.baseline).accuracy,
                                           measure=options.measure)

    step(4, n, "Publishing artifacts and writing the report")
    spec = dataset.model_spec()
    _publish_models(model, result, recipe, spec, source, out_dir)
    facts = {
        "dataset": _described(dataset, result),
        "recipe": recipe.to_dict() if space is None else None,
        "model_spec": spec.to_dict(),
        "model_source": source.describe() if source else {"format": "tf_keras", "default_teacher": True},
        "calibration": {"path": calib_dir, "count": int(len(pixels)), "sha256": sha256_bytes(pixels.tobytes())},
        "host": {**latency.device_info(), "hostname": platform.node()},
        "versions": versions(),
        "seed": options.seed,
        "threads": options.threads,
        "latency_runs": options.runs,
        "options": options.to_dict(),
        "cache": {"reused": cache.reused, "computed": cache.computed},
        "seconds": round(time.time() - started, 1),
    }
    report = finish(result, facts, out_dir, options.constraints)
    if cache.reused:
        logger.info("Reused %d cached step(s): %s", len(cache.reused), ", ".join(cache.reused))
    if result.failed:
        raise PartialBuildError(report, result.failed)
    return report


def _checked(options):
    """(options with the closed loop's defaults, the search space or None, the recipe), after what fails
    before the model is loaded: a recipe and a space at once, an unreachable storage, a bad calibration folder."""
    options = closed_loop(options or BuildOptions())
    if options.search and options.recipe:
        raise EdgeCompressError(f"Received both `recipe`={options.recipe!r} and `search`={options.search!r}; "
                                "a search tries the recipes of its search space. Pass one of them.")
    space = None
    if options.search:
        from edgecompress.search.space import load_space

        space = load_space(options.search)
    recipe = resolve_recipe(options.recipe)
    if space is not None and options.storage:  # an unreachable storage fails now, not after the teacher
        from edgecompress.search.study import open_storage

        open_storage(options.storage, Path(options.out_dir))
    if options.calibration is not None:  # a missing or empty folder fails now, not after the teacher
        calibration.checked_files(options.calibration)
    return options, space, recipe


def _search(options, model, dataset, space, pixels, cache, teacher_key, started, *, step_of):
    """Step 3 of a search or the closed loop: says what it runs, then runs it (`search.run.search`)."""
    from edgecompress.search.run import search

    space = space.for_build(model, options.max_latency_ms, options.size,  # what the search will run, as its log says
                            options.target)
    if space.name == CLOSED_LOOP_SPACE:
        held = (f", certified at {100 * options.confidence:g}% on held-out data the search never scores"
                if options.selection == "confirmed" else
                f" (by {options.margin_se:g} paired standard error of its drop)" if options.margin_se else "")
        step(*step_of, f"Closed loop (no --recipe): the smallest file within {options.max_accuracy_drop:g} "
                       f"point(s) of the model on held-out images{held}, within {options.budget_minutes:g} min: "
                       f"{len(space.ladder)} rungs from PTQ of the model to students, then {space.sampler} "
                       "(pass --recipe NAME for one fixed recipe)")
    else:
        step(*step_of, f"Searching space {space.name!r} ({space.sampler}, {len(space.parameters())} parameter(s)) "
                       f"within {options.budget_minutes:g} min, each file measured with the TFLite interpreter")
    out_dir = Path(options.out_dir)
    return search(model, dataset, space, pixels, cache, teacher_key, options.search_settings(), out_dir=out_dir,
                  worker_command=worker_command(options, out_dir), worker_options=options.to_dict(),
                  started_at=started)


def _publish_models(model, result, recipe, spec, source, out_dir: Path) -> None:
    """The model spec, the model and the recipe's final Keras model beside the files (an older final model goes)."""
    fmt = source.format if source else "tf_keras"
    atomic_write_json(out_dir / "model_spec.json", spec.to_dict())
    keras_io.save_model(model, out_dir / "teacher.keras", spec, fmt=fmt)
    if result.final_model is not None and recipe.stages:
        keras_io.save_model(result.final_model, out_dir / "final.keras", spec, fmt=fmt)
    elif (out_dir / "final.keras").exists():
        (out_dir / "final.keras").unlink()


def _described(dataset, result) -> dict:
    """The report's `dataset`: what the data is, and for a search what judged and what reported."""
    described = dataset.describe()
    if result.search and "report" in result.search.get("validation", {}):
        how = result.search["validation"]
        described.update(split=how["report"], count=how["report_count"], judged_on=how["judge"],
                         judged_count=how["judge_count"])
    return described
