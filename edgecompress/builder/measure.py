"""Turning a Keras model into measured `.tflite` artifacts.

`convert_and_measure` converts a model to each variant (into the stage
cache) and measures every file with the real interpreter: top-1, agreement
with the Keras model, size and gzip size, host latency, sparsity, float ops.
`recover_int8` adds a selective-int8 file when full int8 loses too much;
`publish` copies finished files from the cache into the output folder.
Flows (`pipeline.build_edge`, `search.search`) compose these; nothing here
imports them back.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from edgecompress.lite.latency import DEFAULT_RUNS, DEFAULT_WARMUP
from edgecompress.quantize import schemes
from edgecompress.lite import latency, strip
from edgecompress.data import calibration
from edgecompress.quantize import convert
from edgecompress.quantize import rewrites
from edgecompress.report.write import gzip_size
from edgecompress.configs import Config, require
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.evaluation import evaluate_tflite
from edgecompress.lite.fileio import sha256_bytes
from edgecompress.lite.arena import planned_arena_bytes
from edgecompress.lite.reader import float_ops, unique_weights, weight_sparsity
from edgecompress.lite import tasks
from edgecompress.data.preprocessing import to_model_input
from edgecompress.report.results import Artifact
from edgecompress.quantize.schemes import scheme

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MeasureSettings(Config):
    """How every file is timed on this host: interpreter threads, timed invokes and warm-up invokes.

    Args:
        threads: Interpreter threads. Defaults to 1.
        runs: Timed invokes per file. Defaults to 200.
        warmup: Invokes before them, not timed. Defaults to 20.
    """

    threads: int = 1
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP

    def __post_init__(self):
        for name in ("threads", "runs"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1,
                    f"Received an invalid value for `{name}`, expected an integer >= 1. Received: {name}={value!r}")
        require(isinstance(self.warmup, int) and self.warmup >= 0,
                f"Received an invalid value for `warmup`, expected an integer >= 0. Received: warmup={self.warmup!r}")

    def kwargs(self) -> dict:
        """As keyword arguments of `convert_and_measure` and `measure_file`."""
        return {"threads": self.threads, "runs": self.runs, "warmup": self.warmup}


def convert_and_measure(model, conversions, pixels, dataset, cache, model_key, *, threads=1, runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP,
                        prefix="", provenance=None, reference=None, strip_names=False):
    """Converts `model` to each variant (into the cache) and measures it. With `strip_names`
    (`builder.targets.strips_names`) each file is made without the names no kernel reads (`lite.strip`)
    before it is measured, and its record says so (`names_stripped`).

    Returns (artifacts, failed): `results.Artifact`s, whose `cache_path` is
    the file to publish, and {"name", "error"} for variants that failed.
    """
    from edgecompress.recipes.cache import make_key
    from edgecompress.lite.fileio import sha256_bytes

    x_test = to_model_input(dataset.x_test, dataset.preprocessing)
    calib_key = sha256_bytes(pixels.tobytes())
    rep = calibration.representative_dataset(pixels, dataset.preprocessing)
    artifacts, failed = [], []
    for conv in conversions:
        name = prefix + conv.name
        key = make_key(model_key, conv.to_dict(), calib_key, *rewrites.cache_token(scheme(conv.quantization).rewrites),
                       *convert.cache_token(conv), *(["names-stripped"] if strip_names else []))
        data = cache.get_bytes(f"{name}.convert", key, ".tflite")
        if data is None:
            try:
                data = convert.convert(model, conv, rep)
            except EdgeCompressError as e:
                # Keep going: the other variants are still worth having.
                logger.error("  %s: %s", name, e)
                failed.append({"name": name, "error": str(e)})
                continue
            if strip_names:
                data = strip.strip_names(data)
            cache.put_bytes(f"{name}.convert", key, ".tflite", data)
        path = cache.file(f"{name}.convert", key, ".tflite")
        mkey = make_key(sha256_bytes(data), dataset.fingerprint(), threads, runs, warmup, model_key)
        measured = cache.get_json(f"{name}.measure", mkey)
        if measured is None or _lacks_terms(measured):
            if reference is None:
                from edgecompress.models.training import predict

                reference = tasks.task(dataset.task).predictions(predict(model, x_test))
            result, _ = evaluate_tflite(path, x_test, dataset.y_test, reference=reference, num_threads=threads,
                                        task=dataset.task)
            b = latency.benchmark(path, runs=runs, warmup=warmup, threads=threads, probe=False)
            sparsity = weight_sparsity(data)
            measured = {"accuracy": result["accuracy"], "agreement": result.get("agreement"),
                        "terms": result["terms"], **_each_output(result),
                        "latency_ms": b["latency_ms"], "init_ms": b["init_ms"], "delegation": b.get("delegation"),
                        "sparsity": sparsity["overall"], "layer_sparsity": sparsity["layers"],
                        "float_ops": float_ops(data) if scheme(conv.quantization).integer_only else None}
            if any(s["stage"] == "cluster" for s in (provenance or {}).get("stages", [])):
                u = unique_weights(data)  # what clustering left in the file, per channel and per kernel
                measured["unique_weights"] = {k: u[k] for k in ("largest_per_channel", "largest_per_kernel",
                                                                 "max_per_channel", "max_per_kernel")}
            cache.put_json(f"{name}.measure", mkey, measured)
        artifacts.append(artifact_record(name, data, path, conv.quantization.value, measured,
                                         {**(provenance or {}), "conversion": conv.to_dict(),
                                          **({"names_stripped": True} if strip_names else {})}))
        a = artifacts[-1]
        t = tasks.task(dataset.task)
        logger.info("  %s: %d bytes (%d gzipped), %s %s%s, sparsity %.1f%%, p50 %.3f ms", name, a.size_bytes,
                    a.gzip_bytes, t.metric, t.format(a.accuracy),
                    f" ({tasks.says_each(a.extra['outputs'])})" if a.extra.get("outputs") else "",
                    100 * a.sparsity, a.p50_ms)
    return artifacts, failed


def teacher_baseline(teacher, pixels, dataset, cache, teacher_key, entry, **kw):
    """The teacher's own float32 `.tflite`, measured: the baseline `teacher_float32`. Returns (artifacts, failed).

    Raises `sanity.ImplausibleResult` when the file's top-1 is far from the Keras model's (`entry`, measured
    on the same images): every file after it would be judged against a wrong baseline."""
    from edgecompress.models.sanity import check_float_file

    arts, failed = convert_and_measure(teacher, [schemes.float32()], pixels, dataset, cache, teacher_key,
                                       prefix="teacher_", provenance={"recipe": {"name": "teacher"},
                                                                      "stages": [entry.to_dict()]}, **kw)
    if arts and "accuracy" in entry.metrics:
        check_float_file(entry.metrics["accuracy"], arts[0].accuracy, len(dataset.y_test))
    return arts, failed


def artifact_record(name, data, path, quantization, measured, recipe) -> Artifact:
    """One artifact: the file's facts, what was measured, what made it; `cache_path` is what `publish` copies."""
    record = {"name": name, "path": f"{name}.tflite", "cache_path": str(path), "quantization": quantization,
              "size_bytes": len(data), "gzip_bytes": gzip_size(data), "sha256": sha256_bytes(data),
              **{k: v for k, v in measured.items() if k != "terms"}, "tflm": micro_view(path),
              "planned_arena_bytes": planned_arena_bytes(data), "recipe": recipe}
    if scheme(quantization).reference_kernels:  # said beside its latency in every table
        record["kernels"] = scheme(quantization).kernels
    a = Artifact.from_dict(record)
    a.terms = measured.get("terms")  # its per-example metric terms: for a paired comparison, not the report
    return a


def micro_view(path) -> dict | None:
    """TensorFlow Lite Micro's view of a file (`lite.micro.micro_fit`) as the report keeps it, or None where
    tflite-micro is not installed (said once in the log)."""
    from edgecompress.lite.micro import micro_fit

    try:
        return micro_fit(path).to_dict()
    except EdgeCompressError as e:
        if not getattr(micro_view, "said", False):
            logger.warning("No microcontroller view of the files: %s", e)
            micro_view.said = True
        return None


def _each_output(result: dict) -> dict:
    """Of a model of several outputs, each output's metric (`evaluate_tflite`'s `outputs`), kept in the record."""
    return {"outputs": result["outputs"]} if "outputs" in result else {}


def _lacks_terms(measured: dict) -> bool:
    """A cached measurement from before its per-example terms (`evaluation.pack_terms`) were kept: measured
    again."""
    return "terms" not in measured


def measure_file(path, dataset, cache, *, threads=1, runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP) -> dict:
    """Top-1 on `dataset`'s test split and host latency of one `.tflite` file, cached by content:
    {"accuracy", "latency_ms", "init_ms", "terms"} (`evaluation.pack_terms`). A
    search's files, measured one at a time after the study."""
    from edgecompress.recipes.cache import make_key

    data = Path(path).read_bytes()
    key = make_key(sha256_bytes(data), dataset.fingerprint(), threads, runs, warmup)
    measured = cache.get_json("file.measure", key)
    if measured is None or _lacks_terms(measured):
        result, _ = evaluate_tflite(path, to_model_input(dataset.x_test, dataset.preprocessing), dataset.y_test,
                                    num_threads=threads, task=dataset.task)
        b = latency.benchmark(path, runs=runs, warmup=warmup, threads=threads, probe=False)
        measured = {"accuracy": result["accuracy"], "latency_ms": b["latency_ms"], "init_ms": b["init_ms"],
                    "terms": result["terms"], **_each_output(result)}
        cache.put_json("file.measure", key, measured)
    return measured


def runnable_recipe(recipe: dict, float_layers=()) -> dict:
    """The recipe that made a search's file (its `recipe` record), as a file `invoke build-edge --recipe` runs: a
    selective-int8 file's conversion joins its variants."""
    made = dict(recipe["recipe"])
    if float_layers:
        made["quantize"] = list(made["quantize"]) + [recipe["conversion"]]
    return made


def publish(artifacts, out_dir: Path) -> None:
    """Copies finished artifacts from the cache into `out_dir`, each atomically; a search's file gets its recipe
    beside it (`trials/t012.recipe.json`), which the report's trial table links to."""
    from edgecompress.lite.fileio import atomic_write_bytes, atomic_write_json

    for a in artifacts:
        src = Path(a.cache_path)
        dst = out_dir / a.path
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            atomic_write_bytes(dst, src.read_bytes())
        if a.recipe.get("search"):
            atomic_write_json(dst.with_suffix(".recipe.json"),
                              runnable_recipe(a.recipe, a.extra.get("float_layers")))
        a.path, a.cache_path = str(dst), None


def recover_int8(result, dataset, pixels, cache, max_accuracy_drop, *, baseline_metric, measure: MeasureSettings,
                 prefix="",
                 offer=True):
    """When every int8 artifact of `result` loses more than allowed, adds what its scheme's recovery offers.

    `schemes.scheme("int8").recover_with`: a selective-int8 file, whose
    layers the quantization debugger finds most sensitive are kept in float
    (`quantize.debugger.find_float_layers`; `<prefix>int8_selective`), and the other schemes
    it names (`<prefix>int16x8`: 16-bit activations), each measured like any
    artifact and appended to `result.artifacts`. Returns a summary
    (layers, errors, size cost, what was offered), or None when no int8
    artifact needed it.
    """
    from edgecompress.quantize.debugger import find_float_layers

    arts = result.artifacts
    int8 = [a for a in arts if recoverable(a) and a.name.startswith(prefix)]
    if not int8 or any(100 * (baseline_metric - a.accuracy) <= max_accuracy_drop for a in int8):
        return None
    offers = [o for a in int8 for o in scheme(a.quantization).recover_with]
    if not offer:
        offers = [o for o in offers if o == "selective"]
    offered = _offer_schemes(result, [o for o in dict.fromkeys(offers) if o != "selective"], dataset, pixels, cache,
                             int8, measure, prefix)
    if "selective" not in offers:
        return {"offered": offered}
    logger.info("%sint8 loses more than %.2f points; looking for the layers responsible", prefix, max_accuracy_drop)
    x_test = to_model_input(dataset.x_test, dataset.preprocessing)
    rep = calibration.representative_dataset(pixels, dataset.preprocessing)
    r = find_float_layers(result.final_model, rep, x_test, dataset.y_test, max_drop=max_accuracy_drop / 100,
                 float_accuracy=baseline_metric, task=dataset.task)
    summary = {"float_layers": r["float_layers"], "tried": r["tried"], "layer_errors": r["errors"]}
    if r["data"] is not None:
        from edgecompress.recipes.cache import make_key

        name = f"{prefix}int8_selective"
        full = min(int8, key=lambda a: a.size_bytes)
        if full.recipe.get("names_stripped"):  # made as the file it replaces was
            r["data"] = strip.strip_names(r["data"])
        path = cache.put_bytes(f"{name}.convert", make_key(sha256_bytes(r["data"])), ".tflite", r["data"])
        b = latency.benchmark(path, **measure.kwargs(), probe=False)
        measured = {"accuracy": r["accuracy"], "agreement": None, "latency_ms": b["latency_ms"], "init_ms": b["init_ms"],
                    "sparsity": weight_sparsity(r["data"])["overall"], "float_ops": float_ops(r["data"]),
                    "float_layers": r["float_layers"]}
        conv = schemes.ConversionConfig("int8_selective", "int8", io_dtype="float32", float_layers=r["float_layers"])
        arts.append(artifact_record(name, r["data"], path, "int8", measured,
                                    {**full.recipe, "conversion": conv.to_dict(),
                                     "selective": {"float_layers": r["float_layers"]}}))
        summary["size_cost_bytes"] = len(r["data"]) - full.size_bytes
        logger.info("  %s: %s kept in float, %s, +%d bytes", name, ", ".join(r["float_layers"]),
                    tasks.task(dataset.task).says(r["accuracy"]), summary["size_cost_bytes"])
    summary["offered"] = offered
    return summary


def recoverable(artifact) -> bool:
    """Whether `recover_int8` may recover `artifact`: its scheme offers a recovery, and it is quantized per
    channel, as the selective-int8 file it would make is (a per-tensor file is the smaller choice, not one
    to mend)."""
    return bool(scheme(artifact.quantization).recover_with) and \
        artifact.recipe.get("conversion", {}).get("per_channel", True)


def _offer_schemes(result, names, dataset, pixels, cache, int8, measure, prefix) -> list[str]:
    """Converts and measures the final model with each named scheme not already made; returns the new names."""
    from edgecompress.recipes.cache import make_key
    from edgecompress.quantize.schemes import conversion

    arts = result.artifacts
    have = {a.name for a in arts}
    full = min(int8, key=lambda a: a.size_bytes)
    convs = [conversion(n) for n in names if f"{prefix}{n}" not in have]
    if not convs:
        return []
    logger.info("  also offering %s", ", ".join(c.name for c in convs))
    # The int8 file's hash names the final model and calibration set it came from.
    more, failed = convert_and_measure(result.final_model, convs, pixels, dataset, cache,
                                       make_key("recovery", full.sha256), prefix=prefix,
                                       provenance={**full.recipe, "recovery": True},
                                       strip_names=bool(full.recipe.get("names_stripped")), **measure.kwargs())
    arts.extend(more)
    for f in failed:  # an offer that cannot be made is not a failure of the build: it is said, not counted
        logger.warning("  %s could not be offered: %s", f["name"], f["error"])
    return [a.name for a in more]


def time_together(report: dict, rounds: int = 5, budget_ms: float = 40_000.0) -> dict:
    """Times every file of `report` again in `rounds` interleaved rounds (`lite.speedup`), the baseline as the
    reference, and replaces each artifact's `latency_ms` with those timings (and sets its `speedup`);
    `report["latency_timing"]` says how. Returns `speedup.compare`'s result.

    Each file was timed alone, at its own moment: a build times the model's float32 file first and a search's
    files at its end, and on a shared VM the same file's p50 moves by a third between such moments. A gate
    on p50 compares them, so with a latency limit they are timed together first: about `budget_ms` in all,
    20 to 200 ms of the baseline's time per file per round."""
    from edgecompress.lite import speedup

    base = next(a for a in report["artifacts"] if a["name"] == report["baseline"])
    files = [base] + [a for a in report["artifacts"] if a is not base]
    round_ms = min(max(budget_ms / (rounds * len(files)), 20.0), 200.0)
    logger.info("Timing %d files again in %d interleaved rounds, beside %s", len(files), rounds, base["name"])
    result = speedup.compare(base["path"], [a["path"] for a in files[1:]], rounds=rounds, round_ms=round_ms,
                             threads=report.get("threads", 1))
    for a, f in zip(files, result["files"]):
        a["latency_ms"], a["speedup"] = f["latency_ms"], f["speedup"]["median"]
    report["latency_timing"] = {k: result[k] for k in ("reference", "rounds", "runs", "threads", "cpu")}
    return result
