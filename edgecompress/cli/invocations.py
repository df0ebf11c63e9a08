"""The tasks: `edgecompress TASK` when installed, `invoke TASK` in a checkout. Thin: each calls the package.
The device tasks (SSH boards, the emulated Pi, Android) are `cli.device_invocations`.

`edgecompress --list` (or `invoke --list`) shows them; `--help TASK` a task's flags.
"""

from invoke import Collection

from edgecompress.lite.latency import DEFAULT_RUNS
from edgecompress.cli.device_invocations import DEVICE_TASKS
from edgecompress.cli.glue import print_report_summary, setup_logging, task, user_errors
from edgecompress.builder.options import BuildOptions
from edgecompress.recipes.recipe import RECIPES_DIR
from edgecompress.techniques.configs import DistillConfig, FactorizeConfig, PruneConfig

# One source of truth: the flags' defaults are BuildOptions' (importing it loads no TensorFlow).
_B = BuildOptions()


@task(
    optional=["search"],
    help={
        "model": "Your model: .keras, .h5 or SavedModel dir (default: train the bundled teacher).",
        "data": "Images: a folder with one sub-folder per class, an IDX folder, an .npz, or 'fashion-mnist' (default: bundled subset).",
        "calibration": "Folder of calibration images (default: calibration_data/, or drawn from --data).",
        "recipe": "One fixed recipe, open loop: a JSON file, or a shipped name: "
                  f"{', '.join(sorted(p.stem for p in RECIPES_DIR.glob('*.json')))} (default: default without "
                  "--model; with --model, the closed loop: the smallest file within --max-accuracy-drop on "
                  "held-out images).",
        "out": f"Output folder (default: {_B.out_dir}).",
        "epochs": f"Training epochs for the default teacher (default: {_B.epochs}).",
        "seed": f"Random seed (default: {_B.seed}).",
        "threads": f"Interpreter threads for evaluation and latency (default: {_B.threads}).",
        "runs": f"Timed invokes per artifact (default: {_B.runs}).",
        "scale": "Pixel scaling for your model: auto (read from its Rescaling/Normalization layers, confirmed by "
                 f"measuring), unit [0,1], symmetric [-1,1] or raw [0,255] (default: {_B.scale}).",
        "unsafe": "Allow Lambda layers (arbitrary code) when loading --model. Only for models you trust.",
        "quiet": "Hide progress output.",
        "strategy": f"tf.distribute strategy for the teacher: default, mirrored or multiworker (default: {_B.strategy}).",
        "no_cache": "Recompute every stage instead of reusing unchanged ones from OUT/.cache.",
        "search": "Search recipes instead of running one: --search (the shipped space) or --search=FILE.json "
                  "(with --model and no --recipe: the 'auto' space, the closed loop).",
        "budget_minutes": f"Time budget of --search or the closed loop, from the build's start, in minutes "
                          f"(default: {_B.budget_minutes:g}).",
        "workers": "--search: worker processes on this machine sharing the study and the cores (default: 1).",
        "storage": "--search: the study's storage, an RDB URL other machines' workers reach (postgresql://...) "
                   "(default: a journal file in OUT/.edgecompress/study/).",
        "artifacts": "--search: folder where workers put their files, one every machine mounts "
                     "(default: OUT/.edgecompress/study/artifacts).",
        "study": "--search: study name in the storage (default: edgecompress-search).",
        "max_accuracy_drop": "Quality gate: most top-1 points below the baseline, judged on held-out images in a "
                             "search (also tries selective int8 and int16x8; default: 1.0 with --model and no "
                             "--recipe, else none).",
        "max_file_kb": "Quality gate: largest .tflite in KiB.",
        "max_latency_ms": "Quality gate: slowest host p50 in ms.",
        "max_ram_kb": "Quality gate: largest TensorFlow Lite Micro tensor arena in KiB (the RAM a microcontroller "
                      "sets aside); files TFLM cannot run do not meet it.",
        "size": "What 'smallest' means when selecting and searching: file (bytes: what a phone's mmap, a Pi and a "
                f"microcontroller's flash hold) or gzip (the download) (default: {_B.size}).",
        "target": "What the file ships for: cpu (LiteRT on a phone or board) or mcu (TensorFlow Lite Micro: "
                  "full-integer files it runs, by file bytes, under --max-ram-kb; the model's int8 file is tried "
                  f"on TFLM before training; its files are made without tensor names) (default: {_B.target}).",
        "strip_names": "Make every file without the names no kernel reads (tensor names, signature defs): a few "
                       "KB less on the device; LiteRT's signature runner (Android's runSignature) needs them, "
                       "Interpreter.run and the bundled app do not. --target mcu always strips.",
        "margin_se": "A search's file must meet --max-accuracy-drop by this many paired standard errors of its "
                     f"drop on the judging images, so one of many does not pass by luck (default: {_B.margin_se:g}; "
                     "0: the limit as measured).",
        "selection": "How a search holds --max-accuracy-drop: confirmed (certified on held-out data the search "
                     "never scored, at --confidence) or judged (the judged drop plus --margin-se standard errors, "
                     f"the rule before confirmation) (default: {_B.selection}).",
        "confidence": "One-sided confidence of the confirmation: at most 1 - this share of builds promise a file "
                      f"whose true drop is over the limit (default: {_B.confidence:g}).",
        "disjoint_groups": "Refuse --data whose groups (groups_train/groups_test, or <group>__ file names) are in "
                           "both the training and the test split.",
        "patience": "A search stops when this many proposals in a row have not moved its judged front "
                    "(default: the space's; 'auto': 40).",
        "max_metric_drop": "The accuracy limit in the metric's own units, instead of --max-accuracy-drop: 0.01 is "
                           "0.01 of ROC-AUC or R² (one point of top-1).",
        "output": "For a model of several outputs: the output to build and ship, by name (default: the first; "
                  "the file computes that output alone, and --data's labels are its).",
        "task": "What --model is for: classification (top-1), multilabel (mean ROC-AUC of its sigmoid units), "
                "regression (R²) or anomaly (ROC-AUC of its reconstruction error or score); for the last three "
                "--max-accuracy-drop 1 is 0.01 of the metric (default: read from the model's shapes and labels).",
    }
)
def build_edge(c, model=None, data=None, calibration=None, recipe=None, out=_B.out_dir, epochs=_B.epochs, seed=_B.seed,
               threads=_B.threads, runs=_B.runs, scale=_B.scale, unsafe=False, quiet=False, strategy=_B.strategy,
               no_cache=False, max_accuracy_drop=None, max_file_kb=None, max_latency_ms=None, search=None,
               budget_minutes=_B.budget_minutes, workers=_B.workers, storage=None, artifacts=None, study=None,
               task=None, max_metric_drop=None, margin_se=_B.margin_se, output=None, selection=_B.selection,
               confidence=_B.confidence, disjoint_groups=False, patience=None, max_ram_kb=None, size=_B.size,
               target=_B.target, strip_names=False):
    """Build int8/float16/dynamic .tflite files from a Keras model and measure them.

    Options by group (model and data, what to build, limits and selection, search, measuring): the docs' tasks
    page, docs/tasks.md#build-edge-options-by-group.
    """
    setup_logging(not quiet)
    with user_errors():
        from edgecompress.builder.selection import GateError
        from edgecompress.builder.steps import PartialBuildError
        from edgecompress.pipeline import build_edge as run

        opts = BuildOptions(model=model, data=data, calibration=calibration, recipe=recipe, out_dir=out,
                            epochs=int(epochs), seed=int(seed), threads=int(threads), runs=int(runs),
                            scale=scale, safe_mode=not unsafe, verbose=0 if quiet else 1, strategy=strategy, cache=not no_cache,
                            max_accuracy_drop=_num(max_accuracy_drop), max_file_kb=_num(max_file_kb),
                            max_latency_ms=_num(max_latency_ms),
                            search=("default" if search is True else search) or None,
                            budget_minutes=float(budget_minutes), workers=int(workers), storage=storage,
                            artifacts=artifacts, study=study, task=task, max_metric_drop=_num(max_metric_drop),
                            margin_se=float(margin_se), output=output, selection=selection,
                            confidence=float(confidence), disjoint_groups=bool(disjoint_groups),
                            patience=None if patience is None else int(patience), max_ram_kb=_num(max_ram_kb),
                            size=size, target=target, strip_names=bool(strip_names))
        try:
            report = run(opts)
        except PartialBuildError as e:
            print_report_summary(e.report, out)
            raise
        except GateError:
            from edgecompress.report.write import load_report

            print_report_summary(load_report(out), out)
            raise
        print_report_summary(report, out)  # inside: a Ctrl-C while it prints is still exit 130


@task(name="search-worker",
      help={"storage": "The study's storage, as given to build-edge --storage (or journal:PATH for a local study).",
            "out": "Folder for this worker's stage cache (default: the search's own build folder).",
            "study": "Study name in the storage (default: edgecompress-search).",
            "model": "The teacher file on this machine, when its path differs from the search's.",
            "data": "The data on this machine, when its path differs from the search's.",
            "search": "The search space file on this machine, when its path differs from the search's.",
            "artifacts": "The artifact folder on this machine, when its mount point differs.",
            "threads": "TensorFlow threads of this worker (default: all cores).",
            "worker_index": "Seeds this worker's sampler (default: 0).",
            "quiet": "Hide progress output."})
def search_worker(c, storage, out=None, study=None, model=None, data=None, search=None, artifacts=None, threads=None,
                  worker_index=0, quiet=False):
    """Join a running search (build-edge --search --storage URL) and run its trials until its deadline."""
    import os

    if threads:  # before TensorFlow is imported (`edgecompress.models.backend`)
        os.environ["EDGECOMPRESS_TF_THREADS"] = str(int(threads))
    setup_logging(not quiet)
    with user_errors():
        from edgecompress.search.worker import search_worker as run

        run(storage, out_dir=out, study=study, model=model, data=data, search=search, artifacts=artifacts,
            worker_index=int(worker_index), verbose=0)


@task(help={"data": "Dataset source (default: bundled subset).", "out": "Model file to write (default: build/edge/teacher.keras).",
            "epochs": "Epochs (default: 8).", "seed": "Random seed (default: 0)."})
def train(c, data=None, out="build/edge/teacher.keras", epochs=8, seed=0):
    """Train the default teacher CNN and save it as .keras (with its preprocessing spec)."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import train_teacher

        train_teacher(data=data, out=out, epochs=int(epochs), seed=int(seed))


@task(help={"model": "Keras model to convert.", "out": "Output folder (default: build/edge).",
            "calibration": "Calibration images folder (default: calibration_data/).",
            "variants": "Comma-separated variants (default: float32,dynamic,float16,int8,int8_float_io).",
            "unsafe": "Allow Lambda layers when loading the model.",
            "scale": "Pixel scaling: auto (a saved .spec.json, else the model's Rescaling/Normalization layers), unit, symmetric or raw."})
def quantize(c, model, out="build/edge", calibration="calibration_data", variants="float32,dynamic,float16,int8,int8_float_io",
             unsafe=False, scale="auto"):
    """Convert a Keras model to .tflite variants (post-training quantization)."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import quantize_model

        quantize_model(model=model, out=out, calibration_dir=calibration, variants=variants.split(","), safe_mode=not unsafe,
                       scale=scale)


@task(help={"models": "Comma-separated .tflite files (default: every .tflite in build/edge).",
            "data": "Dataset source (default: bundled subset).", "spec": "model_spec.json (default: build/edge/model_spec.json).",
            "threads": "Interpreter threads (default: 1)."})
def evaluate(c, models=None, data=None, spec="build/edge/model_spec.json", threads=1):
    """Measure top-1 accuracy of .tflite files with the TFLite interpreter."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import evaluate_models

        evaluate_models(models=models.split(",") if models else None, data=data, spec=spec, threads=int(threads))


@task(name="calibration-data",
      help={"data": "Dataset source (default: bundled subset).", "out": "Folder to write (default: calibration_data).",
            "per_class": "Images per class (default: 20).", "seed": "Random seed (default: 0)."})
def calibration_data(c, data=None, out="calibration_data", per_class=20, seed=0):
    """Regenerate the representative (calibration) images from a dataset."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import make_calibration

        make_calibration(data=data, out=out, per_class=int(per_class), seed=int(seed))


@task(help={"models": "Comma-separated .tflite files (default: every .tflite in build/edge).",
            "runs": "Timed invokes (default: 200).", "threads": "Threads (default: 1).",
            "no_xnnpack": "Disable the XNNPACK delegate.", "json": "Write the JSON result here.",
            "profile": "Also time each op alone and measure each file's peak memory: where the time goes.",
            "against": "Time the files against this .tflite file in interleaved rounds: how many times as fast.",
            "rounds": "With --against: interleaved rounds (default: 10)."})
def bench(c, models=None, runs=DEFAULT_RUNS, threads=1, no_xnnpack=False, json=None, profile=False, against=None, rounds=10):
    """Benchmark .tflite latency on this machine (TensorFlow-free runtime)."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import bench_against, bench_local

        files = models.split(",") if models else None
        if against:
            bench_against(against, files, rounds=int(rounds), threads=int(threads), xnnpack=not no_xnnpack,
                          json_out=json)
            return
        bench_local(models=files, runs=int(runs), threads=int(threads), xnnpack=not no_xnnpack, json_out=json,
                    profile=profile)


_STAGE_HELP = {"model": "Input Keras model file.", "out": "Output Keras model file.",
               "data": "Training data (default: bundled subset).", "seed": "Random seed (default: 0).",
               "strategy": "tf.distribute strategy: default, mirrored or multiworker (default: default).",
               "unsafe": "Allow Lambda layers when loading the model.",
               "scale": "Pixel scaling: auto, unit, symmetric or raw (default: auto; a saved .spec.json wins)."}


def _with_defaults(config, **texts) -> dict:
    """Help texts for a stage's flags, each followed by its default as the stage's config has it (one place)."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    return {k: f"{v} (default: {defaults[k]:g})." if isinstance(defaults[k], float) else
            f"{v} (default: {defaults[k]})." for k, v in texts.items()}


@task(help={**_STAGE_HELP, **_with_defaults(PruneConfig, final_sparsity="Target sparsity in [0, 1)",
                                             initial_sparsity="Starting sparsity for the polynomial schedule",
                                             schedule="polynomial or constant", epochs="Fine-tuning epochs"),
            "m_by_n": "Structured sparsity, e.g. 2:4.", "policy": "xnnpack: prune only what XNNPACK can use.",
            "qat": "Pruning-preserving quantization-aware training afterwards."})
def prune(c, model, out, data=None, final_sparsity=None, initial_sparsity=None, schedule=None, epochs=None, m_by_n=None,
          policy=None, qat=False, strategy=None, seed=0, unsafe=False, scale="auto"):
    """Prune a Keras model with tfmot (model file in, model file out)."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import run_stage

        run_stage("prune", model, out, data=data, seed=int(seed), safe_mode=not unsafe, scale=scale,
                  final_sparsity=_num(final_sparsity), initial_sparsity=_num(initial_sparsity), schedule=schedule,
                  epochs=_int(epochs), m_by_n=m_by_n, policy=policy, qat=qat or None, strategy=strategy)


@task(help={**_STAGE_HELP, **_with_defaults(DistillConfig, width="Student width multiplier on the teacher's "
                                             "architecture", temperature="Softening temperature",
                                             alpha="Weight of the hard-label loss", epochs="Epochs"),
            "student": "Your own student model file instead."})
def distill(c, model, out, data=None, width=None, student=None, temperature=None, alpha=None, epochs=None,
            strategy=None, seed=0, unsafe=False, scale="auto"):
    """Distill a teacher into a smaller student (model file in, model file out)."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import run_stage

        run_stage("distill", model, out, data=data, seed=int(seed), safe_mode=not unsafe, scale=scale, width=_num(width),
                  student=student, temperature=_num(temperature), alpha=_num(alpha), epochs=_int(epochs),
                  strategy=strategy)


@task(help={**_STAGE_HELP, **_with_defaults(FactorizeConfig, energy="Singular-value energy to keep",
                                             finetune_epochs="Fine-tuning epochs afterwards"),
            "ratio": "Target parameter ratio per layer instead of energy."})
def factorize(c, model, out, data=None, energy=None, ratio=None, finetune_epochs=None, strategy=None, seed=0,
              unsafe=False, scale="auto"):
    """Factorize Dense/Conv2D kernels by truncated SVD (model file in, model file out)."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import run_stage

        run_stage("factorize", model, out, data=data, seed=int(seed), safe_mode=not unsafe, scale=scale, energy=_num(energy),
                  ratio=_num(ratio), finetune_epochs=_int(finetune_epochs), strategy=strategy)


def _num(v):
    return None if v is None else float(v)


def _int(v):
    return None if v is None else int(v)


@task(help={"out": "Build folder (default: build/edge).",
            "max_accuracy_drop": "Most top-1 points below the baseline.", "max_file_kb": "Largest .tflite in KiB.",
            "max_latency_ms": "Slowest p50 in ms (on --device when given, else the host).",
            "device": "Judge latency on this device column of the report, e.g. pi@raspberrypi/ai_edge_litert.",
            "margin_se": "With --selection judged: paired standard errors of a search's file's drop kept inside "
                         f"--max-accuracy-drop (default: {_B.margin_se:g}).",
            "selection": f"confirmed or judged, as for build-edge (default: {_B.selection}).",
            "confidence": f"One-sided confidence of the confirmation (default: {_B.confidence:g}).",
            "max_ram_kb": "Largest TensorFlow Lite Micro tensor arena in KiB.",
            "size": f"file or gzip: what 'smallest' means (default: {_B.size}).",
            "target": f"cpu or mcu (full-integer files TensorFlow Lite Micro runs), as for build-edge (default: "
                      f"{_B.target})."})
def select(c, out="build/edge", max_accuracy_drop=None, max_file_kb=None, max_latency_ms=None, device=None,
           margin_se=_B.margin_se, selection=_B.selection, confidence=_B.confidence, max_ram_kb=None, size=_B.size,
           target=_B.target):
    """Select again in a finished build (e.g. on device latency after bench-device); writes selected.tflite."""
    setup_logging()
    with user_errors():
        from edgecompress.builder.selection import Constraints, select_in_build
        from edgecompress.report.tables import report_task
        from edgecompress.report.write import load_report

        chosen = select_in_build(out, Constraints(_num(max_accuracy_drop), _num(max_file_kb), _num(max_latency_ms),
                                                  _num(max_ram_kb), size=size, device=device,
                                                  margin_se=float(margin_se), selection=selection,
                                                  confidence=float(confidence), target=target))
        said = report_task(load_report(out)).says(chosen["accuracy"])  # "top-1 97.00%", "ROC-AUC 0.9688"
    print(f"Selected {chosen['name']} ({chosen['size_bytes'] / 1024:.1f} KB file, {chosen['gzip_bytes'] / 1024:.1f} "
          f"KB gzipped, {said}): {out}/selected.tflite")


@task(name="check-model", help={"model": "Model to check (default: build/edge/teacher.keras).",
                                "json": "Also write the findings as JSON here.",
                                "unsafe": "Allow Lambda layers when loading the model."})
def check_model(c, model="build/edge/teacher.keras", json=None, unsafe=False):
    """Pre-flight: layers tfmot cannot prune/QAT, ops that will not be int8, XNNPACK sparse use."""
    setup_logging(False)
    with user_errors():
        from edgecompress.models.keras_io import load_model
        from edgecompress.builder.preflight import check_model as run, format_findings
        from edgecompress.models.translate import TranslationLog

        log = TranslationLog()
        r = run(load_model(model, safe_mode=not unsafe, log=log))
        r["translation"] = log.to_dict()
        if json:
            from edgecompress.lite.fileio import atomic_write_json

            atomic_write_json(json, r)
    print(format_findings(r))


@task(help={"k": "Only tests matching this expression.", "fast": "Skip tests marked slow."})
def test(c, k=None, fast=False):
    """Run the test suite."""
    args = ["-q"]
    if k:
        args += ["-k", k]
    if fast:
        args += ["-m", "'not slow'"]
    c.run("python -m pytest " + " ".join(args), pty=False)


ns = Collection(build_edge, search_worker, train, quantize, evaluate, calibration_data, prune, distill, factorize, bench,
                *DEVICE_TASKS, check_model, select, test)
ns.configure({"run": {"echo": True}})
