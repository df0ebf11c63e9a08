"""The Android demo: compiled here against android-all + TFLite, JVM tests, adb sequence."""

import json
import shlex
import shutil

import pytest
from invoke import MockContext, Result

from edgecompress.devices.android import ACTIVITY, DEMO_DIR, DEVICE_FILES, bench_android, check_app, copy_assets
from edgecompress.errors import EdgeCompressError


@pytest.mark.slow
def test_app_compiles_and_its_jvm_tests_pass():
    r = check_app()
    assert r["sources"] >= 8 and r["test_classes"] >= 3
    assert r["junit"].startswith("OK (") and int(r["junit"].split("(")[1].split()[0]) >= 9


@pytest.mark.slow
def test_a_compile_error_fails_the_check(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(DEMO_DIR / "app" / "src", app / "src")
    f = app / "src" / "main" / "java" / "dev" / "edgecompress" / "demo" / "core" / "TopK.kt"
    f.write_text(f.read_text().replace("fun of(", "fun of(undefinedType: NoSuchType, "))
    with pytest.raises(EdgeCompressError, match=r"(?s)Kotlin compilation failed.*unresolved reference .NoSuchType"):
        check_app(app, work=DEMO_DIR / ".build")


def test_android_studio_project_layout():
    for rel in ["settings.gradle.kts", "build.gradle.kts", "gradle/libs.versions.toml", "app/build.gradle.kts",
                "app/src/main/AndroidManifest.xml"]:
        assert (DEMO_DIR / rel).is_file(), rel
    gradle = (DEMO_DIR / "app" / "build.gradle.kts").read_text()
    assert "minSdk = 24" in gradle and 'noCompress += "tflite"' in gradle
    sources = "".join(p.read_text() for p in (DEMO_DIR / "app" / "src").rglob("*.kt"))
    assert "androidx" not in sources


@pytest.mark.slow
def test_copy_assets(tmp_path, tiny_tflites, root):
    build = tmp_path / "build"
    build.mkdir()
    for p in tiny_tflites.values():
        shutil.copy(p, build / p.name)
    (build / "model_spec.json").write_text(json.dumps({"preprocessing": {"height": 28}, "class_names": ["a", "b"]}))
    assets = copy_assets(build, app_dir=tmp_path / "app", calibration_dir=root / "calibration_data")
    assert sorted(p.name for p in (assets / "models").iterdir()) == sorted(p.name for p in tiny_tflites.values())
    assert (assets / "model_spec.json").exists() and (assets / "trivial.tflite").exists()
    assert len(list((assets / "samples").iterdir())) == 10  # one per class


def test_copy_assets_without_a_build(tmp_path):
    with pytest.raises(EdgeCompressError, match="Run `invoke build-edge` first"):
        copy_assets(tmp_path, app_dir=tmp_path / "app")


def _device_result(name):
    return {"schema_version": 1, "device": {"board": "Pixel 8", "runtime": {"name": "tflite-android", "version": "2.16.1"}},
            "harness_overhead_us": 0.9, "results": [{"model": name, "latency_ms": {"p50": 1.0}}], "errors": []}


def test_bench_android_adb_sequence_quotes_hostile_names(tmp_path):
    name = "it's a \"model\"; rm -rf x.tflite"
    model = tmp_path / name
    model.write_bytes(b"x")
    out = tmp_path / "out"
    (out / "android").mkdir(parents=True)
    # What `adb pull` would have written.
    (out / "android" / f"{name}.json").write_text(json.dumps(_device_result(name)))
    adb = "adb -s 'emulator-5554'"
    remote_cmd = " ".join(shlex.quote(a) for a in ["am", "start", "-W", "-n", ACTIVITY, "--es", "model", name, "--ei",
                                                    "threads", "2", "--ei", "runs", "50", "--ei", "warmup", "20",
                                                    "--es", "delegate", "gpu"])
    expected = [
        f"{adb} install -r -t app-debug.apk",
        f"{adb} shell " + shlex.quote(f"mkdir -p {DEVICE_FILES}/models {DEVICE_FILES}/bench"),
        f"{adb} push {shlex.quote(str(model))} " + shlex.quote(f"{DEVICE_FILES}/models/{name}"),
        f"{adb} shell " + shlex.quote("rm -f " + shlex.quote(f"{DEVICE_FILES}/bench/{name}.json")),
        f"{adb} logcat -c",
        f"{adb} shell {shlex.quote(remote_cmd)}",
        f"{adb} logcat -d -s 'EdgeCompressBench:*'",
        f"{adb} pull " + shlex.quote(f"{DEVICE_FILES}/bench/{name}.json") + " " + shlex.quote(str(out / "android" / f"{name}.json")),
    ]
    expected = [e.replace("-s 'emulator-5554'", "-s emulator-5554") for e in expected]
    marker = Result(f"I EdgeCompressBench: EDGECOMPRESS_BENCH_DONE model={name} path=/x\n")
    c = MockContext(run={cmd: (marker if "logcat -d" in cmd else Result("")) for cmd in expected}, repeat=True)
    result = bench_android(c, [model], apk="app-debug.apk", serial="emulator-5554", threads=2, runs=50,
                           delegate="gpu", out_dir=out, poll=0)
    assert [call.args[0] for call in c.run.call_args_list] == expected
    assert result["results"][0]["model"] == name
    # The device shell sees the name as one word: its quoting survives both shells.
    device_words = shlex.split(shlex.split(expected[5])[-1])
    assert device_words[device_words.index("model") + 1] == name


def test_bench_android_rejects_bad_delegate(tmp_path):
    with pytest.raises(EdgeCompressError, match="delegate='tpu'"):
        bench_android(MockContext(), [tmp_path / "m.tflite"], apk="a.apk", delegate="tpu")


@pytest.mark.slow
def test_bench_android_without_apk_or_gradle(tmp_path):
    with pytest.raises(EdgeCompressError, match="pass --apk"):
        bench_android(MockContext(), [tmp_path / "m.tflite"])


def test_bench_android_runs_end_to_end_through_a_fake_adb(tmp_path, root):
    """`invoke bench-android` against a fake adb on PATH (tests/support/fake_adb.py): the model with a hostile
    name is pushed, the app's activity started, the result pulled back and read, as with a phone."""
    import os
    import shutil
    import stat
    import subprocess
    import sys

    bin_dir, device = tmp_path / "bin", tmp_path / "phone"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(root / 'tests/support/fake_adb.py'))} "
                   '"$@"\n')
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "edge"
    out.mkdir()
    name = "it's a \"model\"; rm -rf x.tflite"
    shutil.copy2(root / "edgecompress/lite/_data/trivial.tflite", out / name)
    apk = tmp_path / "app-debug.apk"
    apk.write_bytes(b"PK")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_ADB_ROOT=str(device),
               FAKE_ADB_CWD=str(root))
    proc = subprocess.run([sys.executable, "-m", "invoke", "bench-android", "--apk", str(apk), "--models",
                           str(out / name), "--out", str(out), "--runs", "5", "--timeout", "60"], cwd=root,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pulled = json.loads((out / "android" / f"{name}.json").read_text())
    assert pulled["device"]["board"] == "fake-adb" and pulled["results"][0]["model"] == name
    assert pulled["results"][0]["latency_ms"]["p50"] > 0
    assert (device / "device" / DEVICE_FILES.lstrip("/") / "models" / name).read_bytes() == (out / name).read_bytes()
    assert (device / "installed").read_text() == str(apk)
