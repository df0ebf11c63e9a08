"""A fake `adb` with a fake phone behind it, for driving `invoke bench-android` end to end on this host.

The phone is a folder (`FAKE_ADB_ROOT`): `push` and `pull` copy into and out
of it, `shell` hands its words to a device shell exactly as adb does (joined
by spaces, split again by the device's shell), `install` records the APK, and
`am start` of the demo app's activity does what the app does: it benchmarks
the pushed model (here with the TF-free harness, `python -m
edgecompress.lite.latency`), writes `bench/<model>.json` and logs the done
marker to logcat. Every call is appended to `calls.log` in the root.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(os.environ["FAKE_ADB_ROOT"])
LOGCAT = ROOT / "logcat.txt"
PACKAGE = "dev.edgecompress.demo"


def on_device(path: str) -> Path:
    return ROOT / "device" / path.lstrip("/")


def am_start(words):
    extras, component = {}, None  # -W -n COMPONENT --es model NAME --ei runs 50 ...
    for i, w in enumerate(words):
        if w in ("--es", "--ei"):
            extras[words[i + 1]] = words[i + 2]
        elif w == "-n":
            component = words[i + 1]
    if component != f"{PACKAGE}/.MainActivity":
        sys.exit(f"fake adb: no activity {component!r} installed")
    files = on_device(f"/sdcard/Android/data/{PACKAGE}/files")
    name = extras["model"]
    out = files / "bench" / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "edgecompress.lite.latency", str(files / "models" / name),
                           "--runs", extras.get("runs", "200"), "--warmup", extras.get("warmup", "20"),
                           "--threads", extras.get("threads", "1"), "--json", str(out)],
                          capture_output=True, text=True, cwd=os.environ.get("FAKE_ADB_CWD"))
    if out.exists():
        envelope = json.loads(out.read_text())
        envelope["device"]["board"] = "fake-adb"
        out.write_text(json.dumps(envelope))
    marker = "EDGECOMPRESS_BENCH_DONE" if proc.returncode in (0, 4) else "EDGECOMPRESS_BENCH_FAILED"
    with LOGCAT.open("a") as f:
        f.write(f"I EdgeCompressBench: {marker} model={name} path={out}\n")


def shell(words):
    if words[:2] == ["mkdir", "-p"]:
        for p in words[2:]:
            on_device(p).mkdir(parents=True, exist_ok=True)
    elif words[:2] == ["rm", "-f"]:
        for p in words[2:]:
            on_device(p).unlink(missing_ok=True)
    elif words[:2] == ["am", "start"]:
        am_start(words[2:])
    else:
        sys.exit(f"fake adb: unknown device command {words}")


def main(argv):
    ROOT.mkdir(parents=True, exist_ok=True)
    with (ROOT / "calls.log").open("a") as f:
        f.write(json.dumps(argv) + "\n")
    if argv[:1] == ["-s"]:
        argv = argv[2:]
    cmd, rest = argv[0], argv[1:]
    if cmd == "install":
        apk = Path(rest[-1])
        if not apk.is_file():
            sys.exit(f"adb: failed to stat {apk}: No such file or directory")
        (ROOT / "installed").write_text(str(apk))
    elif cmd == "push":
        dst = on_device(rest[1])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rest[0], dst)
    elif cmd == "pull":
        shutil.copy2(on_device(rest[0]), rest[1])
    elif cmd == "logcat":
        if rest == ["-c"]:
            LOGCAT.write_text("")
        else:
            print(LOGCAT.read_text() if LOGCAT.exists() else "", end="")
    elif cmd == "shell":
        shell(shlex.split(" ".join(rest)))  # adb joins its words; the device's shell splits them again
    else:
        sys.exit(f"fake adb: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
