"""The search's Optuna study: storage, refusing other studies, stale trials, early stopping, workers, resuming.

Fast tests drive real Optuna studies in a journal file with hand-made
trials; slow ones run `invoke build-edge --search` on the tiny model: killed
and resumed, and with two local workers sharing one study.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_invoke
from support.sshd import free_port
from edgecompress.search import records
from edgecompress.search.objective import RECOVERY_SLACK, early_stop_floor
from edgecompress.search.samplers import make_sampler
from edgecompress.search.stale import STALE_S, fail_stale_trials
from edgecompress.search.study import STUDY_NAME, open_storage, open_study
from edgecompress.search.worker import LAUNCH_ENV, wait_for_local_workers
from edgecompress.errors import EdgeCompressError
from edgecompress.report.pareto import hypervolume, pareto
from edgecompress.search.space import SearchSpace

SPACE = {"name": "w", "stages": [{"stage": "distill", "width": 0.5, "epochs": 1, "baseline": False},
                                 {"stage": "prune", "final_sparsity": 0.5, "initial_sparsity": 0.0, "epochs": 1}],
         "grid": {"prune": [True, False], "prune.final_sparsity": [0.5, 0.8]}, "quantize": ["int8", "float16"],
         "sampler": "grid"}


def _study(tmp_path, fingerprint=None, name=STUDY_NAME):
    storage = open_storage(None, tmp_path)
    space = SearchSpace.from_dict(SPACE)
    return storage, open_study(storage, space, fingerprint or {"space": space.fingerprint()}, name=name)


def test_the_study_lives_under_the_build_folder_and_refuses_another_space(tmp_path):
    storage, study = _study(tmp_path)
    assert (tmp_path / ".edgecompress" / "study" / "study.journal").exists()
    assert study.directions[0].name == "MAXIMIZE" and study.directions[1].name == "MINIMIZE"
    other = SearchSpace.from_dict({**SPACE, "name": "other"})
    with pytest.raises(EdgeCompressError, match=r"made by another search \(space: study '[0-9a-f]+', here '[0-9a-f]+'\)"):
        open_study(storage, other, {"space": other.fingerprint()})
    # Same space: the same study again (resume); another name: a new study in the same file.
    assert open_study(storage, SearchSpace.from_dict(SPACE), study.user_attrs["fingerprint"]).study_name \
        == study.study_name
    open_study(storage, other, {"space": other.fingerprint()}, name="second")
    with pytest.raises(EdgeCompressError, match="No study 'third'"):
        open_study(storage, other, {}, name="third", join=True)


@pytest.mark.parametrize("url, needle", [
    ("ftp://host/db", "Expected an RDB URL"),
    ("postgresql://user:secret@127.0.0.1:1/db", r"Cannot open the study storage postgresql://user:\*\*\*@127.0.0.1:1/db"),
])
def test_bad_storage_urls_are_refused_without_showing_the_password(tmp_path, url, needle):
    with pytest.raises(EdgeCompressError, match=needle) as e:
        open_storage(url, tmp_path)
    assert "secret" not in str(e.value)


def test_sqlite_url_is_an_rdb_storage(tmp_path):
    import optuna

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    assert isinstance(storage, optuna.storages.RDBStorage)


def test_local_workers_start_together_and_one_that_never_comes_is_waited_for_a_bound(tmp_path, monkeypatch):
    """The start barrier: the first worker up runs nothing until the second says it is ready; a worker that
    never comes is waited for `timeout_s`, then the others start (with a warning)."""
    import threading

    _, study = _study(tmp_path)
    monkeypatch.setenv(LAUNCH_ENV, "tok:2")
    late = threading.Timer(1.5, lambda: study.set_user_attr("launch:tok:1", "host:2"))
    t0 = time.time()
    late.start()
    assert wait_for_local_workers(study, 0, poll_s=0.1) == 2
    assert time.time() - t0 >= 1.4  # it waited for the second worker
    monkeypatch.setenv(LAUNCH_ENV, "other:2")  # a new launch: nobody else comes
    t0 = time.time()
    assert wait_for_local_workers(study, 0, timeout_s=1.0, poll_s=0.1) == 1
    assert 1.0 <= time.time() - t0 < 5
    monkeypatch.delenv(LAUNCH_ENV)  # a worker started by hand waits for nobody
    assert wait_for_local_workers(study, 0) == 1


def test_a_trial_left_running_by_a_dead_worker_is_failed_and_queued_again(tmp_path):
    import socket

    from optuna.trial import TrialState

    storage, study = _study(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    t = study.ask({"prune": __import__("optuna").distributions.CategoricalDistribution([True, False])})
    records.update(t, worker=f"{socket.gethostname()}:{dead.pid}")
    t.set_user_attr("heartbeat", time.time())
    alive = study.ask()
    alive.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid() + 0}")  # this process: alive
    alive.set_user_attr("heartbeat", time.time())
    elsewhere = study.ask()
    records.update(elsewhere, worker="other-host:1")
    elsewhere.set_user_attr("heartbeat", time.time() - STALE_S - 1)  # silent too long
    assert sorted(fail_stale_trials(study, storage)) == [0, 2]
    states = {tr.number: tr.state for tr in study.get_trials()}
    assert states[0] == TrialState.FAIL and states[1] == TrialState.RUNNING and states[2] == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(records.read(w).retry_of for w in waiting) == [0, 2]
    assert next(w for w in waiting if records.read(w).retry_of == 0).system_attrs["fixed_params"] == t.params
    assert fail_stale_trials(study, storage) == []  # once
    assert next(records.read(w) for w in waiting if records.read(w).retry_of == 2).retry_reason["worker"] == "other-host:1"
    assert {records.read(w).retries for w in waiting} == {1}


def test_a_trial_whose_worker_keeps_dying_is_retried_at_most_max_retries_times(tmp_path):
    from optuna.trial import TrialState

    from edgecompress.search.stale import MAX_RETRIES

    storage, study = _study(tmp_path)
    for _ in range(MAX_RETRIES + 1):  # the trial and each retry of it die on another host, silently
        t = study.ask()
        records.update(t, worker="other-host:1")
        t.set_user_attr("heartbeat", time.time() - STALE_S - 1)
        fail_stale_trials(study, storage)
    retried = [r.retries for r in map(records.read, study.get_trials()) if r.retry_of is not None]
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 0
    assert retried == list(range(1, MAX_RETRIES + 1)), retried


RDB_WORKER = r"""
import sys, time, optuna
from edgecompress.search import records
from edgecompress.search.stale import worker_id
from edgecompress.search.study import open_storage
storage = open_storage(sys.argv[1], ".", heartbeat_s=1, stale_s=3)
study = optuna.load_study(study_name="s", storage=storage)
def objective(trial):
    trial.suggest_int("x", 0, 9)
    records.update(trial, worker=worker_id())
    print("running", flush=True)
    time.sleep(600)
study.optimize(objective, n_trials=1)
"""


def test_on_an_rdb_storage_optunas_heartbeat_finds_a_killed_worker_and_the_trial_is_queued_again(tmp_path):
    """RDB storages use Optuna's own heartbeat (`RDBStorage(heartbeat_interval, grace_period,
    heartbeat_stale_trial_callback)`): a worker killed mid-trial stops beating, and after the grace period
    the next check fails its trial and queues its parameters again, naming the worker."""
    import optuna
    from optuna.trial import TrialState

    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, tmp_path, heartbeat_s=1, stale_s=3)
    study = optuna.create_study(study_name="s", storage=storage)
    worker = subprocess.Popen([sys.executable, "-c", RDB_WORKER, url], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    assert worker.stdout.readline().strip() == "running"
    assert fail_stale_trials(study, storage) == []  # alive and beating
    worker.kill()
    worker.wait()
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1
    deadline = time.time() + 30
    while not fail_stale_trials(study, storage):
        assert time.time() < deadline, "the killed worker's trial was never found stale"
        time.sleep(0.5)
    assert study.get_trials()[0].state == TrialState.FAIL
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert records.read(waiting).retry_of == 0 and waiting.system_attrs["fixed_params"] == running[0].params
    assert records.read(waiting).retry_reason["worker"] == records.read(running[0]).worker


def test_early_stop_floor_learns_the_recovery_from_finished_trials(tmp_path):
    import optuna

    storage, study = _study(tmp_path)

    def finished(stage_acc, final):
        study.add_trial(optuna.trial.create_trial(
            values=[final, 1000.0], user_attrs=records.queued(records.TrialRecord(
                judged=final, stages=(records.StageScore("prune", stage_acc),)))))

    assert early_stop_floor(study, "prune", 0.90, 1.0) is None  # nothing learned yet
    finished(0.85, 0.86)  # the later stages gave +1 point
    assert early_stop_floor(study, "prune", 0.90, 1.0) is None  # one is not enough
    finished(0.88, 0.87)  # ...and -1 point
    floor = early_stop_floor(study, "prune", 0.90, 1.0)
    assert floor == pytest.approx(0.90 - 0.01 - 0.01 - RECOVERY_SLACK)
    assert early_stop_floor(study, "prune", 0.90, None) is None  # no limit: never
    assert early_stop_floor(study, "cluster", 0.90, 1.0) is None  # nothing seen after that stage


def test_samplers_are_sized_for_a_few_dozen_trials():
    import optuna

    space = SearchSpace.from_dict({**SPACE, "sampler": "tpe"})
    tpe = make_sampler(space, 0)
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 8
    nsga = make_sampler(SearchSpace.from_dict({**SPACE, "sampler": "nsga2", "startup_trials": 6}), 0)
    assert nsga._population_size == 6
    assert isinstance(make_sampler(SearchSpace.from_dict(SPACE), 0), optuna.samplers.GridSampler)


def test_hypervolume_matches_a_grid_count():
    import random

    rnd = random.Random(0)
    pts = [(rnd.uniform(1, 10), rnd.uniform(0.5, 1.0)) for _ in range(15)]
    ref = (10.0, 0.5)
    n, inside = 400, 0
    for i in range(n):
        for j in range(n):
            c, a = ref[0] * (i + 0.5) / n, ref[1] + 0.5 * (j + 0.5) / n
            inside += any(pc <= c and pa >= a for pc, pa in pts)
    assert hypervolume(pts, ref) == pytest.approx(inside / n / n * ref[0] * 0.5, rel=0.02)
    assert hypervolume([(11, 0.9)], ref) == 0.0  # worse than the reference: nothing
    assert set(pareto(pts)) >= {min(range(15), key=lambda i: pts[i][0])}


def test_the_one_reported_hypervolume_is_in_kb_and_points_against_the_teacher_less_the_limit():
    from edgecompress.report.pareto import front_hypervolume

    teacher = (10 * 1024, 0.90)  # 10 KB, 90%
    hv = front_hypervolume([(2 * 1024, 0.895), (5 * 1024, 0.92), (12 * 1024, 0.99)], teacher, max_accuracy_drop=1.0)
    assert hv["unit"] == "KB x points" and hv["reference"] == [10.0, 89.0]
    # (2 KB, 89.5): 8 x 0.5 = 4; (5 KB, 92): 5 x (92 - 89.5) = 12.5; the 12 KB file is larger than the teacher's
    assert hv["value"] == pytest.approx(16.5)


@pytest.mark.parametrize("args, needle", [
    (["--budget-minutes", "0"], "budget_minutes=0.0"),
    (["--workers", "0"], "workers=0"),
    (["--storage", "postgresql://u:pw@127.0.0.1:1/db"], "Cannot open the study storage postgresql://u:***@"),
])
def test_bad_search_input_exits_2_and_keeps_the_previous_build(tmp_path, root, args, needle):
    out = tmp_path / "out"
    out.mkdir()
    from conftest import PLACEHOLDER_REPORT as kept

    (out / "report.json").write_text(kept)
    proc = run_invoke(["build-edge", "--search", "--out", str(out), *args], cwd=root, timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]
    assert (out / "report.json").read_text() == kept


def test_a_range_with_low_above_high_exits_2(tmp_path, root):
    (tmp_path / "s.json").write_text(json.dumps({**SPACE, "grid": {"prune.final_sparsity": {"low": 0.9, "high": 0.5}}}))
    proc = run_invoke(["build-edge", "--search", str(tmp_path / "s.json"), "--out", str(tmp_path / "o")], cwd=root,
                      timeout=120)
    assert proc.returncode == 2 and "low > high (0.9 > 0.5). Swap them." in proc.stderr, proc.stderr[-2000:]


# --- real searches on the tiny model -------------------------------------------------------------------------


def _build(tmp_path, tiny_model, small_npz, out, *extra):
    tiny_model.save(tmp_path / "m.keras")
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    return [sys.executable, "-m", "invoke", "build-edge", "--model", str(tmp_path / "m.keras"), "--data",
            str(small_npz), "--search", str(tmp_path / "space.json"), "--out", str(out), "--runs", "5",
            "--max-accuracy-drop", "50", "--quiet", *extra]


def _trials(out):
    import optuna

    storage = open_storage(None, out)
    return optuna.load_study(study_name=STUDY_NAME, storage=storage).get_trials()


@pytest.mark.slow
def test_a_killed_search_resumes_with_two_workers_and_runs_nothing_twice(tmp_path, root, tiny_model, small_npz):
    """Killed mid-trial, then resumed by two local workers sharing the study: the killed trial is retried,
    finished ones are not run again, both workers contribute, each with its share of the cores, the front is
    complete. Then another space in the same folder is refused, the build kept."""
    from optuna.trial import TrialState

    out = tmp_path / "out"
    cmd = _build(tmp_path, tiny_model, small_npz, out)
    # Kill it once trial 0 is done and trial 1 runs: trial 0's line in the log says when it is done (polling
    # the study alone could see several trials done, leaving too little for two workers), then wait for the
    # next trial to be running.
    proc = subprocess.Popen([a for a in cmd if a != "--quiet"], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    for line in proc.stderr:
        if line.startswith("[trial 0] ") and "held-out top-1" in line:
            break
        assert time.time() < deadline, "trial 0 never finished"
    import threading

    threading.Thread(target=proc.stderr.read, daemon=True).start()  # the build's log must not fill the pipe
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            trials = _trials(out)
        except Exception:
            continue
        if trials[-1].state == TrialState.RUNNING:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _trials(out)
    done_before = {records.read(t).config for t in before if t.state == TrialState.COMPLETE}
    assert done_before and before[-1].state == TrialState.RUNNING
    assert not (out / "report.json").exists()  # nothing published by the killed run

    again = subprocess.run(cmd + ["--workers", "2"], cwd=root, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    s = report["search"]
    log = s["candidates"]
    assert s["resumed_trials"] == len(before) and s["workers"] == 2
    assert log[len(before) - 1]["status"] == "retried"  # the killed trial: failed, queued again, run
    done = [c for c in log if c["status"] == "done"]
    configs = [records.read(_trials(out)[c["trial"]]).config for c in done]
    assert len(configs) == len(set(configs)) == 6  # 6 distinct files (prune off: one file per scheme); none twice
    assert done_before <= set(configs)
    after = [c for c in log[len(before):] if c["status"] == "done"]
    # Both workers started together (the start barrier) and each took trials; a trial may be a duplicate
    # of one the other is running (the grid's prune-off twins), which still names who took it.
    assert len({c["worker"] for c in log[len(before):] if c["status"] in ("done", "duplicate")}) == 2, log
    assert {c["tf_threads"] for c in after} == {max(1, (os.cpu_count() or 1) // 2)}  # each its share of the cores
    names = [c["artifacts"][0] for c in done]
    arts = {a["name"]: a for a in report["artifacts"]}
    pts = [(arts[n]["size_bytes"], arts[n]["val_accuracy"]) for n in ["teacher_float32"] + names]
    front = {(["teacher_float32"] + names)[i] for i in pareto(pts)}
    assert front == {n for n, a in arts.items() if a["pareto"]["size"]}  # the front is complete
    for n in names:  # a search's files are under trials/, with short names (trials.csv maps them)
        assert Path(arts[n]["path"]).exists() and Path(arts[n]["path"]).parent.name == "trials"

    # The same folder with another space: refused before anything is published, the build kept.
    (tmp_path / "space.json").write_text(json.dumps({**SPACE, "grid": {"prune.final_sparsity": [0.6]}}))
    kept = (out / "report.json").read_bytes()
    other = run_invoke(cmd[3:], cwd=root, timeout=600)
    assert other.returncode == 2 and "made by another search (space:" in other.stderr, other.stderr[-2000:]
    assert "--study NAME" in other.stderr and (out / "report.json").read_bytes() == kept
    # ...and so is a worker whose space differs.
    join = run_invoke(["search-worker", "--storage", f"journal:{out / '.edgecompress/study/study.journal'}",
                       "--search", str(tmp_path / "space.json"), "--out", str(tmp_path / "w")], cwd=root, timeout=300)
    assert join.returncode == 2 and "made by another search (space:" in join.stderr, join.stderr[-2000:]


MWMS_SCRIPT = r"""
import json, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
mode, out = sys.argv[1], sys.argv[2]
from edgecompress.models.distribute import get_strategy
strategy = get_strategy(mode)  # MultiWorkerMirroredStrategy must exist before other TensorFlow work
import numpy as np
from edgecompress.models import keras_io, training
from edgecompress.configs import TrainConfig
from edgecompress.data.loading import load_dataset
from edgecompress.techniques.distill import DistillConfig, distill

from tests.support.architectures import plain_classifier as plain  # no BN, no Dropout: one step is the same

one = load_dataset()
one.x_train, one.y_train = one.x_train[:256], one.y_train[:256]
with strategy.scope():
    m = plain()
training.train(m, one, TrainConfig(epochs=1, batch_size=256, validation_fraction=0.0, seed=0, strategy=mode),
                        verbose=0)
student, _ = distill(plain(1), one, DistillConfig(width=0.5, epochs=1, batch_size=256, baseline=False, strategy=mode),
                     verbose=0)
np.savez(out, *[w.numpy() for w in m.weights], *[w.numpy() for w in student.weights])
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "n_train": len(m.weights)}))
"""


@pytest.mark.slow
def test_multiworker_mirrored_over_loopback_matches_one_worker(tmp_path, root):
    """Two worker processes joined by TF_CONFIG on 127.0.0.1: one training step and one distillation step give
    the single worker's weights."""
    import numpy as np

    script = tmp_path / "step.py"
    script.write_text(MWMS_SCRIPT)
    ports = {free_port() for _ in range(10)}  # two distinct ones
    assert len(ports) >= 2
    cluster = {"worker": [f"127.0.0.1:{p}" for p in sorted(ports)[:2]]}
    env = {**os.environ, "PYTHONPATH": str(root)}
    workers = [subprocess.Popen([sys.executable, str(script), "multiworker", str(tmp_path / f"w{i}.npz")],
                                env={**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                                     "task": {"type": "worker", "index": i}})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    single = subprocess.run([sys.executable, str(script), "default", str(tmp_path / "one.npz")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    outs = [w.communicate(timeout=600) for w in workers]
    for w, (o, e) in zip(workers, outs):
        assert w.returncode == 0, e[-2000:]
        assert json.loads(o.strip().splitlines()[-1])["replicas"] == 2
    info = json.loads(single.stdout.strip().splitlines()[-1])
    one, w0, w1 = (np.load(tmp_path / f"{n}.npz") for n in ("one", "w0", "w1"))
    keys = sorted(one.files, key=lambda k: int(k.split("_")[1]))
    train, student = keys[:info["n_train"]], keys[info["n_train"]:]
    for k in keys:  # the two workers hold one model
        np.testing.assert_array_equal(w0[k], w1[k])
    for k in train:  # plain training: the same step to float rounding
        np.testing.assert_allclose(w0[k], one[k], atol=1e-6)
    close = np.mean(np.concatenate([np.isclose(w0[k], one[k], atol=1e-5).ravel() for k in student]))
    assert close >= 0.98, close  # distillation (Adam): a few near-zero gradients may round the other way


@pytest.fixture
def postgres_url(tmp_path):
    """A PostgreSQL server of its own on 127.0.0.1 (Debian's postgresql, run as the postgres user)."""
    import glob
    import shutil

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or os.geteuid() != 0:  # scripts/install-system-deps.sh installs it; CI runs as root
        pytest.skip("needs Debian's postgresql (apt-get install postgresql; scripts/install-system-deps.sh) and root, to run "
                    "the server as the postgres user")
    pg = bins[-1]
    import tempfile
    from pathlib import Path

    top = Path(tempfile.mkdtemp(prefix="edgecompress-pg-"))  # pytest's tmp_path is private to root
    os.chmod(top, 0o755)
    data = top / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def as_pg(*cmd):
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120)

    r = as_pg(f"{pg}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    assert r.returncode == 0, r.stderr
    r = as_pg(f"{pg}/pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "start", "-o",
              f"-p {port} -k {data} -c listen_addresses=127.0.0.1")
    assert r.returncode == 0, r.stderr + (data / "log").read_text()
    try:
        r = as_pg(f"{pg}/createdb", "-h", "127.0.0.1", "-p", str(port), "study")
        assert r.returncode == 0, r.stderr
        yield f"postgresql://postgres:unused@127.0.0.1:{port}/study"
    finally:
        as_pg(f"{pg}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path, postgres_url):
    """A worker started before its search creates the tables at the same time as the search: PostgreSQL
    refuses one of two concurrent `CREATE TABLE`s (a unique violation on pg_type); `open_storage` retries."""
    script = ("import sys; from edgecompress.search.study import open_storage; "
              "open_storage(sys.argv[1], sys.argv[2]); print('opened')")
    procs = [subprocess.Popen([sys.executable, "-c", script, postgres_url, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "opened" in out, err[-2000:]


@pytest.mark.slow
def test_a_worker_started_elsewhere_joins_a_postgresql_study(tmp_path, root, tiny_model, small_npz, postgres_url):
    """The coordinator (`build-edge --search --storage postgresql://...`) and a worker with its own folder and
    cache (`search-worker --storage URL`, as on another machine) share the study over TCP; the worker's files
    reach the coordinator through the artifact folder."""
    out, store = tmp_path / "out", tmp_path / "shared-artifacts"
    space = {**SPACE, "grid": {"prune": [True, False], "prune.final_sparsity": [0.3, 0.5, 0.8]}}
    cmd = _build(tmp_path, tiny_model, small_npz, out, "--storage", postgres_url, "--artifacts", str(store))
    (tmp_path / "space.json").write_text(json.dumps(space))
    # The worker starts first: it waits for the search's study to be ready.
    worker = subprocess.Popen([sys.executable, "-m", "invoke", "search-worker", "--storage", postgres_url, "--out",
                               str(tmp_path / "elsewhere")], cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    coordinator = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while worker.poll() is None and coordinator.poll() in (None, 0) and time.time() < deadline:
        time.sleep(1)  # whichever fails first is the one to show
    if coordinator.poll() not in (None, 0):
        worker.kill()
        pytest.fail("coordinator: " + coordinator.communicate()[1][-3000:])
    _, werr = worker.communicate(timeout=max(1, deadline - time.time()))
    worker.returncode == 0 or pytest.fail("worker: " + werr[-3000:])
    _, err = coordinator.communicate(timeout=600)
    assert coordinator.returncode == 0, err[-3000:]
    assert "unused" not in err  # the password is never printed
    report = json.loads((out / "report.json").read_text())
    s = report["search"]
    assert s["storage"] == postgres_url.replace(":unused@", ":***@")
    done = [c for c in s["candidates"] if c["status"] == "done"]
    names = [c["artifacts"][0] for c in done]
    assert len(names) == len(set(names)) == 8  # 4 trained models x 2 schemes, each once
    assert len({c["worker"] for c in done}) == 2, [c["worker"] for c in done]
    assert (tmp_path / "elsewhere" / ".cache").is_dir()  # the worker trained in its own folder
    arts = {a["name"]: a for a in report["artifacts"]}
    for n in names:  # a search's files are under trials/, with short names (trials.csv maps them)
        assert Path(arts[n]["path"]).exists() and Path(arts[n]["path"]).parent.name == "trials"
