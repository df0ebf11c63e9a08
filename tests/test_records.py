"""A study's records between processes: typed, versioned, round-tripped through a real Optuna storage."""

import json

import pytest

from edgecompress.errors import EdgeCompressError
from edgecompress.search import records
from edgecompress.search.records import EarlyStop, StageScore, StudySetup, TrialRecord


def test_a_trial_record_round_trips_through_json_and_an_optuna_storage(tmp_path):
    import optuna

    from edgecompress.search.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    full = TrialRecord(config="k", name="prune-50_int8", choice={"prune.final_sparsity": 0.5}, rung="p50",
                       worker="h:1", tf_threads=1, stages=(StageScore("prune", 0.81, 3.2, True),),
                       stopped_early=EarlyStop("prune", 0, 0.5, 0.6), seconds=4.5, artifact={"name": "a"},
                       judged=0.8, over_limit=-0.2, margin=0.3, over_latency=None, retries=2)
    assert TrialRecord.from_json(full.to_json()) == full
    study = optuna.create_study(storage=open_storage(None, tmp_path), directions=["maximize", "minimize"])
    trial = study.ask()
    records.update(trial, name="a")
    records.update(trial, stages=(StageScore("distill", 0.7),), judged=0.75)
    again = records.read(study.get_trials()[0])  # read back from the journal file
    assert again == TrialRecord(name="a", stages=(StageScore("distill", 0.7),), judged=0.75)
    assert records.read(study.ask()) == TrialRecord()  # a trial nothing was written for


def test_a_record_from_a_newer_edgecompress_is_refused_naming_the_fix():
    newer = {**TrialRecord().to_dict(), "version": records.RECORD_VERSION + 1}
    with pytest.raises(EdgeCompressError, match="Upgrade edgecompress"):
        TrialRecord.from_dict(json.loads(json.dumps(newer)))
    with pytest.raises(EdgeCompressError, match=r"Unknown parameter\(s\) \['val_accuracy'\]"):
        TrialRecord.from_dict({"val_accuracy": 0.9})  # an old bag of keys is not a record


def test_a_study_without_a_setup_is_refused_naming_the_fix():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    with pytest.raises(EdgeCompressError, match="Start a new study"):
        records.read_setup(study)
    records.write_setup(study, StudySetup(holdout="training", deadline=1.5, baseline=0.9))
    assert records.read_setup(study) == StudySetup(holdout="training", deadline=1.5, baseline=0.9)
