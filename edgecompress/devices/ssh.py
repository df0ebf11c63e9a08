"""Benchmarks on devices over SSH (Fabric), merged into the report.

For each host, in parallel: make a temporary directory on the device, copy
the TF-free benchmark code and the `.tflite` files there, run
`python -m edgecompress.lite.latency` with the device's Python, pull the JSON back,
and remove the directory. Host keys are checked against `known_hosts` (Fabric
would otherwise accept any key); every remote argument is quoted.

Example:

>>> results = bench_devices(["pi@raspberrypi.local"], ["build/edge/int8.tflite"])
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import shlex
import socket
import zlib
from pathlib import Path

from edgecompress.lite.latency import DEFAULT_RUNS, DEFAULT_WARMUP
from edgecompress import lite
from edgecompress.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EdgeCompressError

logger = logging.getLogger(__name__)

PACKAGE = lite.PACKAGE_ROOT
DEVICE_FILES = tuple(lite.device_files())  # the TensorFlow-free folder `edgecompress/lite/`, and what it imports


@dataclasses.dataclass(frozen=True)
class SSHOptions:
    """How to reach devices.

    Args:
        known_hosts: known_hosts file to check host keys against. Defaults to
            the user's `~/.ssh/known_hosts`.
        key: Private key file. Defaults to the SSH agent and default keys.
        timeout: Seconds to connect (TCP, banner and authentication).
            Defaults to 15.
        python: The device's Python (a venv's `bin/python` works); several,
            comma-separated (one venv per runtime), are each run on the same
            copied files. Defaults to `python3`.
    """

    known_hosts: str | None = None
    key: str | None = None
    timeout: float = 15.0
    python: str = "python3"

    @property
    def pythons(self) -> list[str]:
        out = [p.strip() for p in self.python.split(",") if p.strip()]
        if not out:
            raise EdgeCompressError(f"Received an invalid value for `python`, expected a path or comma-separated paths. "
                                    f"Received: python={self.python!r}")
        return out


def connect(host: str, options: SSHOptions):
    """An open Fabric connection with strict host key checking."""
    import paramiko
    from fabric import Connection

    kwargs = {"banner_timeout": options.timeout, "auth_timeout": options.timeout}
    if options.key:
        kwargs.update(key_filename=options.key, look_for_keys=False, allow_agent=False)
    conn = Connection(host, connect_timeout=options.timeout, connect_kwargs=kwargs)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    known = Path(options.known_hosts).expanduser() if options.known_hosts else Path("~/.ssh/known_hosts").expanduser()
    if known.exists():
        conn.client.load_host_keys(str(known))
    try:
        conn.open()
    except paramiko.BadHostKeyException:
        raise EdgeCompressError(
            f"{host}: the host key does not match the one in {known}. Someone may be intercepting "
            f"the connection, or the device was reinstalled; if you trust it, remove the old key with "
            f"`ssh-keygen -f {known} -R {conn.host if conn.port == 22 else f'[{conn.host}]:{conn.port}'}` and reconnect."
        ) from None
    except paramiko.SSHException as e:
        msg = str(e)
        if "not found in known_hosts" in msg:
            raise EdgeCompressError(
                f"{host}: host key unknown (not in {known}). Check the device's fingerprint, then add it with "
                f"`ssh-keyscan -p {conn.port} {conn.host} >> {known}`."
            ) from None
        # A listener that never speaks SSH shows up as a banner timeout, or as
        # "No existing session" when paramiko gives up on the dead transport.
        if "Error reading SSH protocol banner" in msg or "timed out" in msg.lower() or "No existing session" in msg:
            raise EdgeCompressError(f"{host}: no SSH answer within {options.timeout:g} s ({msg}).") from None
        raise EdgeCompressError(f"{host}: SSH failed: {msg}") from None
    except (socket.timeout, TimeoutError):
        raise EdgeCompressError(f"{host}: no SSH answer within {options.timeout:g} s (connection timed out). "
                                "Is the device on and reachable?") from None
    except OSError as e:
        raise EdgeCompressError(f"{host}: cannot connect ({e.strerror or e}). Check the address and port.") from None
    return conn


def bench_on_host(host: str, models, options: SSHOptions = SSHOptions(), *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
                  threads: int = 1, xnnpack: bool = True, eval_data=None, profile: bool = False,
                  tflm: bool = False) -> list[dict]:
    """Runs the benchmark on one host, once per Python in `options.python`.

    Returns one JSON result per Python (each with `host` and `python`).
    With `eval_data` (an `.npz` of preprocessed `x` and labels `y`, see
    `lite.latency.load_eval_data`), each model's result also has its top-1 and
    predicted labels on the device. With `profile`, each has the device's
    `lite.profile` too: each op timed alone there, and the peak memory. With `tflm`, each has TensorFlow Lite
    Micro's view on the device (`lite.latency.tflm_view`; the device needs `pip install tflite-micro`).
    """
    models = [Path(m) for m in models]
    for m in models:
        if not m.is_file():
            raise EdgeCompressError(f"Model file not found: {m}")
    pythons = options.pythons
    conn = connect(host, options)
    remote = None
    try:
        remote = conn.run("mktemp -d /tmp/edgecompress.XXXXXX", hide=True, in_stream=False).stdout.strip()
        if not remote.startswith("/tmp/edgecompress."):
            raise EdgeCompressError(f"{host}: unexpected answer from mktemp: {remote!r}")
        q = shlex.quote
        folders = sorted({f"{remote}/edgecompress/{Path(rel).parent}" for rel in DEVICE_FILES} | {remote + "/models"})
        conn.run("mkdir -p " + " ".join(q(d) for d in folders), hide=True, in_stream=False)
        for rel in DEVICE_FILES:
            conn.put(str(PACKAGE / rel), f"{remote}/edgecompress/{rel}")
        names = []
        for m in models:
            conn.put(str(m), f"{remote}/models/{m.name}")
            names.append(f"models/{m.name}")
        extra = []
        if eval_data is not None:
            conn.put(str(eval_data), f"{remote}/eval.npz")
            extra = ["--eval-data", "eval.npz"]
        if profile:
            extra.append("--profile")
        if tflm:
            extra.append("--tflm")
        return [_run_bench(conn, host, remote, python, names, [*extra, "--runs", str(runs), "--warmup", str(warmup),
                                                                "--threads", str(threads)] + ([] if xnnpack else ["--no-xnnpack"]))
                for python in pythons]
    except (OSError, EOFError) as e:
        raise EdgeCompressError(f"{host}: lost the connection or a copy failed ({type(e).__name__}: {e}).") from None
    finally:
        if remote and remote.startswith("/tmp/edgecompress."):
            conn.run(f"rm -rf {shlex.quote(remote)}", hide=True, warn=True, in_stream=False)
        conn.close()


def _run_bench(conn, host, remote, python, names, flags) -> dict:
    import io

    q = shlex.quote
    result = f"result-{zlib.crc32(python.encode()):08x}.json"
    args = [python, "-m", "edgecompress.lite.latency", *names, *flags, "--json", result]
    cmd = f"cd {q(remote)} && " + " ".join(q(a) for a in args)
    logger.info("%s: %s", host, cmd)
    res = conn.run(cmd, hide=True, warn=True, in_stream=False)
    last = (res.stderr.strip().splitlines() or [""])[-1]
    # Partial (some files failed) and usage (every file failed) still write the JSON that lists them.
    if res.return_code not in (EXIT_OK, EXIT_PARTIAL, EXIT_USAGE):
        raise EdgeCompressError(f"{host}: the benchmark with {python} failed (exit {res.return_code}): {last}"
                                + _hint(res.return_code, last, python))
    buf = io.BytesIO()
    try:
        conn.get(f"{remote}/{result}", buf)
    except OSError:
        raise EdgeCompressError(f"{host}: the benchmark with {python} wrote no result (exit {res.return_code}): "
                                f"{last}" + _hint(res.return_code, last, python)) from None
    out = json.loads(buf.getvalue())
    out["host"], out["python"] = host, python
    return out


def _hint(code: int, last: str, python: str) -> str:
    """What to do about the usual ways a device's Python cannot run the benchmark."""
    if code == 127 or "No such file or directory" in last or "not found" in last:
        return (f". There is no {python} on the device: install Python 3 (`sudo apt install python3-venv`) or pass "
                "the right one with --python.")
    if "No module named" in last:
        return (f". {python} has no TFLite runtime: `{python} -m pip install ai-edge-litert` (64-bit OS), or "
                "`tflite-runtime==2.14.0 'numpy<2'` on older boards.")
    return ""


def bench_devices(hosts, models, options: SSHOptions = SSHOptions(), **kwargs) -> dict:
    """Benchmarks on every host in parallel; one host's failure keeps the others.

    Returns {key: result or {"error": message}}: the key is the host, or
    "host python" when several Pythons were given.
    """
    if not hosts:
        raise EdgeCompressError("Received no hosts; pass at least one `--host user@host`.")
    several = len(options.pythons) > 1
    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        futures = {pool.submit(bench_on_host, h, models, options, **kwargs): h for h in hosts}
        for f in concurrent.futures.as_completed(futures):
            h = futures[f]
            try:
                for r in f.result():
                    out[f"{h} {r['python']}" if several else h] = r
                    logger.info("%s (%s): %d model(s) measured", h, r["device"]["runtime"]["name"], len(r["results"]))
            except EdgeCompressError as e:
                logger.error("%s", e)
                out[h] = {"error": str(e)}
    return out


def merge_into_report(report: dict, results: dict) -> dict:
    """Adds per-device results to `report["devices"]`, keyed by artifact name (`selected.tflite`'s under
    the selected artifact's).

    A device column is labelled `host/runtime`, so one board measured with
    two runtimes gets two columns.
    """
    devices = report.setdefault("devices", {})
    by_file = {Path(a["path"]).name: a["name"] for a in report.get("artifacts", [])}
    if report.get("selected"):  # `selected.tflite` is a copy of the selected artifact's file: its row
        by_file.setdefault("selected.tflite", report["selected"])
    for key, r in results.items():
        if "error" in r:
            devices[key] = {"error": r["error"]}
            continue
        host = r.get("host", key)
        label = f"{host}/{r['device']['runtime']['name']}"
        devices.pop(host, None)  # an earlier failure of this host is superseded
        devices[label] = {
            "device": r["device"],
            "harness_overhead_us": r["harness_overhead_us"],
            "results": {by_file.get(x["model"], x["model"]): x for x in r["results"]},
            "errors": r.get("errors", []),
        }
    return report
