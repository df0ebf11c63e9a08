"""How much faster `.tflite` files are than a reference file on this CPU, timed in interleaved rounds.
TensorFlow-free.

Two files timed one after the other see two moments of a machine. On a 2-core VM (an Intel Xeon, family 6
model 106) the same float32 MobileNetV3 file's p50 moved between 0.19 and 0.28 ms from one run to the next,
and a student timed at 2x its speed in one run was 1.05x in another. Here every file is loaded and warmed up
once; then each round times every file in turn (the order rotated each round, so none always goes first),
and a slow moment of the machine costs the files of that round alike. Each round gives each file a ratio:
the reference's median time over the file's. The speedup is the median of the rounds' ratios, with the
lowest and highest beside it.

    python -m edgecompress.lite.speedup build/edge/teacher_float32.tflite build/edge/selected.tflite
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np

from edgecompress.errors import EXIT_OK, EdgeCompressError, command_result
from edgecompress.lite.harness import set_inputs, time_invokes
from edgecompress.lite.numerics import latency_stats
from edgecompress.lite.runtime import check_tflite_file, make_interpreter, runtime_info

logger = logging.getLogger(__name__)


def _runs_for(ms: float, round_ms: float) -> int:
    """Invokes per file per round: about `round_ms` of the reference's time, 20 to 500."""
    return int(np.clip(round(round_ms / max(ms, 1e-3)), 20, 500))


def compare(reference, models, *, rounds: int = 10, runs: int | None = None, warmup: int = 20, threads: int = 1,
            xnnpack: bool = True, runtime: str | None = None, seed: int = 0, round_ms: float = 200.0) -> dict:
    """Times `reference` and each of `models` in `rounds` interleaved rounds; returns a JSON-ready dict.

    Args:
        reference: The `.tflite` file the others are compared with (e.g. the model's own float32 file).
        models: The other `.tflite` files.
        rounds: Rounds; each times every file once. Defaults to 10.
        runs: Timed invokes per file per round. Defaults to None: about `round_ms` of the reference's time
            (20 to 500).
        warmup: Untimed invokes per file before the first round. Defaults to 20.
        threads: Interpreter threads. Defaults to 1.
        xnnpack: Use the default XNNPACK delegate. Defaults to True.
        runtime: Force a runtime from `runtime.RUNTIMES`.
        seed: Seeds the random inputs. Defaults to 0.
        round_ms: See `runs`. Defaults to 200.

    Returns:
        {"reference", "rounds", "runs", "threads", "xnnpack", "runtime", "cpu", "emulation", "files": [{"model",
        "latency_ms" (`numerics.latency_stats` of every timed invoke), "round_p50_ms", "speedup":
        {"median", "low", "high"}}, ...]}, the reference first (speedup 1).
    """
    if not (isinstance(rounds, int) and rounds >= 1):
        raise EdgeCompressError(f"Received an invalid value for `rounds`, expected an integer >= 1. Received: "
                                f"rounds={rounds!r}")
    if runs is not None and not (isinstance(runs, int) and runs >= 1):
        raise EdgeCompressError(f"Received an invalid value for `runs`, expected an integer >= 1 or None. Received: "
                                f"runs={runs!r}")
    paths = [check_tflite_file(p) for p in [reference, *models]]
    if len(paths) < 2:
        raise EdgeCompressError("Received no file to compare with the reference: pass `models`, one or more "
                                ".tflite files.")
    interps = []
    for p in paths:
        interp = make_interpreter(p, num_threads=threads, use_xnnpack=xnnpack, runtime=runtime)
        set_inputs(interp, None, seed)
        time_invokes(interp, warmup)
        interps.append(interp)
    if runs is None:
        runs = _runs_for(float(np.median(time_invokes(interps[0], 20))), round_ms)
    times = [[] for _ in paths]
    round_p50 = [[] for _ in paths]
    for r in range(rounds):
        for k in range(len(paths)):
            i = (k + r) % len(paths)
            t = time_invokes(interps[i], runs)
            times[i].extend(t)
            round_p50[i].append(float(np.median(t)))
    ref = np.asarray(round_p50[0])
    files = []
    for p, t, rp in zip(paths, times, round_p50):
        ratio = ref / np.asarray(rp)
        files.append({"model": p.name, "latency_ms": latency_stats(t), "round_p50_ms": rp,
                      "speedup": {"median": float(np.median(ratio)), "low": float(ratio.min()),
                                  "high": float(ratio.max())}})
    from edgecompress.lite.latency import device_info

    info = device_info()
    return {"reference": paths[0].name, "rounds": rounds, "runs": runs, "threads": threads, "xnnpack": xnnpack,
            "runtime": runtime_info(runtime).to_dict(),
            "cpu": " ".join(x for x in (info["cpu"], f"({info['cpu_id']})" if info.get("cpu_id") else "") if x),
            "emulation": info["emulation"], "files": files}


def speedup_line(result: dict, model: str | None = None) -> str:
    """One readable line of `compare`'s result for `model` (default: the first file after the reference)."""
    f = next(f for f in result["files"][1:] if model in (None, f["model"]))
    s = f["speedup"]
    ref = result["files"][0]
    return (f"`{f['model']}` is {s['median']:.2f}x as fast as `{ref['model']}` (p50 {f['latency_ms']['p50']:.3f} against "
            f"{ref['latency_ms']['p50']:.3f} ms; median of {result['rounds']} interleaved rounds of {result['runs']} invokes "
            f"each, rounds {s['low']:.2f}-{s['high']:.2f}x), {result['threads']} thread(s), on {result['cpu']}: " +
            (f"an emulated CPU ({result['emulation']['how']}), so not a measurement of any board"
             if (result.get("emulation") or {}).get("emulated") else "a fact about this CPU"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecompress.lite.speedup",
                                description="Time .tflite files against a reference in interleaved rounds "
                                            "(TensorFlow-free).")
    p.add_argument("reference", help="the reference .tflite file (e.g. the model's float32 file)")
    p.add_argument("models", nargs="+", help=".tflite files to compare with it")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    p.add_argument("--runs", type=int, default=None, help="timed invokes per file per round (default: ~200 ms)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--no-xnnpack", action="store_true", help="disable the default XNNPACK delegate")
    p.add_argument("--runtime", default=None, choices=["ai-edge-litert", "tflite-runtime", "tensorflow"])
    p.add_argument("--json", default=None, help="also write the JSON result here")
    args = p.parse_args(argv)
    out, code = command_result(lambda: compare(args.reference, args.models, rounds=args.rounds, runs=args.runs,
                                               threads=args.threads, xnnpack=not args.no_xnnpack,
                                               runtime=args.runtime))
    if code is not None:
        return code
    for f in out["files"][1:]:
        print(speedup_line(out, f["model"]))
    if args.json:
        from edgecompress.lite.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
