"""The closed loop: held-out judging images, the ladder, heads, and numbers that cannot be true.

Fast tests check the logic on arrays, Optuna's in-memory studies and tiny
Keras models; the slow ones train tiny seeded models (a few seconds each)
and run `invoke build-edge --model` with no other flag.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_invoke

from edgecompress.errors import EdgeCompressError
from edgecompress.search.holdout import MIN_JUDGED, judging_split
from edgecompress.search.space import SearchSpace, load_space

LADDER_SPACE = {
    "name": "l",
    "stages": [{"stage": "prune", "final_sparsity": 0.5, "epochs": 1}],
    "grid": {"prune": [True, False], "prune.final_sparsity": [0.5, 0.75]},
    "quantize": ["int8", "dynamic"],
    "ladder": [{"name": "ptq", "choice": {"prune": False}},
               {"name": "p50", "choice": {"prune": True}},
               {"name": "p75", "after": "p50", "choice": {"prune": True, "prune.final_sparsity": 0.75}},
               {"name": "p75-dyn", "after": "p75", "choice": {"prune.final_sparsity": 0.75, "quantize": "dynamic"}}],
}


def _dataset(n_train=400, n_test=300, classes=3, val=None, seed=0):
    from edgecompress.configs import Preprocessing
    from edgecompress.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    x = lambda n: rng.integers(0, 255, (n, 8, 8, 1), dtype=np.uint8)  # noqa: E731
    y = lambda n: np.arange(n) % classes  # noqa: E731
    xv, yv = (x(val), y(val)) if val else (None, None)
    return Dataset("t", x(n_train), y(n_train), x(n_test), y(n_test), tuple("abc"[:classes]),
                   Preprocessing(8, 8, 1), xv, yv)


# ---------------------------------------------------------------- judging on held-out images

def test_without_a_validation_split_half_the_test_split_judges_and_the_other_half_reports():
    ds = _dataset(n_test=300)
    judge, report, how = judging_split(ds, load_space("auto"), seed=0)
    assert len(judge.y_test) == 150 and len(report.y_test) == 150 and how["holdout"] == "test"
    both = np.concatenate([judge.x_test, report.x_test]).reshape(300, -1)
    assert len({r.tobytes() for r in both}) == 300  # disjoint: no image judges and reports
    assert np.bincount(judge.y_test).tolist() == [50, 50, 50]  # stratified
    assert len(judge.y_train) == 400  # trials train on every training image: none of them judges
    again, _, _ = judging_split(ds, load_space("auto"), seed=0)
    assert np.array_equal(again.y_test, judge.y_test) and np.array_equal(again.x_test, judge.x_test)  # seeded


def test_the_datas_own_validation_split_judges_and_the_whole_test_split_reports():
    ds = _dataset(n_test=300, val=240)
    judge, report, how = judging_split(ds, load_space("auto"), seed=0)
    assert np.array_equal(judge.x_test, ds.x_val) and np.array_equal(report.x_test, ds.x_test)
    assert how["judge"] == "validation split of the data" and how["report_count"] == 300


def test_a_benchmark_teacher_trained_without_them_is_judged_on_training_images():
    ds = _dataset(n_train=1200)
    judge, report, how = judging_split(ds, load_space("auto"), seed=0, holdout="training")
    assert len(judge.y_test) == 120 and len(judge.y_train) == 1080 and report is ds  # 10%, stratified per class
    assert "training images" in how["judge"]


def test_too_few_held_out_images_are_refused_naming_their_standard_error():
    with pytest.raises(EdgeCompressError, match=r"Only 45 held-out images.*2.2 points.*standard error up to "
                                                 r"7.5 points.*val/"):
        judging_split(_dataset(n_test=90), load_space("auto"))
    assert MIN_JUDGED == 100


def test_a_val_folder_beside_train_and_test_is_the_validation_split_not_a_class(tmp_path):
    from conftest import write_png

    from edgecompress.data.loading import load_dataset

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 3), ("test", 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                write_png(tmp_path / "d" / split / c / f"{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8), "L")
    ds = load_dataset(tmp_path / "d")
    assert ds.class_names == ("cat", "dog") and len(ds.y_train) == 8 and len(ds.y_test) == 4
    assert ds.y_val.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "d" / "val" / "bird").mkdir()
    with pytest.raises(EdgeCompressError, match=r"val has class folders \['bird', 'cat', 'dog'\].*same class"):
        load_dataset(tmp_path / "d")


def test_train_and_val_folders_alone_hold_out_the_validation_images(tmp_path):
    from conftest import write_png

    from edgecompress.data.loading import load_dataset

    for split, n in (("train", 4), ("validation", 3)):
        for c in ("a", "b"):
            for i in range(n):
                write_png(tmp_path / split / c / f"{i}.png", np.full((8, 8), 40 * i, np.uint8), "L")
    ds = load_dataset(tmp_path)
    assert ds.class_names == ("a", "b") and len(ds.y_train) == 8 and len(ds.y_test) == 6 and ds.x_val is None


def test_an_npz_may_carry_its_validation_split(tmp_path):
    from edgecompress.data.loading import load_dataset

    ds = _dataset(val=30)
    p = tmp_path / "d.npz"
    np.savez(p, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test, x_val=ds.x_val,
             y_val=ds.y_val)
    back = load_dataset(p)
    assert np.array_equal(back.x_val, ds.x_val) and back.describe()["val_count"] == 30
    np.savez(p, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test, x_val=ds.x_val)
    with pytest.raises(EdgeCompressError, match="only one of `x_val` and `y_val`"):
        load_dataset(p)


# ---------------------------------------------------------------- the ladder

def test_a_rung_is_the_template_with_its_own_values():
    space = SearchSpace.from_dict(LADDER_SPACE)
    ptq, p50, p75, dyn = space.ladder
    assert space.recipe(space.rung_choice(ptq)).stages == ()
    assert space.rung_choice(p75) == {"prune": True, "prune.final_sparsity": 0.75, "quantize": "int8"}
    assert space.rung_params(dyn)["quantize"] == "dynamic"


@pytest.mark.parametrize("rung, needle", [
    ({"name": "x", "after": "nope", "choice": {}}, r"`after` names 'nope', which is not an earlier rung"),
    ({"name": "x", "choice": {"prune.epochs": 3}}, r"\['prune.epochs'\] are not parameters of the space"),
    ({"name": "ptq", "choice": {}}, "two rungs have this name"),
    ({"name": "x", "choice": {}, "when": 1}, "a rung is"),
])
def test_bad_rungs_name_the_rung_and_the_fix(rung, needle):
    with pytest.raises(EdgeCompressError, match=needle):
        SearchSpace.from_dict({**LADDER_SPACE, "ladder": LADDER_SPACE["ladder"] + [rung]})


def _finish(study, rung, params, *, over=None, state=None, slower=None):
    """Adds a finished trial for `rung`, `over` points past the limit (None: no constraint), `slower` ms past
    --max-latency-ms (None: no latency limit)."""
    import optuna

    from edgecompress.search import records

    record = records.TrialRecord(rung=rung, over_limit=over, over_latency=slower)
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=_distributions(params), values=None if state else [0.9, 1000.0],
        user_attrs=records.queued(record), state=state or optuna.trial.TrialState.COMPLETE))


def _distributions(params):
    import optuna

    return {k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()}


def test_the_ladder_climbs_only_from_rungs_that_met_the_limit():
    import optuna

    from edgecompress.search import records
    from edgecompress.search.ladder import enqueue_next_rung

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.from_dict(LADDER_SPACE)
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert enqueue_next_rung(study, space) == "ptq"
    assert enqueue_next_rung(study, space) is None  # one waits already
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0]
    assert waiting.system_attrs["fixed_params"]["prune"] is False and records.read(waiting) == records.TrialRecord(rung="ptq")
    study = optuna.create_study(directions=["maximize", "minimize"])
    _finish(study, "ptq", space.rung_params(space.ladder[0]), over=2.0)  # PTQ missed: the next rung has no parent
    assert enqueue_next_rung(study, space) == "p50"
    study = optuna.create_study(directions=["maximize", "minimize"])
    _finish(study, "ptq", space.rung_params(space.ladder[0]), over=-0.5)
    _finish(study, "p50", space.rung_params(space.ladder[1]), over=0.8)  # missed by 0.8 points
    assert enqueue_next_rung(study, space) is None  # p75 climbs from p50, p75-dyn from p75: both skipped
    assert study.user_attrs["ladder_skipped"] == {
        "p75": "climbs from p50, which missed the accuracy limit by 0.80 points",
        "p75-dyn": "climbs from p75, which was skipped"}
    study = optuna.create_study(directions=["maximize", "minimize"])
    _finish(study, "p50", space.rung_params(space.ladder[1]), state=optuna.trial.TrialState.PRUNED)
    _finish(study, "ptq", space.rung_params(space.ladder[0]), over=-1.0)
    enqueue_next_rung(study, space)
    assert study.user_attrs["ladder_skipped"]["p75"] == "climbs from p50, which was stopped early: it could not recover"


def test_with_a_latency_limit_the_model_missed_rungs_of_unstructured_levers_alone_are_skipped():
    """Pruning leaves a CPU the model's dense work: once the model's own files are over --max-latency-ms, a
    rung that only prunes cannot meet it, and the budget goes to the rung that removes work (a student)."""
    import optuna

    from edgecompress.search.ladder import enqueue_next_rung

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.from_dict({
        "name": "s", "stages": [{"stage": "distill", "width": 0.5, "epochs": 1},
                                {"stage": "prune", "final_sparsity": 0.5, "epochs": 1}],
        "grid": {"distill": [True, False], "prune": [True, False]}, "quantize": ["int8", "dynamic"],
        "ladder": [{"name": "model", "choice": {"distill": False, "prune": False}},
                   {"name": "model-dyn", "choice": {"distill": False, "prune": False, "quantize": "dynamic"}},
                   {"name": "p50", "choice": {"distill": False, "prune": True}},
                   {"name": "p50-dyn", "after": "p50", "choice": {"distill": False, "prune": True, "quantize": "dynamic"}},
                   {"name": "student", "choice": {"distill": True, "prune": True}}]})

    def after(**slower):
        study = optuna.create_study(directions=["maximize", "minimize"])
        for i, (rung, ms) in enumerate(slower.items()):
            _finish(study, rung.replace("_", "-"), space.rung_params(space.ladder[i]), over=-1.0, slower=ms)
        return study, enqueue_next_rung(study, space)

    study, queued = after(model=0.05, model_dyn=0.02)  # both 20-50 us over the limit
    assert queued == "student" and study.user_attrs["ladder_skipped"] == {
        "p50": "pulls only unstructured levers (the model's dense work, no faster on a CPU), and model-dyn, the "
               "fastest file of that work, was 0.020 ms over --max-latency-ms",
        "p50-dyn": "climbs from p50, which was skipped"}
    assert after(model=0.05, model_dyn=-0.01)[1] == "p50"  # one of the model's files was fast enough
    study = optuna.create_study(directions=["maximize", "minimize"])  # no latency limit: the ladder as before
    _finish(study, "model", space.rung_params(space.ladder[0]), over=-1.0)
    _finish(study, "model-dyn", space.rung_params(space.ladder[1]), over=-1.0)
    assert enqueue_next_rung(study, space) == "p50"


def test_a_model_without_a_recipe_runs_the_closed_loop_with_a_limit_and_a_recipe_runs_open():
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import closed_loop

    loop = closed_loop(BuildOptions(model="m.keras"))
    assert loop.search == "auto" and loop.max_accuracy_drop == 1.0
    assert closed_loop(BuildOptions(model="m.keras", max_accuracy_drop=2.5)).max_accuracy_drop == 2.5
    fixed = closed_loop(BuildOptions(model="m.keras", recipe="default"))
    assert fixed.search is None and fixed.max_accuracy_drop is None
    assert closed_loop(BuildOptions()).search is None  # the bundled default keeps its recipe
    own = closed_loop(BuildOptions(model="m.keras", search="default"))
    assert own.search == "default" and own.max_accuracy_drop == 1.0


# ---------------------------------------------------------------- heads

def test_one_sigmoid_unit_is_class_one_above_a_half_and_logits_argmax_like_probabilities():
    from edgecompress.lite.numerics import labels

    assert labels(np.array([[0.2], [0.7], [0.5]])).tolist() == [0, 1, 0]
    assert labels(np.array([[-3.0, 2.0, 1.0], [5.0, -1.0, 0.0]])).tolist() == [1, 0]


def _head_model(activation, units=3, softmax_layer=False):
    from edgecompress.models.backend import keras

    inp = keras.Input((8,))
    x = keras.layers.Dense(units, activation=None if softmax_layer else activation)(inp)
    if softmax_layer:
        x = keras.layers.Softmax()(x)
    return keras.Model(inp, x)


def test_the_head_is_read_from_the_last_layer():
    from edgecompress.models.keras_io import output_head

    assert output_head(_head_model("softmax")) == "softmax"
    assert output_head(_head_model(None, softmax_layer=True)) == "softmax"
    assert output_head(_head_model(None)) == "logits" and output_head(_head_model("linear")) == "logits"
    assert output_head(_head_model("sigmoid", units=1)) == "sigmoid"
    assert output_head(_head_model("sigmoid")) == "sigmoids"  # a label per unit: the multilabel task
    with pytest.raises(EdgeCompressError, match="one unit with no activation.*sigmoid"):
        output_head(_head_model(None, units=1))


# ---------------------------------------------------------------- numbers that cannot be true

def test_a_stage_at_chance_or_with_nan_weights_stops_with_its_likely_cause():
    from edgecompress.models.sanity import ImplausibleResult, check_stage

    with pytest.raises(ImplausibleResult, match=r"After distill the model's top-1 is 10.00%, at chance.*head"):
        check_stage("distill", 0.10, num_classes=10)
    check_stage("distill", 0.16, num_classes=10)  # 1.6x chance: poor, not broken
    model = _head_model("softmax")
    w = model.get_weights()
    w[0][0, 0] = np.nan
    model.set_weights(w)
    with pytest.raises(ImplausibleResult, match="NaN or infinite weights.*diverged"):
        check_stage("prune", 0.9, num_classes=3, model=model)


def test_a_file_far_above_its_source_is_a_warning_and_a_float_file_far_from_keras_stops():
    from edgecompress.models.sanity import ImplausibleResult, check_float_file, suspect_gain

    warn = suspect_gain("int8", 0.855, 0.50, 1000)  # the keyword spotter of issue 21: +35 points
    assert "35.50 points above" in warn and "under-trained" in warn and "--scale" in warn
    assert suspect_gain("int8", 0.895, 0.885, 2000) is None  # the bundled default's student beats its teacher by 1
    assert suspect_gain("int8", 0.70, 0.50, 40) is None  # 20 points on 40 images is 2 standard errors: noise
    with pytest.raises(ImplausibleResult, match=r"float32 .tflite scores 10.00% but the Keras model 95.50%"):
        check_float_file(0.955, 0.10, 1000)
    check_float_file(0.8145, 0.8145, 2000)


# ---------------------------------------------------------------- trained, tiny

def _toy(n, seed, classes=3):
    """Images whose class is which third of the picture is bright: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, 12, 12, 1)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 4 * c:4 * c + 4] += 150
    return x, y


def _keras3_logits_model(path, classes=3):
    """A Keras 3 model ending in a Dense with no softmax, trained with `from_logits=True`, behind a
    Normalization layer adapted on raw pixels: the tutorials' way."""
    import keras

    x, y = _toy(600, 0, classes)
    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization()
    norm.adapt(x.astype("float32"))
    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(norm(inp))
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(classes)(h))
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x.astype("float32"), y, epochs=12, batch_size=32, verbose=0)
    model.save(path)
    return path


def _npz(path, classes=3, n_test=240):
    xtr, ytr = _toy(600, 0, classes)
    xte, yte = _toy(n_test, 1, classes)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


@pytest.mark.slow
def test_a_logits_head_is_distilled_and_pruned_from_logits_and_stays_a_logits_model(tmp_path):
    from edgecompress.models import keras_io, training
    from edgecompress.techniques.distill import distill
    from edgecompress.techniques.prune import prune
    from edgecompress.techniques.configs import DistillConfig, PruneConfig
    from edgecompress.models.user import open_model

    user = open_model(_keras3_logits_model(tmp_path / "m.keras"), _npz(tmp_path / "d.npz"))
    assert keras_io.output_head(user.model) == "logits" and user.describe()["head"] == "logits"
    keras_top1 = training.keras_metric(user.model, user.dataset)
    assert keras_top1 > 0.9, keras_top1
    student, m = distill(user.model, user.dataset, DistillConfig(width=0.5, epochs=8, patience=3, baseline=False),
                         verbose=0)
    # Before heads were read the distiller took log(p + 1e-8) of negative logits: NaN, and chance (33%).
    assert keras_io.output_head(student) == "logits" and m["accuracy"] > 0.85, m
    assert np.isfinite(m["student_loss"]) and 1 <= m["epochs"] <= 8
    pruned, pm = prune(user.model, user.dataset, PruneConfig(final_sparsity=0.5, epochs=2), verbose=0)
    assert keras_io.output_head(pruned) == "logits" and pm["accuracy"] > 0.85, pm


def test_a_students_batchnorm_momentum_is_capped_where_the_teachers_is_higher():
    from edgecompress.models.backend import keras

    from edgecompress.techniques.distill import _make_student
    from edgecompress.techniques.configs import DistillConfig

    inp = keras.Input((8, 8, 1))
    x = keras.layers.BatchNormalization(momentum=0.999)(keras.layers.Conv2D(8, 3)(inp))
    x = keras.layers.BatchNormalization(momentum=0.9)(keras.layers.Conv2D(8, 3)(keras.layers.ReLU()(x)))
    teacher = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    student, _ = _make_student(teacher, DistillConfig(width=0.5), seed=0)  # capped at 0.99 by default
    assert [l.momentum for l in student.layers if hasattr(l, "moving_mean")] == [0.99, 0.9]
    student, _ = _make_student(teacher, DistillConfig(width=0.5, bn_momentum=None), seed=0)
    assert [l.momentum for l in student.layers if hasattr(l, "moving_mean")] == [0.999, 0.9]


@pytest.mark.slow
def test_a_sigmoid_head_trains_with_its_own_loss(tmp_path):
    from edgecompress.models.backend import keras

    from edgecompress.models import keras_io, training
    from edgecompress.configs import Preprocessing, TrainConfig
    from edgecompress.data.dataset import Dataset
    from edgecompress.techniques.distill import distill
    from edgecompress.techniques.configs import DistillConfig

    x, y = _toy(600, 0, classes=2)
    xt, yt = _toy(200, 1, classes=2)
    ds = Dataset("bin", x, y, xt, yt, ("dark", "bright"), Preprocessing(12, 12, 1))
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 1))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(8, "relu")(h)))
    training.train(model, ds, TrainConfig(epochs=10, learning_rate=0.01), verbose=0)
    assert keras_io.output_head(model) == "sigmoid" and training.keras_metric(model, ds) > 0.9
    student, m = distill(model, ds, DistillConfig(width=0.5, epochs=20, learning_rate=0.01, baseline=False), verbose=0)
    assert m["accuracy"] > 0.9 and keras_io.output_head(student) == "sigmoid", m


@pytest.mark.slow
def test_build_edge_with_a_model_and_no_flag_runs_the_ladder_and_selects_on_held_out_images(tmp_path, root):
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(_keras3_logits_model(tmp_path / "m.keras")), "--data",
                       str(_npz(tmp_path / "d.npz")), "--budget-minutes", "2.5", "--out", str(out), "--runs", "10"],
                      cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Closed loop (no --recipe)" in proc.stderr and "Head: logits" in proc.stderr
    assert "(ladder: model): held-out top-1" in proc.stderr and ": kept" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["constraints"]["max_accuracy_drop"] == 1.0 and report["search"]["space"]["name"] == "auto"
    val = report["search"]["validation"]
    assert val["judge_count"] == 120 and val["report_count"] == 120 and report["dataset"]["count"] == 120
    rungs = [c["rung"] for c in report["search"]["candidates"] if c.get("rung")]
    assert rungs[:2] == ["model", "model-dynamic"]
    base = report["artifacts"][0]
    sel = next(a for a in report["artifacts"] if a["name"] == report["selected"])
    # The promise, certified on the half of the test split the search never scored (`builder.confirm`): the
    # walk starts at the model's own file, and the selected file is the smallest it certified.
    conf = report["confirmation"]
    assert conf["selected"] == sel["name"] and conf["steps"][0]["name"] == "teacher_float32"
    assert conf["count"] == 120 and conf["groups"] is None and conf["confidence"] == 0.95
    certified = [s for s in conf["steps"] if s["certified"]]
    assert all(s["upper"] <= 1.0 for s in certified) and report["size_measure"] == "file" and sel["size_bytes"] == min(s["size"] for s in certified)
    assert all("confirm" in a for a in report["artifacts"]) and base["confirm"]["se"] == 0.0
    assert all(a["val_paired_se"] >= 0 for a in report["artifacts"][1:] if "val_accuracy" in a)
    assert report["search"]["stopped"]
    assert not any("correct" in a for a in report["artifacts"])  # per-image bits stay in the cache
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,status,file,name") and len(rows) == len(report["search"]["candidates"]) + 1
    assert all(Path(a["path"]).parent.name == "trials" for a in report["artifacts"][1:])
    md = (out / "report.md").read_text()
    assert "## How the selected file was confirmed" in md and "assumed independent" in md
    assert "<h2>How the selected file was confirmed</h2>" in (out / "report.html").read_text()
    assert "### From the model to the selected file" in md and "1. `model` (model_int8)" in md
    assert f"Selected: **{sel['name']}**" in md
    # The report opens on its answer: the selected file and its promise, the path from the model to it, how it was
    # confirmed; every trial follows, folded, each file linking to the recipe that made it.
    assert md.index("## Selected:") < md.index("### From the model") < md.index("## How the selected file was confirmed")
    from edgecompress.recipes.recipe import load_recipe

    for a in report["artifacts"][1:]:
        stem = Path(a["path"]).stem
        assert f"[{stem}](trials/{stem}.recipe.json)" in md
        assert load_recipe(str(out / "trials" / f"{stem}.recipe.json")).stages is not None
    # Judged again on examples drawn afresh (`scripts/fresh_check.py`, what the docs' results files hold): the
    # confirmed rule's file is the build's selection, and every file is scored on the fresh draw.
    xf, yf = _toy(200, 7, 3)
    np.savez(tmp_path / "fresh.npz", x_test=xf, y_test=yf)
    done = subprocess.run([sys.executable, "scripts/fresh_check.py", str(out), str(tmp_path / "fresh.npz"), "--all",
                           "--json", str(tmp_path / "fresh.json")], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads((tmp_path / "fresh.json").read_text())
    assert fresh["command"].startswith("python scripts/fresh_check.py") and fresh["fresh_count"] == 200
    assert fresh["fresh_groups"] is None  # the fresh .npz names no groups
    assert fresh["rules"]["confirmed"]["file"] == sel["name"] and fresh["rules"]["confirmed"]["file_bytes"] == sel["size_bytes"]
    assert fresh["all"]["files"] == len(report["artifacts"]) - 1 and 0 <= fresh["all"]["over_limit_on_fresh"] <= fresh["all"]["files"]
    assert "files lose more than 1 on the fresh data" in done.stderr
    if sel["name"] != report["baseline"]:
        from support.browser import CHROMIUM, NEEDS, dom

        if CHROMIUM is None:
            pytest.skip(NEEDS)
        page = dom((out / "report.html").as_uri(), window=(1280, 900)).stdout
        seen = page.split('data-first-screen="')[1].split('"')[0].split()
        assert seen == ["selected-table", "front"], seen  # the answer and the front, before any scrolling


@pytest.mark.slow
def test_too_few_held_out_images_for_the_closed_loop_exit_2_and_keep_the_previous_build(tmp_path, root):
    out = tmp_path / "out"
    out.mkdir()
    from conftest import PLACEHOLDER_REPORT

    (out / "report.json").write_text(PLACEHOLDER_REPORT)
    proc = run_invoke(["build-edge", "--model", str(_keras3_logits_model(tmp_path / "m.keras")), "--data",
                       str(_npz(tmp_path / "d.npz", n_test=60)), "--out", str(out), "--quiet"], cwd=root)
    assert proc.returncode == 2 and "Only 30 held-out images" in proc.stderr and "--recipe default" in proc.stderr
    assert (out / "report.json").read_text() == PLACEHOLDER_REPORT and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the examples we did not tune on

@pytest.mark.slow
def test_the_letters_example_is_a_logits_resnet_with_its_own_validation_folder(tmp_path):
    from edgecompress.models import keras_io
    from edgecompress.data.loading import load_dataset
    from benchmarks.examples import SyntheticConfig, make_letters
    from edgecompress.models.pixelscale import declared_scale

    config = SyntheticConfig(train=120, val=40, test=40, size=32, epochs=1, min_accuracy=0.0)
    summary = make_letters(tmp_path, config)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["test", "train", "val"]
    again = tmp_path / "again"
    make_letters(again, config)  # seeded: the same images
    first = sorted((tmp_path / "images" / "val").rglob("*.png"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in sorted((again / "images" / "val").rglob("*.png"))]
    # One epoch on 120 images is near chance (open_model would stop it): read the parts it reads.
    model = keras_io.load_model(tmp_path / "model.keras")
    assert keras_io.output_head(model) == "logits" and summary["params"] > 100_000
    assert declared_scale(model)[0] == "raw"  # Normalization adapted on raw pixels
    assert len(load_dataset(tmp_path / "images").y_val) == 40


@pytest.mark.slow
def test_the_shapes_example_nests_mobilenet_v3_with_its_own_rescaling(tmp_path):
    from edgecompress.models import keras_io
    from edgecompress.models import translate
    from edgecompress.data.loading import load_dataset
    from benchmarks.examples import SyntheticConfig, make_shapes
    from edgecompress.models.pixelscale import declared_scale

    make_shapes(tmp_path, SyntheticConfig(train=80, test=40, size=64, epochs=1, min_accuracy=0.0))
    import keras

    k3 = keras.saving.load_model(tmp_path / "model.keras")
    assert any(type(l).__name__ == "Functional" for l in k3.layers)  # the backbone, nested
    log = translate.TranslationLog()
    model = keras_io.load_model(tmp_path / "model.keras", log=log)  # translated to tf-keras and flattened
    assert log.source == "keras3" and log.flattened and keras_io.output_head(model) == "softmax"
    assert declared_scale(model)[0] == "raw"  # MobileNetV3's own Rescaling, inside the backbone
    ds = load_dataset(tmp_path / "images")
    assert ds.x_val is None and ds.x_train.shape == (80, 64, 64, 3) and len(ds.class_names) == 8


def _two_head_model(path):
    """A Keras 3 model of two outputs on one trunk: class scores (`cls`, softmax) and one value (`aux`, the
    image's mean brightness), trained together."""
    import keras

    x, y = _toy(600, 0)
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inp))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(h))
    model = keras.Model(inp, [keras.layers.Dense(3, activation="softmax", name="cls")(h),
                              keras.layers.Dense(1, name="aux")(h)])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    model.fit(x, [y, x.reshape(len(x), -1).mean(1, keepdims=True) / 255], epochs=15, verbose=0)
    model.save(path)
    return model


@pytest.mark.slow
def test_a_model_of_two_outputs_is_built_on_the_one_named_the_first_by_default(tmp_path, root):
    """`build-edge` on a two-output Keras 3 model builds, measures and ships its first output (`--output`
    names another), saying which outputs the files leave out; a name the model lacks is refused with its
    outputs."""
    model = _two_head_model(tmp_path / "m.keras")
    data = _npz(tmp_path / "d.npz")
    keras_top1 = float((model.predict(np.load(data)["x_test"], verbose=0)[0].argmax(1) == np.load(data)["y_test"]).mean())
    assert keras_top1 > 0.9
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "m.keras"), "--data", str(data), "--recipe",
                       "quantize-only", "--out", str(out), "--runs", "5"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "has 2 outputs (cls, aux): building 'cls', the first" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    arts = {a["name"]: a for a in report["artifacts"]}
    assert arts["float32"]["accuracy"] == pytest.approx(keras_top1, abs=1e-9)  # the cls head, exactly
    from edgecompress.lite.runtime import make_interpreter

    interp = make_interpreter(out / "int8.tflite")
    assert [tuple(d["shape"]) for d in interp.get_output_details()] == [(1, 3)]  # that output alone
    bad = run_invoke(["build-edge", "--model", str(tmp_path / "m.keras"), "--data", str(data), "--recipe",
                      "quantize-only", "--out", str(tmp_path / "o2"), "--output", "nope"], cwd=root)
    assert bad.returncode == 2 and "has no output 'nope'; its outputs are ['cls', 'aux']" in bad.stderr
