"""An emulated Raspberry Pi OS on this machine, reachable over SSH on loopback.

What it is: a Debian arm64 root made with `debootstrap` (Debian 12
"bookworm" is the userland of Raspberry Pi OS Bookworm 64-bit, Python 3.11;
Debian 13 "trixie", Python 3.13, is today's Raspberry Pi OS), whose binaries
run under `qemu-user-static` with the CPU pinned to a Pi's
(`QEMU_CPU=cortex-a72` for a Pi 4, `cortex-a76` for a Pi 5), so XNNPACK
picks the kernels a Pi has. The root holds one venv per TFLite runtime:
`/opt/ai-edge-litert` (numpy 2) and, where PyPI has an aarch64 wheel for the
release's Python, `/opt/tflite-runtime` (2.14, numpy<2).

How it is reached: this machine's OpenSSH server on 127.0.0.1 with
`ChrootDirectory` into the root and `SetEnv QEMU_CPU=...`, so every command
of a session, and SFTP, happen inside the arm64 userland. Its own host key,
client key and known_hosts live beside the root, under
`~/.cache/edgecompress/device-sim/` (or `$EDGECOMPRESS_CACHE/device-sim`).

Needs root (chroot, binfmt_misc, mounting /proc) and the Debian packages
`debootstrap`, `qemu-user-static` and `openssh-server`.

Emulated latency is not a measurement of any CPU: `bench` marks results from
here as emulated and `select` refuses to gate on them. Emulated accuracy is
real: it is what the aarch64 kernels compute.

Example:

>>> sim = start(SimConfig(release="bookworm", board="pi4", port=2222))
>>> sim.bench_args()
['--host', 'root@127.0.0.1:2222', '--known-hosts', ..., '--key', ..., '--python', '/opt/ai-edge-litert/bin/python,...']
>>> stop(SimConfig(release="bookworm", board="pi4", port=2222))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

MIRROR = "http://deb.debian.org/debian"
# Python of each release, and the runtimes PyPI has aarch64 wheels for on it
# (checked with `pip download --platform manylinux_2_xx_aarch64`: tflite-runtime
# 2.14 stops at cp311, so trixie has ai-edge-litert only).
RELEASES = {
    "bookworm": {"python": "3.11", "runtimes": {
        "ai-edge-litert": ["numpy>=2", "ai-edge-litert"],
        "tflite-runtime": ["numpy<2", "tflite-runtime==2.14.0"],
    }},
    "trixie": {"python": "3.13", "runtimes": {
        "ai-edge-litert": ["numpy>=2", "ai-edge-litert"],
    }},
}
BOARDS = {"pi4": "cortex-a72", "pi5": "cortex-a76"}
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# manylinux tags an arm64 Debian 12/13 (glibc 2.36/2.41) accepts; pip does not
# widen an explicit --platform on its own.
_PLATFORMS = ("manylinux2014_aarch64",) + tuple(f"manylinux_2_{v}_aarch64" for v in range(17, 37))
_BINFMT = Path("/proc/sys/fs/binfmt_misc")
_BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


def cache_dir() -> Path:
    base = os.environ.get("EDGECOMPRESS_CACHE")
    return (Path(base) if base else Path("~/.cache/edgecompress").expanduser()) / "device-sim"


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Which emulated board to build and start.

    Args:
        release: Debian release of the userland, "bookworm" (Raspberry Pi OS
            Bookworm 64-bit) or "trixie". Defaults to "bookworm".
        board: "pi4" (Cortex-A72) or "pi5" (Cortex-A76). Defaults to "pi4".
        port: Loopback port of its SSH server. Defaults to 2222.
    """

    release: str = "bookworm"
    board: str = "pi4"
    port: int = 2222

    def __post_init__(self):
        if self.release not in RELEASES:
            raise EdgeCompressError(f"Received an invalid value for `release`, expected one of {sorted(RELEASES)}. "
                                    f"Received: release={self.release!r}")
        if self.board not in BOARDS:
            raise EdgeCompressError(f"Received an invalid value for `board`, expected one of {sorted(BOARDS)}. "
                                    f"Received: board={self.board!r}")
        if not (isinstance(self.port, int) and 1024 <= self.port <= 65535):
            raise EdgeCompressError(f"Received an invalid value for `port`, expected an integer in [1024, 65535]. "
                                    f"Received: port={self.port!r}")

    @property
    def cpu(self) -> str:
        return BOARDS[self.board]

    @property
    def home(self) -> Path:
        return cache_dir() / f"{self.release}-arm64"


@dataclasses.dataclass(frozen=True)
class Sim:
    """A started emulated board: how `bench-device` reaches it."""

    config: SimConfig
    known_hosts: Path
    key: Path
    pythons: tuple[str, ...]
    build_seconds: float
    start_seconds: float

    @property
    def host(self) -> str:
        return f"root@127.0.0.1:{self.config.port}"

    def bench_args(self) -> list[str]:
        return ["--host", self.host, "--known-hosts", str(self.known_hosts), "--key", str(self.key),
                "--python", ",".join(self.pythons)]


# ---- building ---------------------------------------------------------------

def _need_tools() -> None:
    if sys.platform != "linux":
        raise EdgeCompressError("device-sim runs on Linux only (it uses chroot, binfmt_misc and qemu-user).")
    if os.geteuid() != 0:
        raise EdgeCompressError("device-sim needs root: it makes a chroot, registers qemu with binfmt_misc and "
                                "mounts /proc in it. Run it with sudo, or as root in a container or VM.")
    missing = [pkg for tool, pkg in (("debootstrap", "debootstrap"), ("qemu-aarch64-static", "qemu-user-static"),
                                     ("ssh-keygen", "openssh-client")) if shutil.which(tool) is None]
    if not Path("/usr/sbin/sshd").exists() and shutil.which("sshd") is None:
        missing.append("openssh-server")
    if missing:
        raise EdgeCompressError(f"device-sim needs the Debian packages {', '.join(missing)}: "
                                f"`apt-get install {' '.join(missing)}`.")


def ensure_binfmt() -> None:
    """Makes arm64 ELF files run through qemu-aarch64-static, also inside a chroot.

    The registration needs the `F` flag (the kernel opens the emulator once,
    at registration), or binaries inside the root could not find it.
    """
    if not (_BINFMT / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(_BINFMT)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgeCompressError(f"Cannot mount binfmt_misc at {_BINFMT} ({proc.stderr.strip()}); a container "
                                    "needs --privileged, or register qemu-aarch64 on its host.")
    entry = _BINFMT / "qemu-aarch64"
    if entry.exists():
        text = entry.read_text()
        flags = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("flags:")), "")
        if "enabled" in text and "F" in flags:
            return
        if "F" not in flags:
            raise EdgeCompressError(f"{entry} is registered without the F flag (flags: {flags!r}), so arm64 programs "
                                    "cannot run inside a chroot. Remove it (`echo -1 > "
                                    f"{entry}`) and run device-sim again.")
    if not _BINFMT_CONF.exists():
        raise EdgeCompressError(f"{_BINFMT_CONF} not found; install Debian's qemu-user-static.")
    line = _BINFMT_CONF.read_text().strip()
    if not line.endswith("F"):
        line += "F"
    (_BINFMT / "register").write_text(line)
    logger.info("Registered qemu-aarch64 with binfmt_misc (flags F)")


def _chroot(root: Path, *cmd: str, cpu: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": cpu,
           "LANG": "C.UTF-8", "HOME": "/root"}
    proc = subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise EdgeCompressError(f"In the emulated root, `{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                                + (proc.stderr or proc.stdout)[-3000:])
    return proc


def _download_wheels(dest: Path, python: str, requirements: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
           "--python-version", python, "-d", str(dest)]
    for tag in _PLATFORMS:
        cmd += ["--platform", tag]
    proc = subprocess.run(cmd + requirements, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EdgeCompressError(f"pip found no aarch64 wheels of {' '.join(requirements)} for Python {python}:\n"
                                + proc.stderr[-2000:])


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    try:
        return any(line.split()[1] == target for line in Path("/proc/mounts").read_text().splitlines())
    except OSError:
        return False


def _ready(config: SimConfig) -> dict | None:
    marker = config.home / "ready.json"
    return json.loads(marker.read_text()) if marker.exists() else None


def build(config: SimConfig = SimConfig()) -> dict:
    """Builds the root once (cached); returns what it holds and how long it took."""
    info = _ready(config)
    if info is not None:
        return info
    _need_tools()
    ensure_binfmt()
    home, release = config.home, RELEASES[config.release]
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o755)
    root, tmp = home / "root", home / "root.partial"
    t0 = time.monotonic()
    if not root.exists():
        if tmp.exists():
            if _mounted(tmp / "proc"):
                subprocess.run(["umount", str(tmp / "proc")], check=False)
            shutil.rmtree(tmp)
        logger.info("Building a Debian %s arm64 root with debootstrap (once; about 10-20 minutes under emulation)",
                    config.release)
        proc = subprocess.run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                               config.release, str(tmp), MIRROR], capture_output=True, text=True)
        if proc.returncode != 0:
            log = tmp / "debootstrap" / "debootstrap.log"
            tail = log.read_text()[-2000:] if log.exists() else (proc.stderr or proc.stdout)[-2000:]
            raise EdgeCompressError(f"debootstrap of {config.release} arm64 from {MIRROR} failed:\n{tail}")
        tmp.rename(root)
    os.chmod(root, 0o755)  # sshd's ChrootDirectory wants root-owned, not group/other writable
    runtimes = {}
    for runtime, reqs in release["runtimes"].items():
        venv = f"/opt/{runtime}"
        wheels = root / "opt" / "wheels" / runtime
        logger.info("Installing %s in %s on the emulated board (aarch64 wheels from PyPI)", runtime, venv)
        _download_wheels(wheels, release["python"], reqs)
        _chroot(root, "python3", "-m", "venv", "--clear", venv, cpu=config.cpu)
        _chroot(root, f"{venv}/bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                "--find-links", f"/opt/wheels/{runtime}", *reqs, cpu=config.cpu)
        module = {"ai-edge-litert": "ai_edge_litert.interpreter", "tflite-runtime": "tflite_runtime.interpreter"}[runtime]
        probe = _chroot(root, f"{venv}/bin/python", "-c",
                        f"import platform, numpy, {module}; print(platform.machine(), platform.python_version(), "
                        f"numpy.__version__)", cpu=config.cpu)
        machine, python, numpy = probe.stdout.split()
        runtimes[runtime] = {"python": f"{venv}/bin/python", "machine": machine, "python_version": python,
                             "numpy": numpy}
    ssh = home / "ssh"
    ssh.mkdir(exist_ok=True)
    for key in ("host_ed25519", "client_ed25519"):
        if not (ssh / key).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgecompress-device-sim-{key}",
                            "-f", str(ssh / key)], check=True)
    (ssh / "authorized_keys").write_text((ssh / "client_ed25519.pub").read_text())
    info = {"release": config.release, "mirror": MIRROR, "runtimes": runtimes,
            "build_seconds": round(time.monotonic() - t0, 1)}
    (home / "ready.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("Built %s in %.0f s", home, info["build_seconds"])
    return info


# ---- running ----------------------------------------------------------------

def _pid(config: SimConfig) -> int | None:
    pidfile = config.home / "ssh" / f"sshd-{config.port}.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout * 4)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def start(config: SimConfig = SimConfig()) -> Sim:
    """Builds (once) and starts the emulated board; returns how to reach it."""
    info = build(config)
    _need_tools()
    ensure_binfmt()
    root, ssh = config.home / "root", config.home / "ssh"
    t0 = time.monotonic()
    if not _mounted(root / "proc"):
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    known_hosts = ssh / f"known_hosts-{config.port}"
    host_pub = " ".join((ssh / "host_ed25519.pub").read_text().split()[:2])
    known_hosts.write_text(f"[127.0.0.1]:{config.port} {host_pub}\n")
    if _pid(config) is None:
        if _answers(config.port):
            raise EdgeCompressError(f"Port {config.port} on 127.0.0.1 is taken by another SSH server; "
                                    "pass another `--port`.")
        conf = ssh / f"sshd_config-{config.port}"
        conf.write_text("\n".join([
            f"Port {config.port}", "ListenAddress 127.0.0.1", f"HostKey {ssh / 'host_ed25519'}",
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}", f"PidFile {ssh / f'sshd-{config.port}.pid'}",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "AllowUsers root", f"ChrootDirectory {root}",
            f"SetEnv QEMU_CPU={config.cpu} LANG=C.UTF-8", "Subsystem sftp internal-sftp", "LogLevel ERROR", "",
        ]))
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        proc = subprocess.run([sshd, "-f", str(conf), "-E", str(ssh / f"sshd-{config.port}.log")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgeCompressError(f"sshd for the emulated board did not start: {proc.stderr.strip()}")
        deadline = time.monotonic() + 15
        while not _answers(config.port):
            if time.monotonic() > deadline:
                raise EdgeCompressError(f"sshd for the emulated board did not answer on port {config.port} within "
                                        f"15 s; see {ssh / f'sshd-{config.port}.log'}.")
            time.sleep(0.1)
    pythons = tuple(r["python"] for r in info["runtimes"].values())
    return Sim(config, known_hosts, ssh / "client_ed25519", pythons, info["build_seconds"],
               round(time.monotonic() - t0, 2))


def stop(config: SimConfig = SimConfig()) -> bool:
    """Stops the board's SSH server and unmounts its /proc; returns whether it was running."""
    pid = _pid(config)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid(config) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    root = config.home / "root"
    # Another port's server may still use the same root; keep /proc mounted then.
    others = [p for p in (config.home / "ssh").glob("sshd-*.pid")
              if _pid(dataclasses.replace(config, port=int(p.stem.split("-")[1]))) is not None]
    if not others and _mounted(root / "proc"):
        subprocess.run(["umount", str(root / "proc")], check=False)
    return pid is not None
