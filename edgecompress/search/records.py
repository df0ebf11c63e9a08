"""What a study holds between processes, typed: a trial's record and the study's setup, written and read here only.

A trial's worker, the search that collects it, the stop rule, the ladder and the stale-trial check all read
the same frozen `TrialRecord`, kept as one Optuna user attribute (`RECORD`) and versioned
(`RECORD_VERSION`); the study's setup (`StudySetup`: the deadline, the judging split, the baseline a trial
is measured against, the options a joining worker rebuilds its side from) likewise (`SETUP`). What several
processes write at different times stays in keys of its own, named here: a running trial's `HEARTBEAT`,
and the study's `READY`, `STOP`, `STOPPED` and `LADDER_SKIPPED`.

Example:

    update(trial, name="prune-50_int8", seconds=12.5)
    read(trial).name  # "prune-50_int8"
"""

from __future__ import annotations

import dataclasses

from edgecompress.configs import Config
from edgecompress.errors import EdgeCompressError

RECORD = "record"  # a trial's `TrialRecord`
SETUP = "setup"  # the study's `StudySetup`
HEARTBEAT = "heartbeat"  # a running trial's last beat (`stale.Heartbeat`), written by its own thread
READY = "ready"  # the study's setup is written: workers may join
STOP = "stop"  # a worker asks every other to stop
STOPPED = "stopped"  # why the loop stopped (`stop.stalled`, the budget, the trial count)
LADDER_SKIPPED = "ladder_skipped"  # rung name -> why it was skipped (`ladder`)
FINGERPRINT = "fingerprint"  # what the study was made for (`study.fingerprint`)
LAUNCH = "launch"  # `launch:<token>:<index>`: a local worker started (`worker.wait_for_local_workers`)

RECORD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class StageScore(Config):
    """One stage of a trial's recipe as it ended: its judged metric (`lite.tasks`), seconds, and whether it
    came from the stage cache."""

    stage: str
    metric: float
    seconds: float = 0.0
    cached: bool = False


@dataclasses.dataclass(frozen=True)
class EarlyStop(Config):
    """Why a trial stopped after a stage (`objective.early_stop_floor`): its judged metric under the floor."""

    stage: str
    index: int
    metric: float
    floor: float


@dataclasses.dataclass(frozen=True)
class TrialRecord(Config):
    """A trial's record: what it ran, who ran it, how it ended and what its file measured.

    Args:
        version: `RECORD_VERSION` when written.
        config: Its recipe and scheme's key (`recipes.recipe.config_key`): equal keys, the same file.
        name: The recipe's name (a ladder rung's: `prune-50`).
        choice: The sampled parameters, by the space's names.
        rung: The ladder rung it runs, if any.
        worker: `host:pid` of the process that ran it.
        tf_threads: TensorFlow's intra-op threads in that process (0: every core).
        duplicate_of: The finished trial with the same `config` whose result it took.
        stages: Each stage's `StageScore`, in order.
        stopped_early: The `EarlyStop` that ended it, if any.
        ended: Why a stage ended its branch (a number that cannot be true, a stage with nothing to do).
        error: Its failure, for a failed trial.
        suspect: A gain too large to be true, said beside the file.
        seconds: Wall time.
        artifact: Its file's `results.Artifact` as a dict, with the artifact store's `artifact_id`.
        judged: Its file's metric on the judging split.
        over_limit: Points over the accuracy limit, margin included (<= 0: within); None without a limit.
        margin: The margin (paired standard errors times `margin_se`) in points.
        over_latency: Milliseconds of p50 over `--max-latency-ms` (<= 0: within).
        int8_recovery: The float layers of its selective-int8 file, when that replaced its int8 file.
        retry_of: The trial whose worker died and whose parameters this one runs again.
        retry_reason: Who ran that one, when it was seen, and whether it was interrupted.
        retries: How many times these parameters were queued again.
    """

    version: int = RECORD_VERSION
    config: str | None = None
    name: str | None = None
    choice: dict | None = None
    rung: str | None = None
    worker: str | None = None
    tf_threads: int | None = None
    duplicate_of: int | None = None
    stages: tuple[StageScore, ...] = ()
    stopped_early: EarlyStop | None = None
    ended: str | None = None
    error: str | None = None
    suspect: str | None = None
    seconds: float = 0.0
    artifact: dict | None = None
    judged: float | None = None
    over_limit: float | None = None
    margin: float = 0.0
    over_latency: float | None = None
    int8_recovery: dict | None = None
    retry_of: int | None = None
    retry_reason: dict | None = None
    retries: int = 0

    def __post_init__(self):
        if self.version > RECORD_VERSION:
            raise EdgeCompressError(f"Received a trial record of version {self.version}, newer than this "
                                    f"edgecompress reads ({RECORD_VERSION}). Upgrade edgecompress on this machine "
                                    "to join or collect the study.")
        object.__setattr__(self, "stages", tuple(StageScore.from_dict(s) if isinstance(s, dict) else s
                                                 for s in self.stages))
        if isinstance(self.stopped_early, dict):
            object.__setattr__(self, "stopped_early", EarlyStop.from_dict(self.stopped_early))

    @property
    def finished_elsewhere(self) -> bool:
        """Whether its result was another trial's (a duplicate)."""
        return self.duplicate_of is not None


@dataclasses.dataclass(frozen=True)
class StudySetup(Config):
    """What the search that made a study wrote for its workers, once, before they start.

    Args:
        holdout: Where trials are judged (`holdout.judging_split`): "test" or "training".
        deadline: The loop's end, seconds since the epoch.
        artifacts: The artifact store's folder.
        baseline: The model's float32 file's metric on the judging split.
        baseline_terms: Its per-example terms there (`evaluation.pack_terms`), for each file's paired error.
        options: The `BuildOptions` a joining worker rebuilds its side from (paths made absolute), or None.
    """

    holdout: str = "test"
    deadline: float = 0.0
    artifacts: str = ""
    baseline: float = 0.0
    baseline_terms: str | None = None
    options: dict | None = None


def read(trial) -> TrialRecord:
    """`trial`'s record (an Optuna `Trial` or `FrozenTrial`); an empty one for a trial that has none yet."""
    raw = trial.user_attrs.get(RECORD)
    return TrialRecord() if raw is None else TrialRecord.from_dict(raw)


def update(trial, **changes) -> TrialRecord:
    """Writes `trial`'s record with `changes`; returns it. Only the process running the trial calls this."""
    record = dataclasses.replace(read(trial), **changes)
    trial.set_user_attr(RECORD, record.to_dict())
    return record


def queued(record: TrialRecord) -> dict:
    """The user attributes `study.enqueue_trial` takes for a trial that starts with `record` (a ladder rung,
    a retry)."""
    return {RECORD: record.to_dict()}


def write_setup(study, setup: StudySetup) -> None:
    study.set_user_attr(SETUP, setup.to_dict())


def read_setup(study) -> StudySetup:
    """The study's setup; refuses a study that has none (made by another version, or not ready yet)."""
    raw = study.user_attrs.get(SETUP)
    if raw is None:
        raise EdgeCompressError(f"Study {study.study_name!r} has no setup: it was made by an edgecompress from "
                                "before typed study records, or its search has not started. Start a new study "
                                "(another --study name or --out folder).")
    return StudySetup.from_dict(raw)
