"""Invoke tasks for edgecompress. Thin: each task calls the package.

`invoke --list` shows them; `invoke --help TASK` shows a task's flags.
"""

from invoke import Collection, task

from edgecompress.cli import print_report_summary, setup_logging, user_errors


@task(
    help={
        "model": "Your model: .keras, .h5 or SavedModel dir (default: train the bundled teacher).",
        "data": "Images: a folder with one sub-folder per class, an IDX folder, an .npz, or 'fashion-mnist' (default: bundled subset).",
        "calibration": "Folder of calibration images (default: calibration_data/, or drawn from --data).",
        "recipe": "Recipe JSON file (default: the built-in recipe).",
        "out": "Output folder (default: build/edge).",
        "epochs": "Training epochs for the default teacher (default: 8).",
        "seed": "Random seed (default: 0).",
        "threads": "Interpreter threads for evaluation and latency (default: 1).",
        "runs": "Timed invokes per artifact (default: 200).",
        "scale": "Pixel scaling for your model: unit [0,1], symmetric [-1,1] or raw [0,255] (default: unit).",
        "unsafe": "Allow Lambda layers (arbitrary code) when loading --model. Only for models you trust.",
        "quiet": "Hide progress output.",
    }
)
def build_edge(c, model=None, data=None, calibration=None, recipe=None, out="build/edge", epochs=8, seed=0,
               threads=1, runs=200, scale="unit", unsafe=False, quiet=False):
    """Build int8/float16/dynamic .tflite files from a Keras model and measure them."""
    setup_logging(not quiet)
    with user_errors():
        from edgecompress.pipeline import BuildOptions, PartialBuildError, build_edge as run

        opts = BuildOptions(model=model, data=data, calibration=calibration, recipe=recipe, out_dir=out,
                            epochs=int(epochs), seed=int(seed), threads=int(threads), runs=int(runs),
                            scale=scale, safe_mode=not unsafe, verbose=0 if quiet else 1)
        try:
            report = run(opts)
        except PartialBuildError as e:
            print_report_summary(e.report, out)
            raise
    print_report_summary(report, out)


@task(help={"data": "Dataset source (default: bundled subset).", "out": "Model file to write (default: build/edge/teacher.keras).",
            "epochs": "Epochs (default: 8).", "seed": "Random seed (default: 0)."})
def train(c, data=None, out="build/edge/teacher.keras", epochs=8, seed=0):
    """Train the default teacher CNN and save it as .keras (with its preprocessing spec)."""
    setup_logging()
    with user_errors():
        from edgecompress.tasks_impl import train_teacher

        train_teacher(data=data, out=out, epochs=int(epochs), seed=int(seed))


@task(help={"model": "Keras model to convert.", "out": "Output folder (default: build/edge).",
            "calibration": "Calibration images folder (default: calibration_data/).",
            "variants": "Comma-separated variants (default: float32,dynamic,float16,int8,int8_float_io).",
            "unsafe": "Allow Lambda layers when loading the model."})
def quantize(c, model, out="build/edge", calibration="calibration_data", variants="float32,dynamic,float16,int8,int8_float_io",
             unsafe=False):
    """Convert a Keras model to .tflite variants (post-training quantization)."""
    setup_logging()
    with user_errors():
        from edgecompress.tasks_impl import quantize_model

        quantize_model(model=model, out=out, calibration=calibration, variants=variants.split(","), safe_mode=not unsafe)


@task(help={"models": "Comma-separated .tflite files (default: every .tflite in build/edge).",
            "data": "Dataset source (default: bundled subset).", "spec": "model_spec.json (default: build/edge/model_spec.json).",
            "threads": "Interpreter threads (default: 1)."})
def evaluate(c, models=None, data=None, spec="build/edge/model_spec.json", threads=1):
    """Measure top-1 accuracy of .tflite files with the TFLite interpreter."""
    setup_logging()
    with user_errors():
        from edgecompress.tasks_impl import evaluate_models

        evaluate_models(models=models.split(",") if models else None, data=data, spec=spec, threads=int(threads))


@task(name="calibration-data",
      help={"data": "Dataset source (default: bundled subset).", "out": "Folder to write (default: calibration_data).",
            "per_class": "Images per class (default: 20).", "seed": "Random seed (default: 0)."})
def calibration_data(c, data=None, out="calibration_data", per_class=20, seed=0):
    """Regenerate the representative (calibration) images from a dataset."""
    setup_logging()
    with user_errors():
        from edgecompress.tasks_impl import make_calibration

        make_calibration(data=data, out=out, per_class=int(per_class), seed=int(seed))


@task(help={"models": "Comma-separated .tflite files (default: every .tflite in build/edge).",
            "runs": "Timed invokes (default: 200).", "threads": "Threads (default: 1).",
            "no_xnnpack": "Disable the XNNPACK delegate.", "json": "Write the JSON result here."})
def bench(c, models=None, runs=200, threads=1, no_xnnpack=False, json=None):
    """Benchmark .tflite latency on this machine (TensorFlow-free runtime)."""
    setup_logging()
    with user_errors():
        from edgecompress.tasks_impl import bench_local

        bench_local(models=models.split(",") if models else None, runs=int(runs), threads=int(threads),
                    xnnpack=not no_xnnpack, json_out=json)


@task(help={"k": "Only tests matching this expression.", "fast": "Skip tests marked slow."})
def test(c, k=None, fast=False):
    """Run the test suite."""
    args = ["-q"]
    if k:
        args += ["-k", k]
    if fast:
        args += ["-m", "'not slow'"]
    c.run("python -m pytest " + " ".join(args), pty=False)


ns = Collection(build_edge, train, quantize, evaluate, calibration_data, bench, test)
ns.configure({"run": {"echo": True}})
