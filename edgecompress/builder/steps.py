"""The steps of one build: open the model, read the calibration images, compress by a recipe, publish.

`edgecompress.pipeline.build_edge` runs them in order; a search (`edgecompress.search`) runs the first
two, then its trials, then `finish`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgecompress.lite.latency import DEFAULT_RUNS, DEFAULT_WARMUP
from edgecompress.data import calibration
from edgecompress.models import training
from edgecompress.report.write import write_report
from edgecompress.configs import Features, Preprocessing, TrainConfig
from edgecompress.data.loading import load_dataset
from edgecompress.errors import EdgeCompressError, PartialFailure, stop_if_interrupted
from edgecompress.lite.fileio import atomic_write_json
from edgecompress.builder.selection import Constraints, GateError, apply_selection
from edgecompress.builder.measure import runnable_recipe, convert_and_measure, publish, teacher_baseline
from edgecompress.recipes.recipe import Recipe
from edgecompress.report.results import BuildResult
from edgecompress.report.tables import report_task
from edgecompress.quantize.schemes import scheme
from edgecompress.recipes.runner import run_stages

from edgecompress.builder.options import BuildOptions

logger = logging.getLogger(__name__)


def step(i, n, text):
    stop_if_interrupted()
    logger.info("[%d/%d] %s", i, n, text)


def prepare_model(options: BuildOptions, cache=None):
    """Loads the user's model or trains (or reuses) the default teacher.

    Returns (model, dataset, key, source): `key` identifies the model's
    content for the cache; `source` is the `user_model.UserModel` (format,
    translation, scale choice), or None for the default teacher.
    """
    from edgecompress.recipes.cache import StageCache, make_key, versions
    from edgecompress.lite.fileio import sha256_path

    cache = cache or StageCache(Path(options.out_dir) / ".cache", enabled=False)
    if options.model:
        from edgecompress.models.user import open_model

        user = open_model(options.model, options.data, scale=options.scale, seed=options.seed,
                          safe_mode=options.safe_mode, task=options.task, output=options.output)
        key = make_key("model", sha256_path(options.model), user.spec.to_dict(), versions(),
                       *([options.output] if options.output else []))
        return user.model, user.dataset, key, user
    dataset = load_dataset(options.data, None if options.data else Preprocessing(), seed=options.seed)
    train = TrainConfig(epochs=options.epochs, seed=options.seed, strategy=options.strategy)
    key = make_key("teacher", dataset.fingerprint(), train.to_dict(), versions())
    model = cache.get_model("teacher", key)
    if model is None:
        model = training.train_default_teacher(dataset, train, verbose=options.verbose)
        cache.put_model("teacher", key, model)
    return model, dataset, key, None


def calibration_pixels(options: BuildOptions, dataset, out_dir: Path):
    """The representative set and where it came from: the calibration images (a folder, or written from the
    data), or for a features model a seeded sample of its training examples."""
    if isinstance(dataset.preprocessing, Features):
        if options.calibration is not None:
            raise EdgeCompressError(f"Received `calibration`={options.calibration!r}, a folder of images, for a model "
                                    "that takes features: its representative set is drawn from its training "
                                    "examples. Drop --calibration.")
        sample = calibration.feature_sample(dataset, seed=options.seed)
        return sample, f"{len(sample)} training examples (features; per class, seeded)"
    folder = options.calibration
    if folder is None:
        if options.data is None:
            folder = calibration.DEFAULT_DIR
        else:
            folder = out_dir / "calibration_data"
            calibration.write_calibration_images(dataset, folder, seed=options.seed)
    return calibration.load_calibration_images(folder, dataset.preprocessing), str(folder)


def compress(teacher, dataset, recipe: Recipe, pixels, cache, teacher_key, *, seed=0, verbose=1, threads=1,
             runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP, strip_names=False):
    """Runs `recipe` on `teacher`: stages, then conversion and measurement (each file without its names with
    `strip_names`, as `convert_and_measure` says).

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
                                            provenance=provenance, strip_names=strip_names, **kw)
    artifacts += more
    failed += more_failed
    if recipe.stages and artifacts and artifacts[0].name == "teacher_float32":
        from edgecompress.models.sanity import suspect_gain

        for a in artifacts[1:]:
            suspect = suspect_gain(a.name, a.accuracy, artifacts[0].accuracy, len(dataset.y_test))
            if suspect:
                logger.warning("%s", suspect)
    if not artifacts:
        raise EdgeCompressError("No variant could be converted: " + "; ".join(f["error"] for f in failed))
    baseline = artifacts[0].name if recipe.stages and artifacts[0].name == "teacher_float32" else next(
        (a.name for a in artifacts if scheme(a.quantization).reference), artifacts[0].name)
    return BuildResult(artifacts, failed, stage_log, baseline, final_model=final)


def finish(result: BuildResult, facts: dict, out_dir: Path, constraints: Constraints) -> dict:
    """The tail every flow shares: publish the files, select, write the report; returns it.

    `facts` are the report's other keys (dataset, host, options...). The
    report is written even when the gate fails; then `GateError` is raised.
    """
    out_dir = Path(out_dir)
    publish(result.artifacts, out_dir)
    report = {**facts, **result.report_fields(), "devices": {}, "size_measure": constraints.size}
    gate_error = None
    (out_dir / "selected_recipe.json").unlink(missing_ok=True)  # an earlier search's winner
    if constraints.any:
        try:
            chosen = apply_selection(report, constraints, out_dir)
            logger.info("Selected %s (%d file bytes, %d gzipped, %s) as selected.tflite", chosen["name"],
                        chosen["size_bytes"], chosen["gzip_bytes"], report_task(report).says(chosen["accuracy"]))
            if chosen["recipe"].get("search"):
                # The winning candidate as a recipe file: `invoke build-edge --recipe` reproduces it.
                atomic_write_json(out_dir / "selected_recipe.json",
                                  runnable_recipe(chosen["recipe"], chosen.get("float_layers")))
        except GateError as e:
            gate_error = e
    profile_headline(report)
    write_report(report, out_dir)
    if gate_error is not None:
        raise gate_error
    return report


def profile_headline(report: dict) -> None:
    """Where the time and memory of the files a reader compares go (`lite.profile`): the baseline, the model's
    own int8 file and the selected one get `profile` (each op timed alone, peak memory) in report.json."""
    from edgecompress.lite.profile import profile

    names = [report.get("baseline"), report.get("selected"),
             next((a["name"] for a in report["artifacts"] if a["name"] in ("model_int8", "int8")), None)]
    for a in report["artifacts"]:
        if a["name"] in names and not a.get("profile"):
            logger.info("Profiling %s: each op alone, and its peak memory", a["name"])
            try:
                a["profile"] = profile(a["path"], a.get("delegation"), threads=report.get("threads", 1))
            except Exception as e:  # noqa: BLE001 - a profile explains a file; it never stops the build that made it
                logger.warning("Could not profile %s (%s: %s); the report says nothing of where its time goes",
                               a["name"], type(e).__name__, str(e)[:200])


class PartialBuildError(PartialFailure):
    """Some variants failed; the others and the report were written (exit code 4)."""

    def __init__(self, report, failed):
        self.report = report
        names = ", ".join(f["name"] for f in failed)
        super().__init__(
            f"{len(failed)} variant(s) failed ({names}); the other {len(report['artifacts'])} artifact(s) "
            "and the report were written.\n" + "\n".join(f"  {f['name']}: {f['error']}" for f in failed))
