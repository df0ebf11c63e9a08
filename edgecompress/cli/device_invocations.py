"""The device tasks: benchmarks on boards over SSH, the emulated Pi, the Android app and its APK. Thin: each calls
the package (`cli.commands`, `devices`); `cli.invocations` adds them to the program's tasks.
"""

from edgecompress.cli.glue import setup_logging, task, user_errors
from edgecompress.lite.latency import DEFAULT_RUNS



@task(iterable=["host"], name="bench-device", optional=["accuracy"],
      help={"host": "user@host[:port] of a device; repeat for several (run in parallel).",
            "models": "Comma-separated .tflite files (default: every .tflite in --out).",
            "out": "Build folder whose report gets the results (default: build/edge).",
            "python": "The device's Python, e.g. ~/venv/bin/python; comma-separate one per runtime (default: python3).",
            "runs": "Timed invokes (default: 200).", "threads": "Threads (default: 1).",
            "known_hosts": "known_hosts file for host key checks (default: ~/.ssh/known_hosts).",
            "key": "SSH private key file (default: agent and default keys).",
            "timeout": "Connection timeout in seconds (default: 15).",
            "accuracy": "Also run the test images on the device: --accuracy (the whole test split) or --accuracy=N.",
            "data": "Dataset for --accuracy (default: the build's own --data, from its report).",
            "profile": "Also time each op alone on the device and read its peak memory (lite/profile.py).",
            "tflm": "Also load each file in TensorFlow Lite Micro on the device (it needs tflite-micro): its "
                    "arena, the op it refuses, and with --accuracy its top-1 and agreement with LiteRT."})
def bench_device(c, host, models=None, out="build/edge", python="python3", runs=DEFAULT_RUNS, threads=1, known_hosts=None,
                 key=None, timeout=15, accuracy=None, data=None, profile=False, tflm=False):
    """Benchmark the build's .tflite files on devices over SSH (and --accuracy) and add them to the report."""
    setup_logging()
    with user_errors():
        from edgecompress.devices.ssh import SSHOptions
        from edgecompress.cli.commands import bench_device as run

        run(host, models=models.split(",") if models else None, out=out, runs=int(runs), threads=int(threads),
            options=SSHOptions(known_hosts=known_hosts, key=key, timeout=float(timeout), python=python),
            accuracy=accuracy, data=data, profile=profile, tflm=tflm)


@task(name="device-sim",
      help={"release": "Debian userland: bookworm (Raspberry Pi OS Bookworm 64-bit) or trixie (default: bookworm).",
            "board": "Emulated CPU: pi4 (Cortex-A72) or pi5 (Cortex-A76) (default: pi4).",
            "port": "Loopback SSH port (default: 2222).", "stop": "Stop it instead."})
def device_sim(c, release="bookworm", board="pi4", port=2222, stop=False):
    """Start an emulated Raspberry Pi OS (arm64, qemu) on loopback SSH; prints the bench-device arguments."""
    setup_logging()
    with user_errors():
        from edgecompress.devices import emulated_pi

        config = emulated_pi.SimConfig(release=release, board=board, port=int(port))
        if stop:
            print("Stopped." if emulated_pi.stop(config) else "It was not running.")
            return
        started = emulated_pi.start(config)
    print(f"Emulated {board} ({config.cpu}), Debian {release} arm64, built in {started.build_seconds:.0f} s "
          f"(once), started in {started.start_seconds:.2f} s. Latency measured on it is emulated; accuracy is real.")
    print(" ".join(started.bench_args()))


@task(name="android-assets", help={"out": "Build folder with the .tflite files (default: build/edge).",
                                   "calibration": "Where sample images come from (default: calibration_data)."})
def android_assets(c, out="build/edge", calibration="calibration_data"):
    """Copy the built models, labels, preprocessing and sample images into the Android app."""
    setup_logging()
    with user_errors():
        from edgecompress.devices.android import copy_assets

        print(f"Assets in {copy_assets(out, calibration_dir=calibration)}")


@task(name="android-check")
def android_check(c):
    """Compile every Android app source against android-all + TFLite and run its JVM tests."""
    setup_logging()
    with user_errors():
        from edgecompress.devices.android import check_app

        r = check_app()
    print(f"Compiled {r['sources']} source file(s); JVM tests: {r['junit']}")


@task(name="android-apk",
      help={"out": "Build folder whose .tflite files go into the app (default: build/edge).",
            "apk": "APK file to write (default: OUT/edgecompress-demo-debug.apk).",
            "calibration": "Where sample images come from (default: calibration_data)."})
def android_apk(c, out="build/edge", apk=None, calibration="calibration_data"):
    """Build the demo app's debug APK here, without Gradle (Debian build-tools + Maven Central), and check it."""
    setup_logging()
    with user_errors():
        from edgecompress.devices.apk import build_apk

        built = build_apk(out, apk, calibration_dir=calibration)
    print(f"{built.path}: {built.size_bytes / 2**20:.1f} MiB, {len(built.models)} model(s), ABIs "
          f"{', '.join(built.abis)}, {built.dex_classes} dex classes; signed with the debug key, verified. "
          f"Install: adb install -r {built.path}")


@task(name="bench-android",
      help={"apk": "The app's debug APK (default: build it with android_demo/gradlew assembleDebug).",
            "models": "Comma-separated .tflite files (default: every .tflite in --out).",
            "out": "Build folder whose report gets the results (default: build/edge).",
            "serial": "adb device serial (default: the only device).", "threads": "Threads (default: 1).",
            "runs": "Timed invokes (default: 200).", "delegate": "cpu, xnnpack, gpu or nnapi (default: xnnpack).",
            "timeout": "Seconds to wait for each model (default: 300)."})
def bench_android(c, apk=None, models=None, out="build/edge", serial=None, threads=1, runs=DEFAULT_RUNS, delegate="xnnpack",
                  timeout=300):
    """Benchmark the build's .tflite files on an Android phone over adb and add them to the report."""
    setup_logging()
    with user_errors():
        from edgecompress.cli.commands import bench_android_task

        bench_android_task(c, apk=apk, models=models.split(",") if models else None, out=out, serial=serial,
                           threads=int(threads), runs=int(runs), delegate=delegate, timeout=float(timeout))


DEVICE_TASKS = (bench_device, device_sim, android_assets, android_check, android_apk, bench_android)
