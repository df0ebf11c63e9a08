"""The stage cache and the output folder under concurrent and hostile use.

Entries are checked against their recorded hash on every read, keys carry the
library versions, several processes share one cache, and two builds cannot
publish into one folder at once (two real processes).
"""

import logging
import subprocess
import sys
import time

import pytest

from conftest import run_invoke
from edgecompress.recipes import cache
from edgecompress.recipes.cache import StageCache, make_key


def test_a_truncated_or_altered_entry_is_recomputed_with_a_warning(tmp_path, caplog):
    c = StageCache(tmp_path)
    path = c.put_bytes("int8.convert", "k", ".tflite", b"x" * 1000)
    c.put_json("int8.measure", "k", {"accuracy": 0.9})
    assert c.get_bytes("int8.convert", "k", ".tflite") == b"x" * 1000
    path.write_bytes(b"x" * 10)  # truncated (a full disk, a killed copy)
    (tmp_path / "int8.measure-k.json").write_text('{"accuracy": 1.0}\n')  # altered by hand
    with caplog.at_level(logging.WARNING):
        assert c.get_bytes("int8.convert", "k", ".tflite") is None
        assert c.get_json("int8.measure", "k") is None
    assert "does not match its recorded hash" in caplog.text
    assert not path.exists()  # removed: the next put recomputes it
    (tmp_path / "orphan-k.json").write_text("{}")  # no recorded hash at all
    assert c.get_json("orphan", "k") is None


def test_every_key_carries_the_library_versions(monkeypatch):
    before = make_key("stage", {"a": 1})
    monkeypatch.setattr(cache, "versions", lambda: {"tensorflow": "9.9.9"})
    cache._versions.cache_clear()
    try:
        assert make_key("stage", {"a": 1}) != before
    finally:
        monkeypatch.undo()
        cache._versions.cache_clear()
    assert make_key("stage", {"a": 1}) == before


WRITER = """
import sys, hashlib
from edgecompress.recipes.cache import StageCache
c = StageCache(sys.argv[1])
me = int(sys.argv[2])
for i in range(200):
    key = f"k{i % 5}"
    data = bytes([me]) * (20000 + i % 5)
    c.put_bytes("shared", key, ".bin", data)
    got = c.get_bytes("shared", key, ".bin")
    assert got is not None and len(got) == 20000 + i % 5 and got[:1] in (bytes([1]), bytes([2])), (i, len(got or b""))
    assert got == got[:1] * len(got), "a torn entry was read"
print("ok")
"""


@pytest.mark.slow
def test_two_processes_share_one_cache(tmp_path, root):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
        assert "recomputing" not in err  # writes under the lock: never a hash mismatch between the two


@pytest.mark.slow
def test_a_second_build_into_the_same_folder_stops_at_once(tmp_path, root, small_npz):
    out = tmp_path / "o"
    first = subprocess.Popen([sys.executable, "-m", "invoke", "build-edge", "--data", str(small_npz), "--epochs", "3",
                              "--out", str(out), "--quiet"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        lock = out / ".edgecompress" / "lock"
        deadline = time.time() + 120
        while not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.time() < deadline, "the first build never took the folder"
            time.sleep(0.2)
        second = run_invoke(["build-edge", "--data", str(small_npz), "--epochs", "1", "--out", str(out), "--quiet"],
                            cwd=root)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"Output folder {out} is in use by invoke build-edge (pid {first.pid}" in second.stderr
        assert first.poll() is None  # it stopped while the first still runs: at once, not after waiting
    finally:
        first.kill()
        first.wait()
    # The kernel released the killed holder's lock: the folder is usable again.
    from edgecompress.lite.fileio import folder_lock

    with folder_lock(out):
        pass
