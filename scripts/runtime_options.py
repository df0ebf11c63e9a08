"""LiteRT 2.3's runtime options against the classic Interpreter, on .tflite files: p50 of 2,000 runs, 1 thread.

    python scripts/runtime_options.py build/mnv3-latency/teacher_float32.tflite build/mnv3-latency/model_int8.tflite

Rows: the classic `Interpreter` (XNNPACK by default: what edgecompress times and ships), then `CompiledModel`
on the CPU with its defaults, with `CpuOptions(enable_ynnpack=True)`, and with XNNPACK flags (QS8|QU8|
ENABLE_LATEST_OPERATORS, then also DISABLE_SUBGRAPH_RESHAPING; values from xnnpack_delegate.h). A fact about
this CPU and this wheel; the README's latency section quotes one run.
"""
import time, sys, numpy as np
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.options import Options
from ai_edge_litert.cpu_options import CpuOptions
from ai_edge_litert.hardware_accelerator import HardwareAccelerator
from ai_edge_litert.interpreter import Interpreter

def cm_time(path, runs=2000, **cpu):
    m = CompiledModel.from_file(path, options=Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=1, **cpu)))
    sig = list(m.get_signature_list().keys())[0]
    ins = {n: m.create_input_buffer_by_name(sig, n) for n in m.get_input_tensor_details(sig)}
    outs = {n: m.create_output_buffer_by_name(sig, n) for n in m.get_output_tensor_details(sig)}
    for n, b in ins.items():
        d = m.get_input_tensor_details(sig)[n]
        dt = np.dtype(d["dtype"]) if d["dtype"] in ("int8","float32","uint8") else np.float32
        b.write(np.random.default_rng(0).integers(-128,127,d["shape"]).astype(dt) if dt==np.int8 else np.random.default_rng(0).random(d["shape"]).astype(dt))
    for _ in range(50): m.run_by_name(sig, ins, outs)
    t = []
    for _ in range(runs):
        t0 = time.perf_counter_ns(); m.run_by_name(sig, ins, outs); t.append((time.perf_counter_ns()-t0)/1e6)
    return float(np.median(t)), m.is_fully_accelerated()

def it_time(path, runs=2000):
    i = Interpreter(model_path=path, num_threads=1); i.allocate_tensors()
    d = i.get_input_details()[0]
    i.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(50): i.invoke()
    t=[]
    for _ in range(runs):
        t0=time.perf_counter_ns(); i.invoke(); t.append((time.perf_counter_ns()-t0)/1e6)
    return float(np.median(t))

if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(path, "interpreter", round(it_time(path), 4))
        for name, kw in [("compiled default", {}), ("compiled ynnpack", {"enable_ynnpack": True}),
                         ("compiled latest-ops", {"xnnpack_flags": 0x1 | 0x2 | 0x40}),
                         ("compiled latest+reshaping-off", {"xnnpack_flags": 0x1 | 0x2 | 0x40 | 0x400})]:
            try:
                ms, full = cm_time(path, **kw)
                print("  ", name, round(ms, 4), "fully accelerated" if full else "not fully")
            except Exception as e:  # noqa: BLE001 - an option this wheel refuses is a row of the table
                print("  ", name, "error", type(e).__name__, str(e)[:150])
