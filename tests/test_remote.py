"""`invoke bench-device` against a real OpenSSH server on 127.0.0.1.

The "devices" are TensorFlow-free virtualenvs (tests/support/device_envs.py):
ai-edge-litert with numpy 2, and tflite-runtime 2.14 with numpy<2.
"""

import json
import shutil
import socket
import threading
import uuid
from pathlib import Path

import pytest

from conftest import run_invoke
from edgecompress.errors import EdgeCompressError
from edgecompress.devices.ssh import SSHOptions, bench_devices, bench_on_host
from support import device_envs
from support.sshd import SSHServer, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = SSHServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_build(tmp_path_factory, root):
    """A real build (quantize-only recipe, 1 epoch) to benchmark on the devices."""
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge

    out = tmp_path_factory.mktemp("build")
    build_edge(BuildOptions(out_dir=str(out), recipe="quantize-only", epochs=1, runs=20, verbose=0))
    return out


def _opts(sshd, env, **kw):
    return SSHOptions(known_hosts=str(sshd.known_hosts), key=str(sshd.client_key), timeout=10,
                      python=str(device_envs.build(env)), **kw)


def _remote_tmpdirs():
    return set(Path("/tmp").glob("edgecompress.*"))


@pytest.mark.parametrize("env, runtime", [("litert", "ai-edge-litert"), ("tflite-runtime", "tflite-runtime")])
def test_bench_device_adds_every_artifact_for_both_runtimes(sshd, small_build, root, env, runtime):
    python = device_envs.build(env)
    before = _remote_tmpdirs()
    proc = run_invoke(["bench-device", "--host", sshd.host, "--out", str(small_build), "--python", str(python),
                       "--known-hosts", str(sshd.known_hosts), "--key", str(sshd.client_key), "--runs", "30"], cwd=root)
    # A file the runtime cannot load is a partial failure: reported, the rest kept, a non-zero exit.
    assert proc.returncode == (4 if runtime == "tflite-runtime" else 0), proc.stderr[-3000:]
    if runtime == "tflite-runtime":
        assert "(tflite-runtime): dynamic.tflite: Cannot load" in proc.stderr
    report = json.loads((small_build / "report.json").read_text())
    dev = report["devices"][f"{sshd.host}/{runtime}"]
    measured = set(dev["results"])
    failed = {e["model"]: e["error"] for e in dev["errors"]}
    if runtime == "tflite-runtime":
        # TF 2.21 writes FULLY_CONNECTED version 12 for dynamic-range models, which the
        # 2.14 runtime does not know; it must say so, not crash.
        assert set(failed) == {"dynamic.tflite"}
        assert "FULLY_CONNECTED' version '12'" in failed["dynamic.tflite"]
        measured.add("dynamic")
    else:
        assert failed == {}
    assert measured == {a["name"] for a in report["artifacts"]}
    assert dev["device"]["runtime"]["name"] == runtime
    assert dev["device"]["tensorflow_imported"] is False
    assert all(r["latency_ms"]["count"] == 30 for r in dev["results"].values())
    assert f"{sshd.host}/{runtime} p50 ms" in (small_build / "report.md").read_text()
    assert _remote_tmpdirs() == before, "the remote temporary directory was left behind"


@pytest.mark.parametrize("env", ["litert", "tflite-runtime"])
def test_device_envs_cannot_import_tensorflow(env):
    import subprocess

    proc = subprocess.run([str(device_envs.build(env)), "-c", "import tensorflow"], capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'tensorflow'" in proc.stderr


def test_bench_device_profile_times_each_op_on_the_device_and_the_report_says_it(sshd, small_build, root):
    """`bench-device --profile`: the device's own op times and peak memory (lite/profile.py run there, with
    ai-edge-litert's schema), in report.json's device column and one report.md line per file."""
    python = device_envs.build("litert")
    proc = run_invoke(["bench-device", "--host", sshd.host, "--out", str(small_build), "--python", str(python),
                       "--known-hosts", str(sshd.known_hosts), "--key", str(sshd.client_key), "--runs", "10",
                       "--models", str(small_build / "int8.tflite"), "--profile"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((small_build / "report.json").read_text())
    r = report["devices"][f"{sshd.host}/ai-edge-litert"]["results"]["int8"]
    ops = r["profile"]["ops"]
    assert ops["sum_ms"] > 0 and abs(sum(e["share"] for e in ops["by_op"].values()) - 1) < 1e-6
    assert "CONV_2D" in ops["by_op"] and r["profile"]["peak_memory_mb"] > 0
    md = (small_build / "report.md").read_text()
    assert f"Profiled on {sshd.host}/ai-edge-litert (each op timed alone on the device):" in md
    assert "- `int8`: 1 XNNPACK partition" in md and "most time: " in md


def test_old_runtime_under_numpy2_is_a_clear_error(sshd, small_build):
    with pytest.raises(EdgeCompressError, match="compiled against numpy 1.x, cannot run under numpy 2"):
        bench_on_host(sshd.host, [small_build / "int8.tflite"], _opts(sshd, "tflite-runtime-numpy2"), runs=5)


def test_hostile_model_names_are_quoted(sshd, small_build, tmp_path):
    canary = f"edgecompress_canary_{uuid.uuid4().hex[:8]}"
    name = f"it's a \"model\"; cd ..; touch {canary}; .tflite"
    shutil.copy(small_build / "int8.tflite", tmp_path / name)
    [out] = bench_on_host(sshd.host, [tmp_path / name], _opts(sshd, "litert"), runs=5)
    assert [r["model"] for r in out["results"]] == [name]
    assert not (Path("/tmp") / canary).exists() and not (Path.home() / canary).exists()


def test_bad_model_on_device_is_reported_not_fatal(sshd, small_build, tmp_path):
    data = (small_build / "int8.tflite").read_bytes()
    (tmp_path / "trunc.tflite").write_bytes(data[: len(data) // 3])
    [out] = bench_on_host(sshd.host, [small_build / "int8.tflite", tmp_path / "trunc.tflite"], _opts(sshd, "litert"), runs=5)
    assert [r["model"] for r in out["results"]] == ["int8.tflite"]
    assert out["errors"][0]["model"] == "trunc.tflite"


def test_unreachable_host_keeps_the_others(sshd, small_build):
    dead = f"root@127.0.0.1:{free_port()}"
    results = bench_devices([sshd.host, dead], [small_build / "int8.tflite"], _opts(sshd, "litert"), runs=5)
    assert results[sshd.host]["results"][0]["model"] == "int8.tflite"
    assert "cannot connect" in results[dead]["error"] and dead in results[dead]["error"]


def test_unreachable_host_via_invoke_exits_nonzero_but_merges_the_rest(sshd, small_build, root):
    dead = f"root@127.0.0.1:{free_port()}"
    proc = run_invoke(["bench-device", "--host", sshd.host, "--host", dead, "--out", str(small_build),
                       "--python", str(device_envs.build("litert")), "--known-hosts", str(sshd.known_hosts),
                       "--key", str(sshd.client_key), "--runs", "5", "--timeout", "5"], cwd=root)
    assert proc.returncode == 4 and "1 of 2 host(s) failed" in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads((small_build / "report.json").read_text())
    assert "cannot connect" in report["devices"][dead]["error"]
    assert f"{sshd.host}/ai-edge-litert" in report["devices"]


def test_silent_host_times_out(sshd, small_build):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    conns = []
    t = threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True)
    t.start()
    host = f"root@127.0.0.1:{srv.getsockname()[1]}"
    opts = SSHOptions(known_hosts=str(sshd.known_hosts), key=str(sshd.client_key), timeout=2)
    try:
        with pytest.raises(EdgeCompressError, match="no SSH answer within 2 s"):
            bench_on_host(host, [small_build / "int8.tflite"], opts, runs=1)
    finally:
        srv.close()


def test_host_key_mismatch_is_refused(sshd, small_build, tmp_path):
    import subprocess

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    pub = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {pub}\n")
    opts = SSHOptions(known_hosts=str(kh), key=str(sshd.client_key), timeout=10)
    with pytest.raises(EdgeCompressError, match="host key does not match"):
        bench_on_host(sshd.host, [small_build / "int8.tflite"], opts, runs=1)


def test_unknown_host_key_is_refused(sshd, small_build, tmp_path):
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    opts = SSHOptions(known_hosts=str(kh), key=str(sshd.client_key), timeout=10)
    with pytest.raises(EdgeCompressError, match="host key unknown.*ssh-keyscan"):
        bench_on_host(sshd.host, [small_build / "int8.tflite"], opts, runs=1)
