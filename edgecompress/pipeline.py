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

from edgecompress import bench, calibration, configs, models, quantization, report as report_lib
from edgecompress.configs import ModelSpec, Preprocessing, TrainConfig, _Config, _require
from edgecompress.data import load_dataset
from edgecompress.distribute import get_strategy
from edgecompress.errors import EdgeCompressError
from edgecompress.evaluation import evaluate_tflite
from edgecompress.fileio import atomic_write_json
from edgecompress.inspect import float_ops, weight_sparsity
from edgecompress.pruning import keras_sparsity
from edgecompress.preprocessing import to_model_input
from edgecompress.recipe import Recipe, resolve_recipe

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
        scale: Pixel scaling for a user model (`unit`, `symmetric`, `raw`).
            Defaults to `unit`.
        safe_mode: Refuse Lambda layers when loading a model. Defaults to True.
        verbose: Keras progress bars (1) or silence (0). Defaults to 1.
        strategy: `tf.distribute` strategy for training the teacher (stages
            take theirs from the recipe). Defaults to `"default"`.
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
    scale: str = "unit"
    safe_mode: bool = True
    verbose: int = 1
    strategy: str = "default"

    def __post_init__(self):
        _require(isinstance(self.runs, int) and self.runs >= 1,
                 f"Received an invalid value for `runs`, expected an integer >= 1. Received: runs={self.runs!r}")
        _require(isinstance(self.threads, int) and self.threads >= 1,
                 f"Received an invalid value for `threads`, expected an integer >= 1. Received: threads={self.threads!r}")


def _step(i, n, text):
    logger.info("[%d/%d] %s", i, n, text)


def prepare_model(options: BuildOptions, dataset=None):
    """Loads the user's model or trains the default teacher; returns (model, dataset, spec)."""
    if options.model:
        model = models.load_model(options.model, safe_mode=options.safe_mode)
        saved = models.load_spec(options.model)
        spec = saved.preprocessing if saved else models.input_preprocessing(model, options.scale)
        if dataset is None:
            dataset = load_dataset(options.data, spec, seed=options.seed)
        n_out = model.output_shape[-1]
        if n_out != dataset.num_classes:
            raise EdgeCompressError(
                f"Model {options.model} has {n_out} outputs but the data has {dataset.num_classes} "
                f"classes ({list(dataset.class_names)}). Pass the data the model was trained on."
            )
        return model, dataset
    if dataset is None:
        dataset = load_dataset(options.data, None if options.data else Preprocessing(), seed=options.seed)
    with get_strategy(options.strategy).scope():
        model = models.build_teacher(dataset.preprocessing, dataset.num_classes, seed=options.seed)
    models.train_classifier(model, dataset, TrainConfig(epochs=options.epochs, seed=options.seed,
                                                        strategy=options.strategy), verbose=options.verbose)
    return model, dataset


def calibration_pixels(options: BuildOptions, dataset, out_dir: Path):
    folder = options.calibration
    if folder is None:
        if options.data is None:
            folder = calibration.DEFAULT_DIR
        else:
            folder = out_dir / "calibration_data"
            calibration.write_calibration_images(dataset, folder, seed=options.seed)
    return calibration.load_calibration_images(folder, dataset.preprocessing), str(folder)


def convert_and_measure(model, conversions, rep, out_dir, x_test, y_test, reference, *, threads=1, runs=200,
                        warmup=20, prefix="", provenance=None):
    """Converts `model` to each variant and measures it; returns (artifacts, failed)."""
    artifacts, failed = [], []
    for conv in conversions:
        name = prefix + conv.name
        try:
            data = quantization.convert(model, conv, rep)
        except EdgeCompressError as e:
            # Keep going: the other variants are still worth having.
            logger.error("  %s: %s", name, e)
            failed.append({"name": name, "error": str(e)})
            continue
        path = quantization.write_tflite(data, out_dir, name)
        sparsity = weight_sparsity(data)
        result, _ = evaluate_tflite(path, x_test, y_test, reference=reference, num_threads=threads)
        b = bench.benchmark(path, runs=runs, warmup=warmup, threads=threads, probe=False)
        artifacts.append({
            "name": name, "path": str(path), "quantization": conv.quantization.value,
            "size_bytes": len(data), "gzip_bytes": report_lib.gzip_size(data),
            "accuracy": result["accuracy"], "agreement": result["agreement"],
            "latency_ms": b["latency_ms"], "init_ms": b["init_ms"],
            "sparsity": sparsity["overall"], "layer_sparsity": sparsity["layers"],
            "float_ops": float_ops(data) if conv.quantization.value == "int8" else None,
            "recipe": {**(provenance or {}), "conversion": conv.to_dict()},
        })
        a = artifacts[-1]
        logger.info("  %s: %d bytes (%d gzipped), top-1 %.2f%%, sparsity %.1f%%, p50 %.3f ms", name, a["size_bytes"],
                    a["gzip_bytes"], 100 * a["accuracy"], 100 * a["sparsity"], a["latency_ms"]["p50"])
    return artifacts, failed


def run_stages(teacher, dataset, recipe, *, seed=0, verbose=1):
    """Applies the recipe's stages in order; returns (final model, stage log)."""
    stage_log = [{"stage": "teacher", "model": teacher.name, "metrics": {
        "accuracy": models.keras_accuracy(teacher, dataset), "params": models.count_params(teacher),
        "sparsity": keras_sparsity(teacher)}}]
    final = teacher
    for i, stage in enumerate(recipe.stages, 1):
        logger.info("  stage %d/%d: %s", i, len(recipe.stages), stage.STAGE)
        final, metrics = stage.apply(final, dataset, teacher=teacher, seed=seed, verbose=verbose)
        metrics.setdefault("params", models.count_params(final))
        metrics.setdefault("sparsity", keras_sparsity(final))
        stage_log.append({"stage": stage.STAGE, "model": final.name, "config": stage.to_dict(), "metrics": metrics})
    return final, stage_log


def compress(teacher, dataset, recipe: Recipe, rep, out_dir, *, seed=0, verbose=1, threads=1, runs=200, warmup=20):
    """Runs `recipe` on `teacher`: stages, then conversion and measurement.

    When the recipe has stages, the teacher's own float32 `.tflite` is made
    too (`teacher_float32`) and is the baseline, so the table shows the whole
    compression. Returns a dict with `artifacts`, `failed`, `stages` and
    `baseline`.
    """
    x_test = to_model_input(dataset.x_test, dataset.preprocessing)
    final, stage_log = run_stages(teacher, dataset, recipe, seed=seed, verbose=verbose)
    reference = final.predict(x_test, batch_size=256, verbose=0).argmax(-1)
    provenance = {"recipe": recipe.to_dict(), "stages": stage_log}
    artifacts, failed = [], []
    if recipe.stages:
        teacher_ref = teacher.predict(x_test, batch_size=256, verbose=0).argmax(-1)
        artifacts, failed = convert_and_measure(
            teacher, [configs.float32()], rep, out_dir, x_test, dataset.y_test, teacher_ref, threads=threads,
            runs=runs, warmup=warmup, prefix="teacher_", provenance={"recipe": {"name": "teacher"}, "stages": stage_log[:1]})
    more, more_failed = convert_and_measure(final, recipe.quantize, rep, out_dir, x_test, dataset.y_test, reference,
                                            threads=threads, runs=runs, warmup=warmup, provenance=provenance)
    artifacts += more
    failed += more_failed
    if not artifacts:
        raise EdgeCompressError("No variant could be converted: " + "; ".join(f["error"] for f in failed))
    baseline = artifacts[0]["name"] if recipe.stages and artifacts[0]["name"] == "teacher_float32" else next(
        (a["name"] for a in artifacts if a["quantization"] == "none"), artifacts[0]["name"])
    return {"artifacts": artifacts, "failed": failed, "stages": stage_log, "baseline": baseline, "final_model": final}


def build_edge(options: BuildOptions = None) -> dict:
    """Runs the whole pipeline and writes `report.json` and `report.md`.

    Returns the report as a dict.

    Raises:
        PartialBuildError: when some variants failed; the others and the
            report were still written.
    """
    options = options or BuildOptions()
    recipe = resolve_recipe(options.recipe)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    n = 4
    _step(1, n, "Loading data and model")
    model, dataset = prepare_model(options)
    spec = ModelSpec(dataset.preprocessing, dataset.class_names)
    atomic_write_json(out_dir / "model_spec.json", spec.to_dict())
    models.save_model(model, out_dir / "teacher.keras", spec)
    logger.info("Teacher %s: %d parameters", model.name, models.count_params(model))

    _step(2, n, "Reading calibration images")
    pixels, calib_dir = calibration_pixels(options, dataset, out_dir)
    rep = calibration.representative_dataset(pixels, dataset.preprocessing)

    _step(3, n, f"Running recipe {recipe.name!r}: {len(recipe.stages)} stage(s), {len(recipe.quantize)} variant(s), "
                "each measured with the TFLite interpreter")
    result = compress(model, dataset, recipe, rep, out_dir, seed=options.seed, verbose=options.verbose,
                      threads=options.threads, runs=options.runs, warmup=options.warmup)
    if recipe.stages:
        models.save_model(result["final_model"], out_dir / "final.keras", spec)

    _step(4, n, "Writing the report")
    report = {
        "dataset": dataset.describe(),
        "baseline": result["baseline"],
        "artifacts": result["artifacts"],
        "recipe": recipe.to_dict(),
        "stages": result["stages"],
        "model_spec": spec.to_dict(),
        "calibration": {"path": calib_dir, "count": int(len(pixels))},
        "host": {**bench.device_info(), "hostname": platform.node()},
        "threads": options.threads,
        "latency_runs": options.runs,
        "options": options.to_dict(),
        "seconds": round(time.time() - started, 1),
        "devices": {},
        "failed": result["failed"],
    }
    report_lib.write_report(report, out_dir)
    if result["failed"]:
        raise PartialBuildError(report, result["failed"])
    return report


class PartialBuildError(EdgeCompressError):
    """Some variants failed; the others and the report were written."""

    def __init__(self, report, failed):
        self.report = report
        names = ", ".join(f["name"] for f in failed)
        super().__init__(
            f"{len(failed)} variant(s) failed ({names}); the other {len(report['artifacts'])} artifact(s) "
            "and the report were written.\n" + "\n".join(f"  {f['name']}: {f['error']}" for f in failed))
