"""Trials whose worker died: heartbeats, and failing them and queueing their parameters again (at most
`MAX_RETRIES` times each).

On an RDB storage, Optuna's heartbeat finds a trial whose worker stopped beating for `STALE_S`; on a journal file
(Optuna's journal has no heartbeat), a trial whose worker died on this host (pid gone) or whose `heartbeat`
attribute is older than `STALE_S`. Either is failed and enqueued again, the new trial naming the one it retries
(`TrialRecord.retry_of`, `retry_reason`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings

from edgecompress.lite.fileio import pid_alive
from edgecompress.search import records
from edgecompress.search.records import HEARTBEAT, TrialRecord

logger = logging.getLogger(__name__)


HEARTBEAT_S = 15


STALE_S = 90
MAX_RETRIES = 3  # times one trial's parameters are queued again after its worker died


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_stale_trials(study, storage) -> list[int]:
    """Fails trials left RUNNING by a dead worker and queues their parameters again; returns their numbers.

    On an RDB storage this is Optuna's own heartbeat (`RDBStorage(heartbeat_interval=HEARTBEAT_S,
    grace_period=STALE_S)`, see `_rdb_storage`): `optuna.storages.fail_stale_trials` fails what it finds
    stale and calls `retry_stale` for each. Optuna's journal storage has no heartbeat, so for a journal
    file (one host, or a shared disk) a trial is stale when its worker is on this host and its pid is gone,
    or when its `heartbeat` user attribute (`Heartbeat`) is older than `STALE_S`.
    """
    import optuna
    from optuna.trial import TrialState

    if heartbeat_storage(storage):
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        with warnings.catch_warnings():  # experimental since Optuna 2.9; Optuna calls it so itself
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return sorted({t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} - before)
    me, host, now, retried = worker_id(), socket.gethostname(), time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = records.read(t).worker or ""
        if who == me:
            continue
        beat = t.user_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        w_host, _, pid = who.rpartition(":")
        dead = (w_host == host and pid.isdigit() and not pid_alive(int(pid))) or now - beat > STALE_S
        if not dead:
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker got there first (finished, or finished meanwhile)
            continue
        retry(study, t, {"worker": who, "seen": now})
        retried.append(t.number)
    return retried


def heartbeat_storage(storage) -> bool:
    from optuna.storages import RDBStorage

    return isinstance(storage, RDBStorage) and storage.heartbeat_interval is not None


def retry(study, trial, why: dict) -> None:
    """Queues a failed trial's parameters again, unless they have been retried `MAX_RETRIES` times already (a
    trial that kills its worker every time would otherwise run until the budget); the new trial says which it
    retries, why, and how many times these parameters have been retried."""
    tries = records.read(trial).retries + 1
    if tries > MAX_RETRIES:
        logger.warning("Trial %d was left running by %s, which is gone; its parameters were retried %d times "
                       "already, so they are not queued again", trial.number, why.get("worker") or "a worker",
                       MAX_RETRIES)
        return
    study.enqueue_trial(trial.params, user_attrs=records.queued(TrialRecord(
        retry_of=trial.number, retry_reason=why, retries=tries, rung=records.read(trial).rung)))
    if not why.get("interrupted"):
        logger.warning("Trial %d was left running by %s, which is gone: marked failed, its parameters queued again",
                       trial.number, why.get("worker") or "an unknown worker")


def retry_stale(study, trial) -> None:
    """Optuna's `heartbeat_stale_trial_callback` on an RDB storage: the trial's worker stopped beating."""
    retry(study, trial, {"worker": records.read(trial).worker or "", "seen": time.time()})


class Heartbeat:
    """Records the trial's worker; with `beat` (a journal file, which Optuna gives no heartbeat), also writes
    its `heartbeat` user attribute every `HEARTBEAT_S` seconds while it runs."""

    def __init__(self, trial, beat: bool = True):
        self.trial, self.beat, self.stop = trial, beat, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.trial.set_user_attr(HEARTBEAT, time.time())
            except Exception:  # pragma: no cover - the storage went away; the trial will say so
                return

    def __enter__(self):
        records.update(self.trial, worker=worker_id())
        if self.beat:
            self.trial.set_user_attr(HEARTBEAT, time.time())
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
