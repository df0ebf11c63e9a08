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

from edgecompress import bench, calibration, models, quantization, report as report_lib
from edgecompress.configs import ModelSpec, Preprocessing, TrainConfig, _Config, _require
from edgecompress.data import load_dataset
from edgecompress.errors import EdgeCompressError
from edgecompress.evaluation import evaluate_tflite
from edgecompress.fileio import atomic_write_json
from edgecompress.inspect import float_ops
from edgecompress.preprocessing import to_model_input
from edgecompress.recipe import Recipe, default_recipe, load_recipe

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
        recipe: A recipe JSON file; `None` is the default recipe.
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
    model = models.build_teacher(dataset.preprocessing, dataset.num_classes, seed=options.seed)
    models.train_classifier(model, dataset, TrainConfig(epochs=options.epochs, seed=options.seed), verbose=options.verbose)
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


def build_edge(options: BuildOptions = None) -> dict:
    """Runs the whole pipeline and writes `report.json` and `report.md`.

    Returns the report as a dict.
    """
    options = options or BuildOptions()
    recipe = load_recipe(options.recipe) if options.recipe else default_recipe()
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    n = 6
    _step(1, n, "Loading data and model")
    model, dataset = prepare_model(options)
    spec = ModelSpec(dataset.preprocessing, dataset.class_names)
    atomic_write_json(out_dir / "model_spec.json", spec.to_dict())
    models.save_model(model, out_dir / "teacher.keras", spec)
    x_test = to_model_input(dataset.x_test, dataset.preprocessing)
    teacher_acc = models.keras_accuracy(model, dataset)
    logger.info("Teacher %s: %d parameters, Keras top-1 %.2f%%", model.name, models.count_params(model), 100 * teacher_acc)

    _step(2, n, f"Running {len(recipe.stages)} training stage(s) of recipe {recipe.name!r}")
    final, stage_log = model, []
    stage_log.append({"stage": "teacher", "model": model.name, "metrics": {
        "accuracy": teacher_acc, "params": models.count_params(model)}})
    for stage in recipe.stages:
        final, metrics = stage.apply(final, dataset, teacher=model, seed=options.seed, verbose=options.verbose)
        stage_log.append({"stage": stage.STAGE, "model": final.name, "config": stage.to_dict(), "metrics": metrics})
    reference = final.predict(x_test, batch_size=256, verbose=0).argmax(-1)

    _step(3, n, "Reading calibration images")
    pixels, calib_dir = calibration_pixels(options, dataset, out_dir)
    rep = calibration.representative_dataset(pixels, dataset.preprocessing)

    _step(4, n, f"Converting to {len(recipe.quantize)} .tflite variant(s)")
    artifacts, failed = [], []
    for conv in recipe.quantize:
        try:
            data = quantization.convert(final, conv, rep)
        except EdgeCompressError as e:
            # Keep going: the other variants are still worth having.
            logger.error("  %s: %s", conv.name, e)
            failed.append({"name": conv.name, "error": str(e)})
            continue
        path = quantization.write_tflite(data, out_dir, conv.name)
        artifacts.append({"name": conv.name, "path": str(path), "quantization": conv.quantization.value,
                          "size_bytes": len(data), "gzip_bytes": report_lib.gzip_size(data),
                          "float_ops": float_ops(data) if conv.quantization.value == "int8" else None,
                          "recipe": {"recipe": recipe.name, "stages": [s["stage"] for s in stage_log],
                                     "conversion": conv.to_dict()}})
        logger.info("  %s: %d bytes", path, len(data))
    if not artifacts:
        raise EdgeCompressError("No variant could be converted: " + "; ".join(f["error"] for f in failed))

    _step(5, n, "Measuring accuracy and latency with the TFLite interpreter")
    for a in artifacts:
        result, _ = evaluate_tflite(a["path"], x_test, dataset.y_test, reference=reference, num_threads=options.threads)
        b = bench.benchmark(a["path"], runs=options.runs, warmup=options.warmup, threads=options.threads, probe=False)
        a.update(accuracy=result["accuracy"], agreement=result["agreement"], latency_ms=b["latency_ms"],
                 init_ms=b["init_ms"])
        logger.info("  %s: top-1 %.2f%%, p50 %.3f ms", a["name"], 100 * a["accuracy"], a["latency_ms"]["p50"])

    _step(6, n, "Writing the report")
    report = {
        "dataset": dataset.describe(),
        "baseline": next((a["name"] for a in artifacts if a["quantization"] == "none"), artifacts[0]["name"]),
        "artifacts": artifacts,
        "recipe": recipe.to_dict(),
        "stages": stage_log,
        "model_spec": spec.to_dict(),
        "calibration": {"path": calib_dir, "count": int(len(pixels))},
        "host": {**bench.device_info(), "hostname": platform.node()},
        "threads": options.threads,
        "latency_runs": options.runs,
        "options": options.to_dict(),
        "seconds": round(time.time() - started, 1),
        "devices": {},
        "failed": failed,
    }
    report_lib.write_report(report, out_dir)
    if failed:
        raise PartialBuildError(report, failed)
    return report


class PartialBuildError(EdgeCompressError):
    """Some variants failed; the others and the report were written."""

    def __init__(self, report, failed):
        self.report = report
        names = ", ".join(f["name"] for f in failed)
        super().__init__(
            f"{len(failed)} variant(s) failed ({names}); the other {len(report['artifacts'])} artifact(s) "
            "and the report were written.\n" + "\n".join(f"  {f['name']}: {f['error']}" for f in failed))
