"""Fast checks of the device side's bookkeeping: emulation detection, device columns,
selection on device accuracy, and the argument checks of device-sim and bench-device.

The end-to-end runs on the emulated Pi are in tests/test_device_sim.py.
"""

import json
import platform

import pytest

from edgecompress.lite.latency import device_emulation, emulation
from edgecompress.devices.emulated_pi import SimConfig
from edgecompress.errors import EdgeCompressError
from edgecompress.builder.selection import Constraints, check_device, measures, select
from edgecompress.devices.ssh import SSHOptions
from edgecompress.report.write import device_table


def test_this_machine_is_native_and_a_foreign_arch_on_its_kernel_is_emulated():
    assert emulation()["emulated"] is False
    other = "aarch64" if platform.machine() == "x86_64" else "x86_64"
    got = emulation(other)  # what a qemu-user process sees: uname says one arch, the kernel another
    assert got["emulated"] is True and "qemu-user" in got["how"]
    # A 32-bit userland on its 64-bit kernel is native.
    compat = {"x86_64": "i686", "aarch64": "armv7l"}.get(platform.machine())
    if compat:
        assert emulation(compat)["emulated"] is False


def _report(emulated: bool, with_accuracy: bool = True):
    def result(p50, top1):
        r = {"model": "x", "latency_ms": {"p50": p50}}
        if with_accuracy:
            r["accuracy"] = {"top1": top1, "count": 100, "agreement": 0.97, "host_top1": 0.9}
        return r

    return {
        "baseline": "float32",
        "artifacts": [
            {"name": "float32", "accuracy": 0.90, "size_bytes": 4000, "gzip_bytes": 3000, "latency_ms": {"p50": 0.1}},
            {"name": "int8", "accuracy": 0.90, "size_bytes": 1000, "gzip_bytes": 800, "latency_ms": {"p50": 0.05}},
        ],
        "devices": {"pi/ai-edge-litert": {
            "device": {"emulation": {"emulated": emulated, "how": "qemu-user: test"}},
            "results": {"float32": result(9.0, 0.90), "int8": result(3.0, 0.86)},
        }},
    }


def test_device_table_brackets_emulated_latency_and_adds_accuracy_columns():
    rows = device_table(_report(emulated=True))
    assert rows[0] == ["artifact", "pi/ai-edge-litert p50 ms (emulated)", "pi/ai-edge-litert top-1 %",
                       "pi/ai-edge-litert agree %"]
    assert rows[2] == ["int8", "[3.000]", "86.00", "97.00"]
    rows = device_table(_report(emulated=False, with_accuracy=False))
    assert rows[0] == ["artifact", "pi/ai-edge-litert p50 ms"] and rows[2] == ["int8", "3.000"]
    assert device_emulation(_report(True)["devices"]["pi/ai-edge-litert"]) == "qemu-user: test"


def test_select_on_a_device_uses_its_accuracy():
    report = _report(emulated=False)
    # On this machine int8 loses nothing; on the device it loses 4 points.
    assert measures(report, report["artifacts"][1])["accuracy_drop"] == pytest.approx(0.0)
    assert measures(report, report["artifacts"][1], "pi/ai-edge-litert")["accuracy_drop"] == pytest.approx(4.0)
    assert select(report, Constraints(max_accuracy_drop=1.0))["name"] == "int8"
    assert select(report, Constraints(max_accuracy_drop=1.0, device="pi/ai-edge-litert"))["name"] == "float32"


def test_latency_gate_on_an_emulated_device_is_refused():
    c = Constraints(max_latency_ms=5.0, device="pi/ai-edge-litert")
    with pytest.raises(EdgeCompressError, match="emulated .*qemu-user: test.*not a measurement"):
        check_device(_report(emulated=True), c)
    check_device(_report(emulated=False), c)  # a real board: fine
    check_device(_report(emulated=True), Constraints(max_accuracy_drop=1.0, device="pi/ai-edge-litert"))


def test_several_pythons_and_bad_ones():
    assert SSHOptions(python="/a/python, /b/python").pythons == ["/a/python", "/b/python"]
    with pytest.raises(EdgeCompressError, match="Received: python=' , '"):
        SSHOptions(python=" , ").pythons


@pytest.mark.parametrize("kwargs, match", [
    ({"release": "buster"}, "`release`, expected one of"),
    ({"board": "pi3"}, "`board`, expected one of"),
    ({"port": 22}, "`port`, expected an integer in"),
])
def test_device_sim_config_names_the_bad_argument(kwargs, match):
    with pytest.raises(EdgeCompressError, match=match):
        SimConfig(**kwargs)


def test_device_sim_boards_pin_a_pi_cpu():
    assert SimConfig().cpu == "cortex-a72" and SimConfig(board="pi5").cpu == "cortex-a76"


def test_apk_reads_the_app_facts_from_gradle():
    from edgecompress.devices.apk import app_info

    info = app_info()
    assert (info.package, info.min_sdk, info.target_sdk) == ("dev.edgecompress.demo", 24, 34)


def test_device_accuracy_reads_the_builds_own_data_by_default(tmp_path):
    """`bench-device --accuracy` without --data scores the images the build measured (report.json's
    options.data), not the bundled Fashion-MNIST subset: a shapes model's build was once scored on resized
    clothes (7% top-1 on the emulated Pi) while its own files scored 87%."""
    import numpy as np

    from edgecompress.cli.commands import _device_eval_data

    rng = np.random.default_rng(0)
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=rng.integers(0, 256, (40, 12, 12, 1), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 256, (23, 12, 12, 1), dtype=np.uint8), y_test=np.arange(23) % 4)
    build = tmp_path / "build"
    build.mkdir()
    (build / "model_spec.json").write_text(json.dumps({
        "preprocessing": {"height": 12, "width": 12, "channels": 1, "scale": "unit"},
        "class_names": ["a", "b", "c", "d"]}))
    report = {"seed": 0, "options": {"data": str(data)}}
    path, x, y, task = _device_eval_data(build, None, True, report, tmp_path)
    assert x.shape == (23, 12, 12, 1) and list(y) == list(np.arange(23) % 4) and task == "classification"
    # Without a recorded --data (a default build) it is the bundled subset, whose test split is larger.
    _, x0, _, _ = _device_eval_data(build, None, True, {"seed": 0, "options": {"data": None}}, tmp_path)
    assert len(x0) != 23 and x0.shape[1:] == (12, 12, 1)
