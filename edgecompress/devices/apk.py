"""Builds an installable debug APK of `android_demo/` without Gradle.

The Gradle project stays the Android Studio path; it needs the Android
Gradle Plugin and AndroidX from Google's Maven repository. This builds the
same app from Debian's and Maven Central's pieces, step by step:

1. `aapt package` (Debian's android-sdk-build-tools 29) links the manifest and
   `res/` against Debian's `framework-res.apk` into `resources.arsc`. aapt v1
   wants the package name, version and SDK levels in the manifest itself:
   they are read from `app/build.gradle.kts` (one source of truth) and
   written into a copy of the manifest.
2. kotlinc (kotlin-compiler-embeddable from Maven Central) compiles the app
   with `-Xlambdas=class -Xsam-conversions=class` for Java 8 bytecode.
3. ProGuard (Maven Central) shrinks kotlin-stdlib to what the app uses and
   backports the invokedynamic lambdas it is compiled with (`-target 1.7`):
   AOSP's dx does no desugaring, and a minSdk 24 dex may not hold
   `invoke-custom`.
4. dx (AOSP's, repackaged on Maven Central as
   com.jakewharton.android.repackaged:dalvik-dx) writes `classes.dex` from
   the app, the shrunk stdlib and TFLite's Java classes
   (org.tensorflow:tensorflow-lite 2.16.1, -api, -gpu; -gpu-api 2.14.0,
   since 2.16.1 is not published).
5. The APK: manifest and `resources.arsc` (stored), `classes.dex`, TFLite's
   native libraries for arm64-v8a, armeabi-v7a and x86_64 (`lib/<abi>/`), and
   the build's models and samples as assets, `.tflite` stored uncompressed so
   the app can memory-map them; `zipalign -p 4`; `apksigner sign` with the
   standard Android debug key, made once in `~/.android/debug.keystore` and
   kept (the key Android Studio uses too, so switching between the two builds
   needs no uninstall).
   Steps 2-4 make the same `classes.dex` from the same inputs, so it is kept
   in `<work>/dex/`, named by a hash of the app's Kotlin sources, the jars and
   tools, the package and SDK levels (`_dex_key`): a rebuild with new models
   only re-zips and re-signs.
6. Checks: `apksigner verify`, `zipalign -c -p 4`, `aapt dump badging`, and
   the dex itself (`check_dex`): no `invoke-custom`, and every class it
   references is defined in it or on Android 7.0 (API 24, the minSdk).

Example:

>>> apk = build_apk("build/edge")
>>> apk.path
PosixPath('build/edge/edgecompress-demo-debug.apk')
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from edgecompress.devices.android import DEMO_DIR, maven_jars, kotlinc, copy_assets
from edgecompress.devices.dex import check_dex, framework_jars, java_home, read_dex
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

APK_POM = DEMO_DIR / "apk" / "pom.xml"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64")
DEBUG_KEYSTORE = Path("~/.android/debug.keystore")
# The standard debug key's fixed parameters (what Android Studio makes).
DEBUG_KEY = {"alias": "androiddebugkey", "storepass": "android", "keypass": "android",
             "dname": "CN=Android Debug,O=Android,C=US"}
TOOLS = {"aapt": "android-sdk-build-tools", "zipalign": "android-sdk-build-tools",
         "apksigner": "apksigner", "dexdump": "dexdump", "java": "default-jdk-headless", "keytool": "default-jdk-headless"}


@dataclasses.dataclass(frozen=True)
class AppInfo:
    """What `app/build.gradle.kts` says about the app."""

    package: str
    min_sdk: int
    target_sdk: int
    version_code: int
    version_name: str


@dataclasses.dataclass(frozen=True)
class Apk:
    path: Path
    info: AppInfo
    size_bytes: int
    seconds: float
    dex_classes: int
    models: tuple[str, ...]
    abis: tuple[str, ...]


def app_info(gradle_file=DEMO_DIR / "app" / "build.gradle.kts") -> AppInfo:
    text = Path(gradle_file).read_text()

    def find(key, pattern=r'"?([^"\s]+)"?'):
        m = re.search(rf"\b{key}\s*=\s*{pattern}", text)
        if not m:
            raise EdgeCompressError(f"{gradle_file} has no `{key} = ...`; the APK build reads it from there.")
        return m.group(1)

    return AppInfo(find("applicationId"), int(find("minSdk")), int(find("targetSdk")), int(find("versionCode")),
                   find("versionName"))


def _need_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not FRAMEWORK_RES.exists():
        missing.append("android-framework-res")
    if missing:
        raise EdgeCompressError(f"android-apk needs the Debian packages {', '.join(missing)}: "
                                f"`apt-get install {' '.join(missing)}`.")


def _run(cmd, what) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EdgeCompressError(f"{what} failed (exit {proc.returncode}):\n" + (proc.stderr or proc.stdout)[-3000:])
    return proc.stdout


def _toolchain(work: Path) -> dict:
    """dx, ProGuard, gpu-api and android-all 7.0 from Maven Central (once)."""
    deps = work / "apk-deps"
    stamp = deps / ".ready"
    pom = APK_POM.read_text()
    if not stamp.exists() or stamp.read_text() != pom:
        if shutil.which("mvn") is None:
            raise EdgeCompressError("Maven (`mvn`) is needed to fetch dx and ProGuard from Maven Central; install it.")
        logger.info("Fetching dx, ProGuard, tensorflow-lite-gpu-api and android-all 7.0 from Maven Central (once)")
        shutil.rmtree(deps, ignore_errors=True)
        _run(["mvn", "-q", "-B", "-f", APK_POM, "dependency:copy-dependencies", f"-DoutputDirectory={deps}"],
             "Maven fetching the APK toolchain")
        for aar in deps.glob("*.aar"):
            with zipfile.ZipFile(aar) as z:
                (deps / f"{aar.stem}-classes.jar").write_bytes(z.read("classes.jar"))
        stamp.write_text(pom)
    jars = sorted(deps.glob("*.jar"))

    def pick(prefix):
        return [j for j in jars if j.name.startswith(prefix)]

    return {"dx": pick("dalvik-dx"), "proguard": [j for j in jars if not j.name.startswith(
                ("dalvik-dx", "android-all", "tensorflow-lite"))],
            "gpu_api": pick("tensorflow-lite-gpu-api"), "android_min": [str(j) for j in pick("android-all")]}


def _manifest(info: AppInfo, dest: Path) -> Path:
    src = (DEMO_DIR / "app" / "src" / "main" / "AndroidManifest.xml").read_text()
    head = '<manifest xmlns:android="http://schemas.android.com/apk/res/android"'
    if head not in src:
        raise EdgeCompressError(f"Unexpected manifest start in {DEMO_DIR / 'app/src/main/AndroidManifest.xml'}.")
    src = src.replace(head, f'{head}\n    package="{info.package}" android:versionCode="{info.version_code}" '
                            f'android:versionName="{info.version_name}">\n    <uses-sdk android:minSdkVersion='
                            f'"{info.min_sdk}" android:targetSdkVersion="{info.target_sdk}" /', 1)
    dest.write_text(src)
    return dest


def _keystore() -> Path:
    ks = DEBUG_KEYSTORE.expanduser()
    if not ks.exists():
        ks.parent.mkdir(parents=True, exist_ok=True)
        _run(["keytool", "-genkeypair", "-keystore", ks, "-storepass", DEBUG_KEY["storepass"], "-alias",
              DEBUG_KEY["alias"], "-keypass", DEBUG_KEY["keypass"], "-keyalg", "RSA", "-keysize", "2048",
              "-validity", "10000", "-dname", DEBUG_KEY["dname"]], "keytool making the debug key")
        logger.info("Made the Android debug key %s (kept: later builds install over this one)", ks)
    return ks


def build_apk(build_dir="build/edge", out=None, *, calibration_dir="calibration_data",
              work=DEMO_DIR / ".build") -> Apk:
    """Builds, signs and checks the demo app's debug APK with the build's models; returns it.

    Args:
        build_dir: Build folder whose `.tflite` files and `model_spec.json`
            become the app's assets. Defaults to "build/edge".
        out: APK file to write. Defaults to
            `<build_dir>/edgecompress-demo-debug.apk`.
        calibration_dir: Where the sample images come from. Defaults to
            "calibration_data".
        work: Folder for downloaded jars and intermediate files. Defaults to
            `android_demo/.build`.
    """
    t0 = time.monotonic()
    _need_tools()
    info = app_info()
    out = Path(out) if out else Path(build_dir) / "edgecompress-demo-debug.apk"
    work = Path(work)
    assets = copy_assets(build_dir, calibration_dir=calibration_dir)
    jars = maven_jars(work)
    chain = _toolchain(work)
    app = DEMO_DIR / "app" / "src" / "main"
    with tempfile.TemporaryDirectory(prefix="edgecompress-apk-") as tmp:
        tmp = Path(tmp)
        logger.info("[1/6] aapt: manifest and resources")
        base = tmp / "base.apk"
        _run(["aapt", "package", "-f", "-M", _manifest(info, tmp / "AndroidManifest.xml"), "-S", app / "res",
              "-I", FRAMEWORK_RES, "-F", base], "aapt package")
        tflite = jars["tflite"] + [str(j) for j in chain["gpu_api"] if j.name.endswith("-classes.jar")]
        sources = sorted(app.rglob("*.kt"))
        tools = [*jars["compiler"], *jars["stdlib"], *tflite, *chain["android_min"], *chain["proguard"], *chain["dx"]]
        kept = work / "dex" / f"{_dex_key(info, sources, tools)}.dex"
        dex = tmp / "classes.dex"
        if kept.exists():
            logger.info("[2-4/6] classes.dex reused: the app's sources, jars and SDK levels are unchanged (%s)", kept)
            shutil.copyfile(kept, dex)
        else:
            _compile_dex(info, sources, jars, chain, tflite, tmp, dex)
            atomic_write_bytes(kept, dex.read_bytes())  # whole or absent: a killed build leaves no half dex
        logger.info("[5/6] APK: dex, native libraries for %s, %d asset(s)", ", ".join(ABIS),
                    sum(1 for p in assets.rglob("*") if p.is_file()))
        unaligned = tmp / "unaligned.apk"
        libs = _native_libs(work / "deps")
        with zipfile.ZipFile(base) as src, zipfile.ZipFile(unaligned, "w") as z:
            for item in src.infolist():  # manifest deflated, resources.arsc stored (targetSdk 30+ requires it)
                z.writestr(item, src.read(item.filename))
            z.write(dex, "classes.dex", compress_type=zipfile.ZIP_DEFLATED)
            for name, data in libs:
                z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
            for f in sorted(p for p in assets.rglob("*") if p.is_file()):
                kind = zipfile.ZIP_STORED if f.suffix == ".tflite" else zipfile.ZIP_DEFLATED
                z.write(f, f"assets/{f.relative_to(assets).as_posix()}", compress_type=kind)
        aligned = tmp / "aligned.apk"
        _run(["zipalign", "-f", "-p", "4", unaligned, aligned], "zipalign")
        logger.info("[6/6] apksigner: debug key, v2 and v3 signatures (minSdk 24 needs no v1)")
        ks = _keystore()
        out.parent.mkdir(parents=True, exist_ok=True)
        signed = tmp / "signed.apk"
        _run(["apksigner", "sign", "--ks", ks, "--ks-key-alias", DEBUG_KEY["alias"], "--ks-pass",
              f"pass:{DEBUG_KEY['storepass']}", "--key-pass", f"pass:{DEBUG_KEY['keypass']}",
              "--min-sdk-version", str(info.min_sdk), "--out", signed, aligned], "apksigner sign")
        dex_report = check_dex(dex.read_bytes(), framework_jars(chain))
        activity = "L" + (got := verify_apk(signed, info))["launchable"].replace(".", "/") + ";"
        if activity not in read_dex(dex.read_bytes())["classes"]:
            raise EdgeCompressError(f"The launchable activity {got['launchable']} is not defined in classes.dex.")
        shutil.move(signed, out)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
    apk = Apk(out, info, out.stat().st_size, round(time.monotonic() - t0, 1), dex_report["classes"],
              tuple(sorted(Path(n).name for n in names if n.startswith("assets/models/"))),
              tuple(sorted({n.split("/")[1] for n in names if n.startswith("lib/")})))
    logger.info("Built %s (%d bytes) in %.0f s", out, apk.size_bytes, apk.seconds)
    return apk


DEX_VERSION = 1  # bump when the steps below change what they make from the same inputs


def _dex_key(info: AppInfo, sources, jars, root: Path = DEMO_DIR) -> str:
    """What `classes.dex` is made from: the app's Kotlin sources, the compiler and the jars it is compiled,
    shrunk and dexed with (by name and size: Maven's versions are in their names), its package and SDK levels."""
    h = hashlib.sha256(f"{DEX_VERSION}|{info.package}|{info.min_sdk}|{info.target_sdk}".encode())
    for f in sources:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for j in sorted(Path(j) for j in jars):
        h.update(f"{j.name}:{j.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


def _compile_dex(info: AppInfo, sources, jars, chain, tflite, tmp: Path, dex: Path) -> None:
    """Steps 2-4: kotlinc, ProGuard, dx, from the app's sources to `dex`."""
    logger.info("[2/6] kotlinc: app sources (lambdas as classes)")
    classes = tmp / "classes"
    # Against Android 7.0's framework (the minSdk): a call that phone lacks fails here, not on launch.
    kotlinc(jars, chain["android_min"] + jars["stdlib"] + tflite, sources, classes,
             jvm_target="1.8", extra=["-Xlambdas=class", "-Xsam-conversions=class"])
    logger.info("[3/6] ProGuard: shrink kotlin-stdlib, backport its invokedynamic lambdas")
    shrunk = tmp / "app.jar"
    jdk = java_home()
    pro = tmp / "proguard.pro"
    pro.write_text("\n".join(
        [f"-injars {classes}"]
        + [f"-injars {j}(!META-INF/versions/**,!META-INF/*.kotlin_module)" for j in jars["stdlib"]]
        + [f"-outjars {shrunk}", f"-libraryjars {jdk / 'jmods' / 'java.base.jmod'}(!**.jar;!module-info.class)"]
        + [f"-libraryjars {j}" for j in chain["android_min"] + tflite + [p for p in jars["compiler"] if "annotations" in p]]
        + ["-dontobfuscate", "-dontoptimize", "-dontpreverify", "-target 1.7", "-dontnote **",
           f"-keep class {info.package}.** {{ *; }}", ""]))
    _run(["java", "-cp", ":".join(map(str, chain["proguard"])), "proguard.ProGuard", f"@{pro}"], "ProGuard")
    logger.info("[4/6] dx: classes.dex")
    _run(["java", "-cp", ":".join(map(str, chain["dx"])), "com.android.dx.command.Main", "--dex",
          f"--min-sdk-version={info.min_sdk}", f"--output={dex}", shrunk, *tflite], "dx")


def _native_libs(deps: Path) -> list[tuple[str, bytes]]:
    out = []
    for aar in sorted(deps.glob("tensorflow-lite*.aar")):
        with zipfile.ZipFile(aar) as z:
            for name in z.namelist():
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == "jni" and parts[1] in ABIS and name.endswith(".so"):
                    out.append((f"lib/{parts[1]}/{parts[2]}", z.read(name)))
    if not {n.split("/")[1] for n, _ in out} >= set(ABIS):
        raise EdgeCompressError(f"TFLite's AARs in {deps} lack native libraries for some of {ABIS}.")
    return out


def verify_apk(path, info: AppInfo | None = None) -> dict:
    """`apksigner verify`, `zipalign -c -p 4` and `aapt dump badging`; returns what badging says."""
    info = info or app_info()
    _run(["apksigner", "verify", "--min-sdk-version", str(info.min_sdk), path], f"apksigner verify {path}")
    _run(["zipalign", "-c", "-p", "4", path], f"zipalign -c -p 4 {path}")
    badging = _run(["aapt", "dump", "badging", path], f"aapt dump badging {path}")
    got = {
        "package": re.search(r"package: name='([^']+)'", badging).group(1),
        "min_sdk": int(re.search(r"sdkVersion:'(\d+)'", badging).group(1)),
        "launchable": (re.search(r"launchable-activity: name='([^']+)'", badging) or [None, None])[1],
        "native_code": re.findall(r"'([^']+)'", (re.search(r"native-code:(.*)", badging) or [None, ""])[1]),
    }
    if got["package"] != info.package or got["min_sdk"] != info.min_sdk or not got["launchable"]:
        raise EdgeCompressError(f"{path}: aapt dump badging says {got}; expected package {info.package}, "
                                f"minSdk {info.min_sdk} and a launchable activity.")
    return got


# ---- the dex file -----------------------------------------------------------
