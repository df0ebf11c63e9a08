"""Where a `.tflite` file's time and memory go: each op timed alone, and the memory one run of the file takes.
TensorFlow-free (numpy, a TFLite runtime, and ai-edge-litert's flatbuffer schema for the op timing).

LiteRT 2.3's Python API has no per-op profiler (its interpreter wrapper lists nodes, not their times), so
each op is cut out of the file into a one-op file (its weights, its quantization, its options), and that file
is timed with the same runtime, threads and delegate. An op timed alone misses what its neighbours share
(a delegate partition's set-up, cache reuse), so the sum of the ops is said beside the whole file's time,
and every share is a share of that sum. Ops that call other subgraphs (WHILE, IF, CALL_ONCE) or keep state
(variable tensors, LSTM cells) are not cut, nor ops of constants only (a float16 file's DEQUANTIZE of its
weights: computed when the file loads); they are said as not timed.

Memory is the rise of the peak resident set while a fresh child process loads the file, allocates it and
runs it three times: Linux's `VmHWM` after, over `VmRSS` with the runtime imported and the peak reset
(`/proc/self/clear_refs`): weights, the tensor arena and the delegate's packed weights. Linux only (a Pi
and Android's shell are Linux). It is a fact about this runtime on this machine.

    python -m edgecompress.lite.latency build/edge/int8.tflite --profile
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

_CALLS_SUBGRAPHS = {"WHILE", "IF", "CALL_ONCE", "CALL", "STABLEHLO_WHILE", "STABLEHLO_CASE"}


def one_op_files(model_content: bytes):
    """Yields (index, op name, the op alone as `.tflite` bytes, or None with the reason it cannot be cut)
    for each op of the primary subgraph. The one-op file's inputs are the op's runtime inputs; its
    constant inputs keep their bytes."""
    import flatbuffers

    from edgecompress.lite.reader import ModelFile, flatbuffer_schema

    schema = flatbuffer_schema()
    f = ModelFile(model_content)
    model, graph = f.model, f.graph
    for op_info, op in zip(f.ops, graph.operators):
        name = op_info["op_name"]
        used = [int(t) for t in list(op.inputs) + list(op.outputs) + list(op.intermediates if op.intermediates
                                                                            is not None else []) if int(t) >= 0]
        used = list(dict.fromkeys(used))
        if name in _CALLS_SUBGRAPHS:
            yield op_info["index"], name, None, "calls another subgraph"
            continue
        if any(graph.tensors[t].isVariable for t in used):
            yield op_info["index"], name, None, "keeps state between runs"
            continue
        remap = {t: k for k, t in enumerate(used)}
        buffers = [schema.BufferT()]  # buffer 0: the empty one every runtime tensor points at
        tensors, inputs = [], []
        for t in used:
            tensor = copy.copy(graph.tensors[t])
            raw = f.stored_bytes(t) if tensor.buffer > 0 else b""
            if raw:
                b = schema.BufferT()
                b.data = np.frombuffer(raw, np.uint8)
                buffers.append(b)
                tensor.buffer = len(buffers) - 1
            else:
                tensor.buffer = 0
                if t in op.inputs:
                    inputs.append(remap[t])
            tensors.append(tensor)
        if not inputs:  # DEQUANTIZE of float16 weights, DENSIFY: run once, when the file loads
            yield op_info["index"], name, None, "reads constants only (computed when the file loads)"
            continue
        one = copy.copy(op)
        one.inputs = [remap[int(t)] if int(t) >= 0 else -1 for t in op.inputs]
        one.outputs = [remap[int(t)] for t in op.outputs]
        if op.intermediates is not None:
            one.intermediates = [remap[int(t)] for t in op.intermediates]
        sub = schema.SubGraphT()
        sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, inputs, list(one.outputs), [one]
        sub.name = graph.name
        m = schema.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers = model.version, model.operatorCodes, [sub], buffers
        m.description = b"one op of a profiled file"
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        yield op_info["index"], name, bytes(builder.Output()), None


def _median_ms(interp, runs: int, warmup: int) -> float:
    from edgecompress.lite.harness import set_inputs, time_invokes

    set_inputs(interp)
    time_invokes(interp, warmup)
    return float(np.median(time_invokes(interp, runs)))


def op_times(model_path, *, runs: int = 50, warmup: int = 5, threads: int = 1, xnnpack: bool = True,
             runtime: str | None = None, outside: set[int] | None = None) -> dict:
    """Each op of the file timed alone (p50 of `runs` invokes after `warmup`), with the runtime, threads and
    delegate given. `outside`: the op indices the delegate left out of the whole file's graph
    (`latency.delegation(...)["outside_nodes"]`), so the time they take can be said as a share.

    Returns {"ops": [{"index", "op", "ms" or None, "why_not"}], "by_op": {op: {"count", "ms", "share"}},
    "sum_ms", "outside_ms", "outside_share", "untimed"}, ops by op type sorted by time, shares of `sum_ms`."""
    from edgecompress.lite.runtime import check_tflite_file, make_interpreter

    path = check_tflite_file(model_path)
    rows = []
    for index, name, data, why in one_op_files(path.read_bytes()):
        ms = None
        if data is not None:
            try:
                ms = _median_ms(make_interpreter(model_content=data, num_threads=threads, use_xnnpack=xnnpack,
                                                 runtime=runtime), runs, warmup)
            except (EdgeCompressError, RuntimeError, ValueError) as e:  # the runtime's own refusals of one op alone
                why = f"cannot run alone: {str(e).strip()[:120]}"
        rows.append({"index": index, "op": name, "ms": ms, "why_not": why})
    timed = [r for r in rows if r["ms"] is not None]
    total = float(sum(r["ms"] for r in timed))
    by_op: dict[str, dict] = {}
    for r in timed:
        e = by_op.setdefault(r["op"], {"count": 0, "ms": 0.0})
        e["count"] += 1
        e["ms"] += r["ms"]
    for e in by_op.values():
        e["share"] = e["ms"] / total if total > 0 else 0.0
    out_ms = float(sum(r["ms"] for r in timed if outside and r["index"] in outside))
    return {"ops": rows, "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["ms"])),
            "sum_ms": total, "outside_ms": out_ms if outside is not None else None,
            "outside_share": (out_ms / total if total > 0 else 0.0) if outside is not None else None,
            "untimed": [{"index": r["index"], "op": r["op"], "why_not": r["why_not"]} for r in rows if r["ms"] is None],
            "runs": runs, "threads": threads, "xnnpack": xnnpack}


_MEMORY_CHILD = """
import json, sys
from edgecompress.lite.harness import set_inputs
from edgecompress.lite.runtime import make_interpreter, runtime_info

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # KiB

runtime_info(sys.argv[4] or None)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the resident set now: the imports' peak is not the file's
before = status("VmRSS")
interp = make_interpreter(sys.argv[1], num_threads=int(sys.argv[2]), use_xnnpack=sys.argv[3] == "1", runtime=sys.argv[4] or None)
set_inputs(interp)
for _ in range(3):
    interp.invoke()
print(json.dumps({"before_kib": before, "after_kib": status("VmHWM")}))
"""


def peak_memory_mb(model_path, *, threads: int = 1, xnnpack: bool = True, runtime: str | None = None,
                   timeout: float = 120.0) -> float:
    """MB the peak resident set of a fresh process rises by while it loads, allocates and runs the file three
    times (Linux `/proc/self/status`). A child process, so one file's peak is not another's."""
    from edgecompress.lite.runtime import check_tflite_file

    path = check_tflite_file(model_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path), str(threads), "1" if xnnpack else "0",
                               runtime or ""], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise EdgeCompressError(f"Measuring the memory of {path} took over {timeout:.0f} s.") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise EdgeCompressError(f"Cannot measure the memory of {path}: {tail}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return (r["after_kib"] - r["before_kib"]) / 1024


def profile(model_path, delegation: dict | None = None, **kwargs) -> dict:
    """`op_times` and `peak_memory_mb` of one file: {"ops": ..., "peak_memory_mb": ...}; either is None with
    `why` where it cannot be read on this machine (no flatbuffer schema on a tflite-runtime board)."""
    out: dict = {}
    outside = set((delegation or {}).get("outside_nodes") or []) if delegation else None
    try:
        out["ops"] = op_times(model_path, outside=outside, **kwargs)
    except EdgeCompressError as e:
        out["ops"], out["ops_why_not"] = None, str(e)
    mem_kwargs = {k: v for k, v in kwargs.items() if k in ("threads", "xnnpack", "runtime")}
    try:
        out["peak_memory_mb"] = peak_memory_mb(model_path, **mem_kwargs)
    except EdgeCompressError as e:
        out["peak_memory_mb"], out["memory_why_not"] = None, str(e)
    return out


def profile_line(p: dict | None, delegation: dict | None = None, top: int = 3) -> str:
    """One readable line: "HARD_SWISH x18 outside XNNPACK: 41% of the op time; most time: CONV_2D 38%,
    HARD_SWISH 41%, ...; ops alone sum to 0.210 ms; peak memory +3.1 MB"."""
    if not p:
        return "not profiled"
    parts = []
    ops = p.get("ops")
    if ops and ops["sum_ms"] > 0:
        if ops.get("outside_share") is not None and delegation and delegation.get("outside"):
            names = ", ".join(f"{op}{f' x{k}' if k > 1 else ''}" for op, k in delegation["outside"].items())
            parts.append(f"{names} outside the delegate: {100 * ops['outside_share']:.0f}% of the op time")
        most = ", ".join(f"{op} {100 * e['share']:.0f}%" for op, e in list(ops["by_op"].items())[:top])
        parts.append(f"most time: {most}")
        parts.append(f"ops timed alone sum to {ops['sum_ms']:.3f} ms" +
                     (f" ({len(ops['untimed'])} not timed)" if ops["untimed"] else ""))
    elif p.get("ops_why_not"):
        parts.append(f"ops not timed ({p['ops_why_not']})")
    if p.get("peak_memory_mb") is not None:
        parts.append(f"peak memory +{p['peak_memory_mb']:.1f} MB")
    return "; ".join(parts) or "not profiled"
