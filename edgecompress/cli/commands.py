"""What the single-stage Invoke tasks do, importable and testable without a shell."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgecompress.lite.latency import DEFAULT_RUNS, DEFAULT_WARMUP
from edgecompress.lite import latency
from edgecompress.data import calibration
from edgecompress.models import keras_io, training
from edgecompress.quantize import convert
from edgecompress.report.write import REPORT_JSON, device_table, format_text_table, gzip_size, load_report, write_report
from edgecompress.configs import ModelSpec, Preprocessing, TrainConfig
from edgecompress.data.loading import load_dataset
from edgecompress.errors import EdgeCompressError, PartialFailure
from edgecompress.lite import tasks
from edgecompress.lite.evaluation import evaluate_tflite
from edgecompress.data.preprocessing import to_model_input
from edgecompress.quantize.schemes import conversion
from edgecompress.quantize.schemes import scheme

logger = logging.getLogger(__name__)


def train_teacher(data=None, out="build/edge/teacher.keras", epochs=8, seed=0):
    ds = load_dataset(data, None if data else Preprocessing(), seed=seed)
    model = training.train_default_teacher(ds, TrainConfig(epochs=epochs, seed=seed))
    keras_io.save_model(model, out, ds.model_spec())
    print(f"Saved {out} (Keras top-1 {100 * training.keras_metric(model, ds):.2f}% on {ds.name} test split)")
    return out


def quantize_model(model, out="build/edge", calibration_dir="calibration_data", variants=(), safe_mode=True,
                   scale="auto"):
    from edgecompress.models.pixelscale import declared_scale
    from edgecompress.models.user import check_scale_name

    check_scale_name(scale)
    m = keras_io.load_model(model, safe_mode=safe_mode)
    saved = keras_io.load_spec(model)
    if saved is not None and scale == "auto":
        spec = saved.preprocessing
    else:
        # No data here to measure with: the flag, else the model's own preprocessing layers, else unit.
        chosen, why = (scale, "--scale was passed") if scale != "auto" else declared_scale(m)
        spec = keras_io.input_preprocessing(m, chosen or "unit")
        logger.info("Pixel scale for calibration: %s (%s)", spec.scale, why if chosen else why + "; unit assumed")
    convs = [conversion(v.strip()) for v in variants]
    rep = None
    if any(scheme(c.quantization).needs_calibration for c in convs):
        rep = calibration.representative_dataset(calibration.load_calibration_images(calibration_dir, spec), spec)
    paths = []
    for conv in convs:
        data = convert.convert(m, conv, rep)
        paths.append(convert.write_tflite(data, out, conv.name))
        print(f"{paths[-1]}: {len(data)} bytes, {gzip_size(data)} gzipped")
    if saved is None:
        saved = ModelSpec(spec, tuple(str(i) for i in range(m.output_shape[-1])))
    from edgecompress.lite.fileio import atomic_write_json

    atomic_write_json(Path(out) / "model_spec.json", saved.to_dict())
    return paths


def _tflite_files(model_paths, folder="build/edge"):
    files = [Path(p) for p in model_paths] if model_paths else sorted(Path(folder).glob("*.tflite"))
    if not files:
        raise EdgeCompressError(f"No .tflite files found in {folder}. Run `invoke build-edge` first, or pass --keras_io.")
    return files


def evaluate_models(models=None, data=None, spec="build/edge/model_spec.json", threads=1):
    spec_path = Path(spec)
    if not spec_path.exists():
        raise EdgeCompressError(f"Preprocessing spec {spec_path} not found; pass --spec (written by `invoke build-edge`).")
    mspec = ModelSpec.from_dict(json.loads(spec_path.read_text()))
    ds = load_dataset(data, mspec.preprocessing, task=mspec.task)
    x = to_model_input(ds.x_test, ds.preprocessing)
    t = tasks.task(ds.task)
    rows = [["artifact", t.metric + (" %" if t.as_percent else ""), "examples"]]
    for f in _tflite_files(models):
        result, _ = evaluate_tflite(f, x, ds.y_test, num_threads=threads, task=ds.task)
        rows.append([f.name, t.format(result["accuracy"]).rstrip("%"), str(result["count"])])
    print(format_text_table(rows))
    return rows


def make_calibration(data=None, out="calibration_data", per_class=20, seed=0):
    ds = load_dataset(data, None if data else Preprocessing(), seed=seed)
    path = calibration.write_calibration_images(ds, out, per_class=per_class, seed=seed)
    return path


def bench_local(models=None, runs=DEFAULT_RUNS, threads=1, xnnpack=True, json_out=None, profile=False):
    from edgecompress.lite.latency import delegation_line
    from edgecompress.lite.profile import profile_line

    out = latency.run([str(f) for f in _tflite_files(models)], runs=runs, threads=threads, xnnpack=xnnpack,
                    profile=profile)
    rows = [["model", "p50 ms", "p90 ms", "mean ms", "init ms"]]
    for r in out["results"]:
        lat = r["latency_ms"]
        rows.append([r["model"], f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['mean']:.3f}", f"{r['init_ms']:.1f}"])
    print(format_text_table(rows))
    for r in out["results"]:
        print(f"{r['model']}: {delegation_line(r.get('delegation'))}" +
              (f"; {profile_line(r.get('profile'), r.get('delegation'))}" if profile else ""))
    print(f"harness overhead: {out['harness_overhead_us']:.2f} us per call; runtime {out['device']['runtime']}")
    if json_out:
        from edgecompress.lite.fileio import atomic_write_json

        atomic_write_json(json_out, out)
    if out["errors"]:
        # Some files failed: a partial failure (4); every file failed: bad input (2).
        kind = PartialFailure if out["results"] else EdgeCompressError
        raise kind(f"{len(out['errors'])} model(s) failed to benchmark:\n" +
                                "\n".join(f"  {e['model']}: {e['error']}" for e in out["errors"]))
    return out


def bench_against(reference, models=None, rounds=10, threads=1, xnnpack=True, json_out=None):
    """`models` (default: every other .tflite beside `reference`) timed against `reference` in interleaved
    rounds (`lite.speedup`); prints one line per file."""
    from edgecompress.lite import speedup
    from edgecompress.lite.runtime import check_tflite_file

    reference = check_tflite_file(reference)
    files = [f for f in _tflite_files(models, folder=reference.parent) if f.resolve() != reference.resolve()]
    out = speedup.compare(reference, files, rounds=rounds, threads=threads, xnnpack=xnnpack)
    for f in out["files"][1:]:
        print(speedup.speedup_line(out, f["model"]))
    if json_out:
        from edgecompress.lite.fileio import atomic_write_json

        atomic_write_json(json_out, out)
    return out


def run_stage(stage: str, model, out, data=None, seed=0, safe_mode=True, scale="auto", **params):
    """Applies one recipe stage to a model file and saves the result (model in, model out).

    A Keras 3 model comes back as a Keras 3 file.
    """
    from edgecompress.recipes.registry import STAGES, run_stage
    from edgecompress.models.user import open_model

    config = STAGES[stage].config.from_dict({k: v for k, v in params.items() if v is not None})
    user = open_model(model, data, scale=scale, seed=seed, safe_mode=safe_mode)
    ds = user.dataset
    result, metrics = run_stage(config, user.model, ds, teacher=user.model, seed=seed, verbose=1)
    keras_io.save_model(result, out, ds.model_spec(), fmt=user.format)
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if not isinstance(v, (list, dict))}
    print(f"Saved {out}: {shown}")
    return out, metrics


def _device_eval_data(out, data, count, report, folder) -> tuple[Path, object, object, str]:
    """The first `count` test images of `data` (by default the build's own `--data`, from its `report`),
    preprocessed as the build did, written as an `.npz`."""
    import numpy as np

    report = report or {}
    if data is None:  # the images the build measured, not the bundled subset
        data = (report.get("options") or {}).get("data")
    seed = report.get("seed", 0)
    spec_path = Path(out) / "model_spec.json"
    if not spec_path.exists():
        raise EdgeCompressError(f"--accuracy needs {spec_path} (the build's preprocessing); run `invoke build-edge` first.")
    mspec = ModelSpec.from_dict(json.loads(spec_path.read_text()))
    ds = load_dataset(data, mspec.preprocessing, seed=seed, task=mspec.task)
    try:
        n = len(ds.y_test) if count is True else int(count)
    except (TypeError, ValueError):
        n = -1
    if not 1 <= n <= len(ds.y_test):
        raise EdgeCompressError(f"Received an invalid value for `accuracy`, expected 1..{len(ds.y_test)} images "
                                f"(the test split of {ds.name}). Received: accuracy={count!r}")
    x = to_model_input(ds.x_test[:n], ds.preprocessing).astype(np.float32)
    y = ds.y_test[:n].astype(np.int64)
    path = Path(folder) / "eval.npz"
    np.savez(path, x=x, y=y, task=np.asarray(ds.task))  # the device scores the task (lite/tasks.py) itself
    logger.info("Accuracy on the device: %d test images of %s", n, data or "the bundled subset")
    return path, x, y, ds.task


def _agreement(results: dict, files, x, y, threads: int, task: str = "classification") -> None:
    """Replaces each device's predicted labels by top-1 and agreement with this machine's predictions."""
    import numpy as np

    host = {}
    for f in files:
        r, pred = evaluate_tflite(f, x, y, num_threads=threads, task=task)
        host[Path(f).name] = (r["accuracy"], pred)
    for r in results.values():
        for m in r.get("results", []):
            acc = m.get("accuracy")
            if not acc or m["model"] not in host:
                continue
            if "predictions" not in acc:  # a task without labels: its metric here beside the device's
                acc["host_metric"] = host[m["model"]][0]
                continue
            pred = np.asarray(acc.pop("predictions"))
            host_top1, host_pred = host[m["model"]]
            acc["agreement"] = float((pred == host_pred).mean())
            acc["host_top1"] = host_top1


def bench_device(hosts, models=None, out="build/edge", options=None, runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP, threads=1,
                 accuracy=None, data=None, profile=False, tflm=False):
    """Benchmarks a build's artifacts on devices over SSH and merges them into its report.

    With `accuracy` (True for the whole test split, or a number of images),
    each file is also run on those images on the device: its top-1 there and
    its agreement with this machine's predictions become device columns. The
    images are `data`'s test split; by default the build's own `--data`
    (report.json's `options.data`; the bundled subset for a default build).
    With `profile`, each file's ops are timed alone on the device and its
    peak memory read there (`lite.profile`), in the report beside the host's.
    """
    import tempfile

    from edgecompress.devices import ssh

    files = _tflite_files(models, out)
    report_path = Path(out) / REPORT_JSON
    report = load_report(out) if report_path.exists() else None
    with tempfile.TemporaryDirectory(prefix="edgecompress-eval-") as tmp:
        eval_path = x = y = task = None
        if accuracy not in (None, False):
            eval_path, x, y, task = _device_eval_data(out, data, accuracy, report, tmp)
        results = ssh.bench_devices(list(hosts), files, options or ssh.SSHOptions(), runs=runs, warmup=warmup,
                                       threads=threads, eval_data=eval_path, profile=profile, tflm=tflm)
    if eval_path is not None:
        _agreement(results, files, x, y, threads, task)
    if report is not None:
        ssh.merge_into_report(report, results)
        write_report(report, out)
        table = device_table(report)
        if table:
            print(format_text_table(table))
        print(f"Merged into {report_path} and report.md")
    else:
        from edgecompress.lite.fileio import atomic_write_json

        atomic_write_json(Path(out) / "devices.json", results)
        print(f"No report in {out}; wrote {out}/devices.json")
    emulated = sorted({r["host"] for r in results.values() if r.get("device", {}).get("emulation", {}).get("emulated")})
    if emulated:
        print(f"Emulated CPU on {', '.join(emulated)}: its latency is not a measurement of any board "
              "(accuracy is); `invoke select --device` will not gate on it.")
    hosts = [r["error"] for r in results.values() if "error" in r]
    files = [f"{r['host']} ({r['device']['runtime']['name']}): {e['model']}: {e['error']}"
             for r in results.values() for e in r.get("errors", [])]
    if hosts or files:
        n_hosts = len({r.get("host", k) for k, r in results.items()})
        raise PartialFailure(f"{len({k.split()[0] for k, r in results.items() if 'error' in r})} of {n_hosts} "
                                f"host(s) failed, {len(files)} file(s) failed on a device; the rest is in the report:\n"
                                + "\n".join(f"  {e}" for e in hosts + files))
    return results


def bench_android_task(c, apk=None, models=None, out="build/edge", serial=None, threads=1, runs=DEFAULT_RUNS, delegate="xnnpack",
                       timeout=300.0):
    """Runs the app's headless benchmark over adb and merges it into the build's report."""
    from edgecompress.devices import android
    from edgecompress.devices import ssh

    files = _tflite_files(models, out)
    result = android.bench_android(c, files, apk=apk, serial=serial, threads=threads, runs=runs, delegate=delegate,
                                   out_dir=out, timeout=timeout)
    label = f"android:{serial or result['device'].get('board') or 'device'}"
    report_path = Path(out) / REPORT_JSON
    if report_path.exists():
        report = load_report(out)
        ssh.merge_into_report(report, {label: result})
        write_report(report, out)
        print(format_text_table(device_table(report)))
    if result["errors"]:
        raise PartialFailure(f"{len(result['errors'])} model(s) failed on {label}; the rest is in the report:\n"
                             + "\n".join(f"  {e['model']}: {e['error']}" for e in result["errors"]))
    return result
