"""Groups (`data.groups`): read from an .npz or file names, found in overlapping windows, split whole, refused
when wrong (exit 2); and the search's stop rule (`search.stop`)."""

import numpy as np
import pytest

from edgecompress.configs import Features
from edgecompress.data import groups
from edgecompress.data.loading import load_dataset
from edgecompress.errors import EXIT_USAGE, EdgeCompressError


def _sensor_npz(path, with_groups=True, **extra):
    from benchmarks.sensors import _person, windows

    rng = np.random.default_rng(0)
    people = [_person(rng) for _ in range(10)]
    xtr, ytr, gtr = windows(people[:6], 4, rng, 0)
    xte, yte, gte = windows(people[6:], 4, rng, 6)
    arrays = dict(x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    if with_groups:
        arrays.update(groups_train=gtr, groups_test=gte)
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


def test_npz_groups_are_read_and_split_whole(tmp_path):
    a = _sensor_npz(tmp_path / "d.npz")
    ds = load_dataset(tmp_path / "d.npz", Features((128, 6)))
    assert ds.groups_source == groups.GIVEN and len(np.unique(ds.groups_test)) == 4
    judge, report, how = ds.held_out(seed=0)
    assert not set(judge.groups_test) & set(report.groups_test)  # no person on both sides
    assert how["judge_groups"] + how["report_groups"] == 4 and how["groups"] == groups.GIVEN
    assert len(judge.y_test) + len(report.y_test) == len(a["y_test"])
    val = ds.validation_split(0.3, seed=0)
    assert not set(val.groups_train) & set(val.groups_test)
    assert ds.describe()["groups"] == {"source": "given", "train": 6, "test": 4}
    plain = load_dataset(tmp_path / "d.npz", Features((128, 6)))
    assert plain.fingerprint() == ds.fingerprint()


def test_overlapping_windows_are_chained_without_groups(tmp_path, caplog):
    _sensor_npz(tmp_path / "d.npz", with_groups=False)
    with caplog.at_level("INFO"):
        ds = load_dataset(tmp_path / "d.npz", Features((128, 6)))
    assert ds.groups_source == groups.CHAINED
    assert len(np.unique(ds.groups_test)) == 4 * 6  # one recording per person and activity
    assert "chained into" in caplog.text and "24 groups in `x_test`" in caplog.text
    shuffled = np.random.default_rng(0).permutation(len(ds.y_test))
    assert groups.chain_windows(np.asarray(ds.x_test)[shuffled]) is None  # independent rows: no chains


@pytest.mark.parametrize("bad, match", [
    (dict(groups_test=np.arange(5)), r"`groups_test`.*5 group id\(s\).*96 examples in `x_test`"),
    (dict(groups_test=np.zeros(96, int)), r"`groups_test`.*in one group"),
    (dict(groups_val=np.arange(96)), r"`groups_val` but no `x_val`"),
])
def test_bad_groups_are_refused_with_exit_2(tmp_path, bad, match):
    _sensor_npz(tmp_path / "d.npz", **bad)
    with pytest.raises(EdgeCompressError, match=match) as e:
        load_dataset(tmp_path / "d.npz", Features((128, 6)))
    assert e.value.exit_code == EXIT_USAGE


def test_disjoint_groups():
    groups.check_disjoint(np.array([1, 2]), np.array([3, 4]), "d.npz")
    with pytest.raises(EdgeCompressError, match=r"1 group\(s\) of d.npz are in both.*e.g. 2"):
        groups.check_disjoint(np.array([1, 2]), np.array([2, 3]), "d.npz")
    with pytest.raises(EdgeCompressError, match="no groups"):
        groups.check_disjoint(None, np.array([2, 3]), "d.npz")


def test_x_y_npz_with_groups_tests_on_new_groups(tmp_path):
    a = _sensor_npz(tmp_path / "parts.npz")
    np.savez(tmp_path / "d.npz", x=np.concatenate([a["x_train"], a["x_test"]]),
             y=np.concatenate([a["y_train"], a["y_test"]]), groups=np.concatenate([a["groups_train"], a["groups_test"]]))
    ds = load_dataset(tmp_path / "d.npz", Features((128, 6)), test_fraction=0.3)
    assert not set(ds.groups_train) & set(ds.groups_test)


def test_image_folder_groups_from_file_name_prefixes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, people in (("train", "abc"), ("test", "def")):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for p in people:
                for k in range(2):
                    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(d / f"{p}__{k}.png")
    ds = load_dataset(tmp_path)
    assert ds.groups_source == groups.PREFIX and sorted(set(ds.groups_test)) == ["d", "e", "f"]
    (tmp_path / "test" / "cat" / "d__0.png").rename(tmp_path / "test" / "cat" / "plain.png")
    with pytest.raises(EdgeCompressError, match=r"name a group with a `<group>__` prefix but .*plain.png"):
        load_dataset(tmp_path)


def test_group_split_holds_whole_groups_and_keeps_one_each_side():
    g = np.repeat(np.arange(5), [50, 10, 10, 10, 20])
    rest, held = groups.split(g, 0.5, seed=3)
    assert not set(g[rest]) & set(g[held]) and len(rest) and len(held)
    with pytest.raises(EdgeCompressError, match="1 group"):
        groups.split(np.zeros(10), 0.5)


def test_stop_rule_counts_proposals_since_the_front_moved():
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from edgecompress.search import records
    from edgecompress.search.stop import proposals_since_front_moved, stalled

    def trial(n, acc, size, feasible=True, duplicate=False, state=TrialState.COMPLETE):
        t = create_trial(state=state, values=[acc, size] if state == TrialState.COMPLETE else None,
                         params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)},
                         user_attrs=records.queued(records.TrialRecord(over_limit=-1.0 if feasible else 1.0,
                                                                       duplicate_of=0 if duplicate else None)))
        t.number = n
        return t

    ts = [trial(0, 0.90, 1000), trial(1, 0.89, 500), trial(2, 0.88, 800),  # 2 is dominated by 1
          trial(3, 0.95, 100, feasible=False), trial(4, 0.89, 500, duplicate=True), trial(5, 0, 0, state=TrialState.FAIL)]
    assert proposals_since_front_moved(ts) == (3, 5)  # 2, 3 (over the limit) and 4 (a duplicate) did not move it
    ts.append(trial(6, 0.891, 490))  # 2% smaller and 0.1 point better than trial 1: noise, not progress
    assert proposals_since_front_moved(ts) == (4, 6)
    ts.append(trial(7, 0.895, 400))  # 20% smaller: progress
    assert proposals_since_front_moved(ts) == (0, 7)

    study = optuna.create_study(directions=["maximize", "minimize"])
    for t in ts[:5]:
        study.add_trial(t)
    assert stalled(study, 3).startswith("the judged front has not moved for 3 proposals")
    assert stalled(study, 4) is None and stalled(study, None) is None


def test_a_stage_holds_out_whole_groups_for_its_early_stop():
    """`split_validation` (every stage's held-out split): with the training groups, no group on both sides; without,
    the seeded split by example it always was."""
    from edgecompress.models.training import split_validation

    x, y = np.arange(200.0)[:, None], np.arange(200) % 4
    g = np.repeat(np.arange(20), 10)
    (xt, _), (xv, _) = split_validation(x, y, 0.1, 0, g)
    assert not set(g[xt[:, 0].astype(int)]) & set(g[xv[:, 0].astype(int)]) and 10 <= len(xv) <= 20
    (xt0, _), (xv0, _) = split_validation(x, y, 0.1, 0)
    assert len(xv0) == 20 and len(xt0) == 180
