"""`invoke android-apk`: a debug APK built here without Gradle, checked with the SDK's own tools.

What is checked is what makes an APK install and launch: apksigner's v2
signature, zipalign's page alignment, aapt's reading of the manifest (package,
minSdk 24, launchable activity, native code), the models stored uncompressed,
and the dex itself: no invoke-custom (dexdump), every referenced class
defined in it or on Android 7.0. No phone or emulator runs it here (Google's
system images are out of reach); `invoke bench-android` does on a real phone.
"""

import dataclasses
import json
import re
import shutil
import subprocess
import zipfile

import pytest

from conftest import run_invoke
from edgecompress.devices.apk import DEBUG_KEYSTORE, _toolchain, app_info
from edgecompress.devices.dex import check_dex, framework_jars, read_dex
from edgecompress.devices.android import DEMO_DIR
from edgecompress.errors import EdgeCompressError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("aapt", "zipalign", "apksigner", "dexdump", "mvn")),
                       reason="needs aapt, zipalign, apksigner, dexdump and mvn: apt-get install android-sdk-build-tools apksigner dexdump maven (scripts/install-system-deps.sh)"),
]


@pytest.fixture(scope="module")
def apk(tmp_path_factory, tiny_tflites, root):
    build = tmp_path_factory.mktemp("build")
    for p in tiny_tflites.values():
        shutil.copy(p, build / p.name)
    (build / "model_spec.json").write_text(json.dumps({"preprocessing": {"height": 28}, "class_names": ["a", "b"]}))
    proc = run_invoke(["android-apk", "--out", str(build)], cwd=root, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    path = build / "edgecompress-demo-debug.apk"
    assert f"{path}:" in proc.stdout
    return path


def _run(*cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def test_signed_aligned_and_readable(apk):
    out = _run("apksigner", "verify", "--verbose", apk)
    assert "Verified using v2 scheme (APK Signature Scheme v2): true" in out
    _run("zipalign", "-c", "-p", "4", apk)
    badging = _run("aapt", "dump", "badging", apk)
    info = app_info()
    assert f"package: name='{info.package}'" in badging
    assert "sdkVersion:'24'" in badging and f"targetSdkVersion:'{info.target_sdk}'" in badging
    assert "launchable-activity: name='dev.edgecompress.demo.MainActivity'" in badging
    assert re.search(r"native-code: 'arm64-v8a' 'armeabi-v7a' 'x86_64'", badging), badging


def test_contents_what_the_app_loads(apk, tiny_tflites):
    with zipfile.ZipFile(apk) as z:
        info = {i.filename: i for i in z.infolist()}
    for p in tiny_tflites.values():
        entry = info[f"assets/models/{p.name}"]
        assert entry.compress_type == zipfile.ZIP_STORED  # memory-mapped by the interpreter
    assert info["resources.arsc"].compress_type == zipfile.ZIP_STORED  # targetSdk 30+ refuses it compressed
    for abi in ("arm64-v8a", "armeabi-v7a", "x86_64"):
        assert f"lib/{abi}/libtensorflowlite_jni.so" in info and f"lib/{abi}/libtensorflowlite_gpu_jni.so" in info
    assert "assets/model_spec.json" in info and "assets/trivial.tflite" in info
    assert not [n for n in info if n.startswith("META-INF/versions/")]


def test_dex_has_no_invoke_custom_and_defines_what_it_uses(apk, tmp_path):
    with zipfile.ZipFile(apk) as z:
        dex = z.read("classes.dex")
    (tmp_path / "classes.dex").write_bytes(dex)
    listing = _run("dexdump", "-d", tmp_path / "classes.dex")
    assert "invoke-custom" not in listing
    assert "Class descriptor  : 'Ldev/edgecompress/demo/MainActivity;'" in listing
    r = check_dex(dex, framework_jars(_toolchain(DEMO_DIR / ".build")))
    assert r["classes"] > 100  # the app, the used part of kotlin-stdlib, TFLite's Java API
    dexed = read_dex(dex)["classes"]
    # GpuDelegate 2.16.1 with gpu-api 2.14.0 (2.16.1 is not published): its options class is there.
    assert "Lorg/tensorflow/lite/gpu/GpuDelegateFactory$Options;" in dexed


def test_the_debug_key_and_the_dex_are_kept_between_builds(apk, tmp_path, root):
    first = _run("apksigner", "verify", "--print-certs", apk)
    proc = run_invoke(["android-apk", "--out", str(apk.parent), "--apk", str(tmp_path / "again.apk")], cwd=root,
                      timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = _run("apksigner", "verify", "--print-certs", tmp_path / "again.apk")
    digest = re.compile(r"certificate SHA-256 digest: (\w+)")
    assert digest.search(first).group(1) == digest.search(again).group(1)
    assert DEBUG_KEYSTORE.expanduser().exists()
    # Nothing the dex is made from changed: it is reused, not compiled again, and is the same dex.
    assert "classes.dex reused" in proc.stderr and "kotlinc" not in proc.stderr, proc.stderr[-2000:]
    with zipfile.ZipFile(apk) as a, zipfile.ZipFile(tmp_path / "again.apk") as b:
        assert a.read("classes.dex") == b.read("classes.dex")


def test_the_dex_key_follows_the_sources_the_tools_and_the_sdk_levels(tmp_path):
    from edgecompress.devices.apk import _dex_key, app_info

    info = app_info()
    src = tmp_path / "app" / "Main.kt"
    src.parent.mkdir()
    src.write_text("fun main() {}")
    jar = tmp_path / "kotlin-stdlib-1.9.0.jar"
    jar.write_bytes(b"x" * 10)
    key = _dex_key(info, [src], [jar], root=tmp_path)
    assert _dex_key(info, [src], [jar], root=tmp_path) == key
    src.write_text("fun main() { println() }")
    changed = _dex_key(info, [src], [jar], root=tmp_path)
    assert changed != key
    other = tmp_path / "kotlin-stdlib-2.0.0.jar"
    other.write_bytes(b"x" * 10)
    assert _dex_key(info, [src], [other], root=tmp_path) != changed
    assert _dex_key(dataclasses.replace(info, min_sdk=info.min_sdk + 1), [src], [jar], root=tmp_path) != changed


def _dex_of(tmp_path, java_sources: dict, min_sdk: int) -> bytes:
    """Compiles Java sources and dexes them with the same dx the APK build uses."""
    src = tmp_path / "src"
    for name, text in java_sources.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    classes = tmp_path / "classes"
    _run("javac", "--release", "8", "-d", classes, *sorted(src.rglob("*.java")))
    chain = _toolchain(DEMO_DIR / ".build")
    out = tmp_path / "t.dex"
    _run("java", "-cp", ":".join(map(str, chain["dx"])), "com.android.dx.command.Main", "--dex",
         f"--min-sdk-version={min_sdk}", f"--output={out}", classes)
    return out.read_bytes()


def test_check_dex_refuses_invoke_custom(tmp_path):
    dex = _dex_of(tmp_path, {"a/L.java": "package a; public class L { public Runnable r() { return () -> {}; } }"}, 26)
    assert read_dex(dex)["invoke_custom"] == 1
    with pytest.raises(EdgeCompressError, match="invoke-custom"):
        check_dex(dex, [])


def test_check_dex_refuses_a_class_that_is_not_shipped(tmp_path):
    srcs = {"a/Uses.java": "package a; public class Uses { public Object f() { return new b.Gone(); } }",
            "b/Gone.java": "package b; public class Gone {}"}
    dex = _dex_of(tmp_path, srcs, 24)
    framework = framework_jars(_toolchain(DEMO_DIR / ".build"))
    check_dex(dex, framework)  # both classes in the dex: fine
    (tmp_path / "classes" / "b" / "Gone.class").unlink()
    (tmp_path / "src" / "b" / "Gone.java").unlink()
    (tmp_path / "t.dex").unlink()
    chain = _toolchain(DEMO_DIR / ".build")
    _run("java", "-cp", ":".join(map(str, chain["dx"])), "com.android.dx.command.Main", "--dex", "--min-sdk-version=24",
         f"--output={tmp_path / 't.dex'}", tmp_path / "classes")
    with pytest.raises(EdgeCompressError, match="Lb/Gone;"):
        check_dex((tmp_path / "t.dex").read_bytes(), framework)


def test_without_a_build_it_says_what_to_run(tmp_path, root):
    proc = run_invoke(["android-apk", "--out", str(tmp_path)], cwd=root)
    assert proc.returncode == 2 and "Run `invoke build-edge` first" in proc.stderr
