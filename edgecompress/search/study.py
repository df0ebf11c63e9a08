"""A search's Optuna study: its storage, its sampler, and what it is made of (`fingerprint`).

One study per search, two objectives: validation top-1 (maximize) and size
(minimize: file bytes, or gzip bytes with `--size gzip`; `report.sizes`), with `--max-accuracy-drop` as its constraint: each trial
sets `accuracy_drop` = drop - limit in points (`Trial.set_constraint`,
Optuna 5's replacement for `constraints_func`; feasible when <= 0), which
TPE and NSGA-II read.

- **Storage.** By default a journal file under the build folder,
  `<out>/.edgecompress/study/study.journal` (several processes of this
  machine share it through its file lock); `--storage URL` takes an RDB URL
  (`postgresql://...`, `mysql+pymysql://...`, `sqlite:///local.db`) that
  workers on other machines can reach. The study keeps, as user attributes,
  what made it: teacher, data, space, seed, limit and library versions
  (`fingerprint`); a worker whose own differ is refused.
- **Files.** Each trial's `.tflite` goes to an Optuna artifact store, a
  folder (`<out>/.edgecompress/study/artifacts`, or `--artifacts DIR` that
  every machine mounts); the process that selects downloads them.
- **Stopping early.** After each stage, a trial whose validation top-1 is
  below what the limit allows, even with the best recovery later stages
  gave earlier trials (plus half a point), raises `optuna.TrialPruned` and
  records the stage (`stopped_early`). Optuna's own pruners are
  single-objective only.
- **Not twice.** Trials whose recipe and scheme equal a finished one's
  (`search.config_key`) take its result without running; one running
  elsewhere is waited for.
- **Stale trials.** Every running trial records its worker (host:pid). On an
  RDB storage, Optuna's heartbeat finds a trial whose worker stopped beating
  for `STALE_S`; on a journal file (Optuna's journal has no heartbeat), a
  trial whose worker died on this host (pid gone) or whose `heartbeat`
  attribute is older than `STALE_S`. Either is failed and enqueued again,
  the new trial naming the one it retries (`retry_of`, `retry_reason`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path

from edgecompress.errors import EdgeCompressError
from edgecompress.search import records
from edgecompress.search.samplers import make_sampler
from edgecompress.search.space import SearchSpace
from edgecompress.search.stale import HEARTBEAT_S, STALE_S, retry_stale

logger = logging.getLogger(__name__)


STUDY_NAME = "edgecompress-search"


RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "oracle", "mssql")


def study_dir(out_dir) -> Path:
    """Where a build's own study lives: `<out>/.edgecompress/study/`."""
    return Path(out_dir) / ".edgecompress" / "study"


def describe_url(url: str | None) -> str:
    """The storage for messages and the report: a URL without its password."""
    if not url:
        return "journal file under the build folder"

    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str | None, out_dir, *, heartbeat_s: int = HEARTBEAT_S, stale_s: int = STALE_S):
    """The study's storage: `url` (journal file path or RDB URL), or the build folder's journal file.

    An RDB storage beats Optuna's heartbeat every `heartbeat_s` and fails a trial silent for `stale_s`."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if not url or url.startswith("journal:") or url.endswith((".journal", ".log")):
        path = Path(url.removeprefix("journal:")) if url else study_dir(out_dir) / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    scheme = url.partition(":")[0].partition("+")[0]
    if scheme not in RDB_SCHEMES:
        raise EdgeCompressError(
            f"Received an invalid value for `storage`: {describe_url(url)!r}. Expected an RDB URL "
            f"({', '.join(s + '://...' for s in RDB_SCHEMES[:3])}) or a journal file (`journal:PATH`). SQLite only "
            "on a local disk: not over a network filesystem.")
    try:
        return _rdb_storage(url, heartbeat_s=heartbeat_s, stale_s=stale_s)
    except Exception as e:  # sqlalchemy's OperationalError, a missing driver (ModuleNotFoundError)...
        hint = (f" Install its driver (`pip install {'psycopg[binary]' if scheme == 'postgresql' else 'pymysql'}`)."
                if isinstance(e, ImportError) else " Check the host, port, user and that the database exists.")
        raise EdgeCompressError(f"Cannot open the study storage {describe_url(url)}: "
                                f"{type(e).__name__}: {str(e).splitlines()[0][:300]}.{hint}") from None


def _rdb_storage(url: str, attempts: int = 5, *, heartbeat_s: int = HEARTBEAT_S, stale_s: int = STALE_S):
    """Optuna's RDBStorage, retried while another process creates the same tables.

    Two processes opening a new database at once (a worker started before its
    search) race in `CREATE TABLE`: PostgreSQL answers the loser with a unique
    violation on `pg_type`. Table creation is idempotent once the winner is done.
    """
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=heartbeat_s,
                                              grace_period=stale_s, heartbeat_stale_trial_callback=retry_stale)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + attempt)


def open_study(storage, space, fingerprint: dict, *, seed=0, worker=0, name=STUDY_NAME, join=False,
               where: str = "this storage"):
    """Creates (or loads) the study; refuses one whose fingerprint differs from ours.

    With `join` (a worker), the study must exist. Raises `EdgeCompressError`
    naming what differs: another space, teacher, data, seed, limit or versions
    (`where` names the storage in messages, without its password).
    """
    import optuna

    sampler = make_sampler(space, seed, worker)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if join and name not in names:
        raise EdgeCompressError(f"No study {name!r} in that storage (it has {names or 'none'}). Start the search "
                                "first (`invoke build-edge --search ... --storage URL`), then the workers.")
    if name in names:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        theirs = study.user_attrs.get(records.FINGERPRINT) or {}
        diff = [k for k in sorted(set(theirs) | set(fingerprint)) if theirs.get(k) != fingerprint.get(k)]
        if diff:
            what = "; ".join(f"{k}: study {theirs.get(k)!r}, here {fingerprint.get(k)!r}" for k in diff)
            raise EdgeCompressError(
                f"The study {name!r} in {where} was made by another "
                f"search ({what}). Resume with the same space, teacher and data; or start a new study "
                f"(`--study NAME`), or remove the build folder's .edgecompress/study/ to start over.")
        return study
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=["maximize", "minimize"], load_if_exists=True)
    study.set_user_attr(records.FINGERPRINT, fingerprint)
    return study


def fingerprint(teacher, dataset, space: SearchSpace, pixels, *, seed=0, max_accuracy_drop=None,
                max_latency_ms=None, margin_se=None, size="gzip", strip_names=False) -> dict:
    """What a study is made of; a worker whose own differ may not join (`open_study`)."""
    import numpy as np

    from edgecompress.recipes.cache import versions

    h = hashlib.sha256()
    for w in teacher.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return {"teacher": h.hexdigest()[:16], "data": dataset.fingerprint()[:16], "space": space.fingerprint(),
            "calibration": hashlib.sha256(pixels.tobytes()).hexdigest()[:16], "seed": seed,
            "max_accuracy_drop": max_accuracy_drop,
            **({"max_latency_ms": max_latency_ms} if max_latency_ms is not None else {}),
            **({"margin_se": margin_se} if margin_se else {}),
            **({"size": size} if size != "gzip" else {}),  # what the objective minimizes (a study before: gzip)
            **({"strip_names": True} if strip_names else {}),  # files without names (`lite.strip`)
            "versions": hashlib.sha256(json.dumps(versions(), sort_keys=True).encode()).hexdigest()[:16]}
