"""The Android demo app: its assets, a compile check here, and the adb benchmark.

- `copy_assets`: the build's `.tflite` files, `model_spec.json` (labels and
  preprocessing), the trivial model for the harness overhead, and a few sample
  images into `android_demo/app/src/main/assets/`.
- `check_app`: compiles every Kotlin source of the app against the Android
  framework jar (Robolectric's `android-all`) and the TFLite Java API, then
  compiles and runs its JVM unit tests; everything comes from Maven Central
  (`android_demo/verify/pom.xml`), since Google's Maven is not needed for it.
- `bench_android`: installs the APK, pushes the models, starts the headless
  benchmark per model over adb, waits for its log marker, pulls the JSON and
  merges it into the report. Every argument that reaches a shell is quoted,
  on this machine and on the device.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

from edgecompress.lite.latency import DEFAULT_RUNS, DEFAULT_WARMUP
from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

PACKAGE = "dev.edgecompress.demo"
ACTIVITY = f"{PACKAGE}/.MainActivity"
DEMO_DIR = Path(__file__).resolve().parents[2] / "android_demo"
MARKER_DONE = "EDGECOMPRESS_BENCH_DONE"
MARKER_FAILED = "EDGECOMPRESS_BENCH_FAILED"
DEVICE_FILES = f"/sdcard/Android/data/{PACKAGE}/files"
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")


def copy_assets(build_dir="build/edge", app_dir=DEMO_DIR / "app", calibration_dir="calibration_data",
                samples_per_class: int = 1) -> Path:
    """Copies what the app shows into its assets folder; returns that folder."""
    from edgecompress.lite.latency import TRIVIAL_MODEL

    build_dir, assets = Path(build_dir), Path(app_dir) / "src" / "main" / "assets"
    models = sorted(build_dir.glob("*.tflite"))
    spec = build_dir / "model_spec.json"
    if not models or not spec.exists():
        raise EdgeCompressError(f"No .tflite files and model_spec.json in {build_dir}. Run `invoke build-edge` first.")
    if assets.exists():
        shutil.rmtree(assets)
    (assets / "models").mkdir(parents=True)
    (assets / "samples").mkdir()
    for m in models:
        shutil.copy2(m, assets / "models" / m.name)
    shutil.copy2(spec, assets / "model_spec.json")
    shutil.copy2(TRIVIAL_MODEL, assets / "trivial.tflite")
    cal = Path(calibration_dir)
    for class_dir in sorted(p for p in cal.iterdir() if p.is_dir()) if cal.is_dir() else []:
        for img in sorted(class_dir.glob("*.png"))[:samples_per_class]:
            shutil.copy2(img, assets / "samples" / f"{class_dir.name}_{img.name}")
    logger.info("Copied %d model(s), model_spec.json and %d sample(s) to %s", len(models),
                len(list((assets / "samples").iterdir())), assets)
    return assets


# ---- compile check ----------------------------------------------------------

def maven_jars(work: Path) -> dict:
    """Fetches the verification dependencies with Maven; returns jar paths by role."""
    deps = work / "deps"
    if not (deps / ".ready").exists():
        if shutil.which("mvn") is None:
            raise EdgeCompressError("Maven (`mvn`) is needed to fetch the Kotlin compiler and android-all; install it.")
        logger.info("Fetching the Kotlin compiler, android-all and TFLite from Maven Central (once)")
        proc = subprocess.run(["mvn", "-q", "-B", "-f", str(DEMO_DIR / "verify" / "pom.xml"), "dependency:copy-dependencies",
                               f"-DoutputDirectory={deps}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgeCompressError("Maven could not fetch the verification dependencies:\n" + proc.stdout[-2000:] + proc.stderr[-2000:])
        for aar in deps.glob("*.aar"):
            with zipfile.ZipFile(aar) as z:
                (deps / f"{aar.stem}-classes.jar").write_bytes(z.read("classes.jar"))
        (deps / ".ready").write_text("ok\n")
    jars = sorted(deps.glob("*.jar"))

    def pick(prefix):
        return [str(j) for j in jars if j.name.startswith(prefix)]

    return {
        "compiler": pick("kotlin-compiler-embeddable") + pick("kotlin-stdlib") + pick("kotlin-script-runtime")
        + pick("kotlin-reflect") + pick("kotlin-daemon-embeddable") + pick("kotlinx-coroutines-core-jvm") + pick("annotations"),
        "stdlib": pick("kotlin-stdlib"),
        "android": pick("android-all"),
        "tflite": pick("tensorflow-lite"),
        "junit": pick("junit") + pick("hamcrest-core"),
    }


def kotlinc(jars: dict, classpath: list, sources: list, out: Path, jvm_target: str = "17", extra=()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["java", "-Xmx1g", "-cp", ":".join(jars["compiler"]), "org.jetbrains.kotlin.cli.jvm.K2JVMCompiler",
           "-no-stdlib", "-no-reflect", "-jvm-target", jvm_target, "-Werror", *extra,
           "-classpath", ":".join(map(str, classpath)), "-d", str(out), *map(str, sources)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EdgeCompressError("Kotlin compilation failed:\n" + (proc.stderr or proc.stdout)[-4000:])


def check_app(app_dir=DEMO_DIR / "app", work=DEMO_DIR / ".build") -> dict:
    """Compiles every app source and runs the JVM unit tests; returns counts.

    Raises:
        EdgeCompressError: on any compile error or failing test.
    """
    app_dir, work = Path(app_dir), Path(work)
    jars = maven_jars(work)
    main_src = sorted((app_dir / "src" / "main").rglob("*.kt")) + sorted((app_dir / "src" / "main").rglob("*.java"))
    test_src = sorted((app_dir / "src" / "test").rglob("*.kt"))
    if not main_src:
        raise EdgeCompressError(f"No sources under {app_dir / 'src' / 'main'}.")
    shutil.rmtree(work / "classes", ignore_errors=True)
    main_out, test_out = work / "classes" / "main", work / "classes" / "test"
    logger.info("Compiling %d app source file(s) against android-all and TFLite", len(main_src))
    kotlinc(jars, jars["stdlib"] + jars["android"] + jars["tflite"], main_src, main_out)
    logger.info("Compiling %d test file(s)", len(test_src))
    # android-all is the real framework code, so org.json works in these tests
    # (Gradle's unit tests use org.json:json instead of android.jar's stub).
    test_cp = [str(main_out)] + jars["stdlib"] + jars["junit"] + jars["android"]
    kotlinc(jars, test_cp, test_src, test_out)
    classes = sorted(str(p.relative_to(test_out))[:-6].replace("/", ".") for p in test_out.rglob("*Test.class"))
    vectors = DEMO_DIR.parent / "tests" / "vectors" / "numerics.json"
    proc = subprocess.run(["java", f"-Dedgecompress.vectors={vectors}", "-cp", ":".join([str(test_out)] + test_cp),
                           "org.junit.runner.JUnitCore", *classes], capture_output=True, text=True)
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith(("OK (", "Tests run:"))]
    if proc.returncode != 0:
        raise EdgeCompressError("App JVM tests failed:\n" + proc.stdout[-4000:])
    return {"sources": len(main_src), "test_classes": len(classes), "junit": summary[-1] if summary else ""}


# ---- adb benchmark ----------------------------------------------------------

def _adb(serial):
    return ["adb"] + (["-s", serial] if serial else [])


def _local(args) -> str:
    return " ".join(shlex.quote(str(a)) for a in args)


def _shell(serial, device_args) -> str:
    """`adb shell` hands its words to the device's shell: quote for both shells."""
    return _local(_adb(serial) + ["shell", _local(device_args)])


def bench_android(c, models, *, apk=None, serial=None, threads=1, runs=DEFAULT_RUNS, warmup=DEFAULT_WARMUP, delegate="xnnpack",
                  out_dir="build/edge", timeout=300.0, poll=1.0) -> dict:
    """Runs the headless benchmark of the app on a device for each model.

    `c` is an Invoke context (a `MockContext` in tests). Returns the results
    in the shape `python -m edgecompress.lite.latency` writes, per model.
    """
    if delegate not in DELEGATES:
        raise EdgeCompressError(f"Received an invalid value for `delegate`, expected one of {list(DELEGATES)}. "
                                f"Received: delegate={delegate!r}")
    models = [Path(m) for m in models]
    if not models:
        raise EdgeCompressError("No models to benchmark.")
    if apk is None:
        gradlew = DEMO_DIR / "gradlew"
        if not gradlew.exists():
            raise EdgeCompressError(
                "No --apk given and no Gradle wrapper in android_demo/ to build one. Build the APK in Android Studio "
                "(or `gradle assembleDebug` with the Android SDK) and pass --apk app-debug.apk.")
        c.run(f"cd {shlex.quote(str(DEMO_DIR))} && ./gradlew assembleDebug")
        apk = DEMO_DIR / "app" / "build" / "outputs" / "apk" / "debug" / "app-debug.apk"
    c.run(_local(_adb(serial) + ["install", "-r", "-t", str(apk)]))
    c.run(_shell(serial, ["mkdir", "-p", f"{DEVICE_FILES}/models", f"{DEVICE_FILES}/bench"]))
    results, errors, envelope = [], [], None
    for m in models:
        c.run(_local(_adb(serial) + ["push", str(m), f"{DEVICE_FILES}/models/{m.name}"]))
        c.run(_shell(serial, ["rm", "-f", f"{DEVICE_FILES}/bench/{m.name}.json"]))
        c.run(_local(_adb(serial) + ["logcat", "-c"]))
        c.run(_shell(serial, ["am", "start", "-W", "-n", ACTIVITY, "--es", "model", m.name, "--ei", "threads",
                              str(threads), "--ei", "runs", str(runs), "--ei", "warmup", str(warmup),
                              "--es", "delegate", delegate]))
        deadline = time.monotonic() + timeout
        while True:
            log = c.run(_local(_adb(serial) + ["logcat", "-d", "-s", "EdgeCompressBench:*"]), hide=True).stdout
            if f"{MARKER_DONE} model={m.name} " in log or f"{MARKER_FAILED} model={m.name} " in log:
                break
            if time.monotonic() > deadline:
                raise EdgeCompressError(f"{m.name}: no {MARKER_DONE} marker in the log within {timeout:g} s.")
            time.sleep(poll)
        local = Path(out_dir) / "android" / f"{m.name}.json"
        local.parent.mkdir(parents=True, exist_ok=True)
        c.run(_local(_adb(serial) + ["pull", f"{DEVICE_FILES}/bench/{m.name}.json", str(local)]))
        try:
            envelope = json.loads(local.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgeCompressError(f"{m.name}: could not read the pulled result {local}: {e}") from None
        results += envelope.get("results", [])
        errors += envelope.get("errors", [])
    return {"device": envelope["device"], "harness_overhead_us": envelope.get("harness_overhead_us"),
            "results": results, "errors": errors}
