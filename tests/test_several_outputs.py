"""Models of several outputs measured each in one build (issue 21): labels `y_train/<output>`, one packed output
through the Keras stages (`models.packed.pack_outputs`), each output's metric in every file's record, the limit
on the output named by `--output` (the first by default), and the user's outputs in every file."""

import numpy as np
import pytest

from benchmarks import two_heads
from edgecompress.data.arrays import labelled_outputs
from edgecompress.data.loading import load_dataset
from edgecompress.errors import EdgeCompressError
from edgecompress.lite import scores, tasks

OUTPUTS = (tasks.Output("cls", "classification", 3, "softmax"), tasks.Output("box", "regression", 2, "values"))


@pytest.fixture(scope="module")
def two_output_files(tmp_path_factory):
    """A trained Keras 3 model of two outputs (3 classes, 2 values) and its data, seeded
    (`benchmarks.two_heads`)."""
    tmp = tmp_path_factory.mktemp("heads")
    return tmp, two_heads.make(tmp)


def test_a_task_of_several_outputs_is_a_name_that_measures_each_and_judges_one():
    name = tasks.several_outputs_name(OUTPUTS, "box")
    t = tasks.task(name)
    assert isinstance(t, tasks.SeveralOutputs) and t.metric == "R²" and t.outputs == OUTPUTS
    out = np.array([[.7, .2, .1, .1, .2], [.1, .8, .1, .5, .5], [.1, .1, .8, .9, .7], [.6, .3, .1, .3, .3]])
    y = np.array([[0, .1, .2], [2, .5, .4], [2, .9, .8], [0, .3, .2]])
    each = t.each(None, out, y)
    assert each["cls"] == {"metric": "top-1", "value": 0.75}
    assert each["box"]["value"] == pytest.approx(scores.r2_score(out[:, 3:], y[:, 1:]))
    assert t.score(None, out, y) == each["box"]["value"]  # judged on the output named
    assert t.terms(None, out, y).mean() == pytest.approx(each["box"]["value"])
    cls = tasks.task(tasks.several_outputs_name(OUTPUTS, "cls"))
    assert cls.predictions(out).tolist() == [0, 1, 2, 0] and cls.chance(0) == pytest.approx(1 / 3)
    assert cls.groups(y).tolist() == [0, 2, 2, 0] and cls.group_names() == ("0", "1", "2")
    with pytest.raises(EdgeCompressError, match="not a task of several outputs"):
        tasks.task("outputs[cls:classification]@cls")
    with pytest.raises(EdgeCompressError, match="the judged one is among them"):
        tasks.task(tasks.several_outputs_name(OUTPUTS, "nope"))
    with pytest.raises(EdgeCompressError, match="gives 5 numbers and 3 label columns per example; received 4"):
        t.score(None, out[:, :4], y)


def test_labels_of_several_outputs_are_packed_in_the_outputs_order_and_checked(tmp_path):
    from edgecompress.configs import Preprocessing

    (_, y1, b1), _ = two_heads.write_data(tmp_path / "heads.npz", n_train=30, n_test=12)
    assert labelled_outputs(tmp_path / "heads.npz") == ["box", "cls"] and labelled_outputs(None) == []
    name = tasks.several_outputs_name(OUTPUTS, "cls")
    ds = load_dataset(tmp_path / "heads.npz", Preprocessing(16, 16, 3, "raw"), task=name)
    assert ds.y_train.shape == (30, 3) and np.array_equal(ds.y_train[:, 0], y1) and np.allclose(ds.y_train[:, 1:], b1)
    assert ds.class_names == ("0", "1", "2")
    with np.load(tmp_path / "heads.npz") as z:
        arrays = dict(z)
    np.savez(tmp_path / "bad.npz", **{**arrays, "y_train/box": arrays["y_train/box"][:, :1]})
    with pytest.raises(EdgeCompressError, match=r"`y_train/box` has 1 column\(s\) per example; output 'box' "
                                                r"\(regression, 2 units\) takes 2"):
        load_dataset(tmp_path / "bad.npz", Preprocessing(16, 16, 3, "raw"), task=name)
    np.savez(tmp_path / "bad.npz", **{**arrays, "y_test/cls": arrays["y_test/cls"] + 5})
    with pytest.raises(EdgeCompressError, match="output 'cls' has 3 classes: class ids 0..2"):
        load_dataset(tmp_path / "bad.npz", Preprocessing(16, 16, 3, "raw"), task=name)
    del arrays["y_test/box"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(EdgeCompressError, match=r"no `y_test/box`"):
        load_dataset(tmp_path / "bad.npz", Preprocessing(16, 16, 3, "raw"), task=name)


def test_a_keras3_model_of_two_outputs_is_opened_on_both_and_its_files_give_both(tmp_path, two_output_files):
    """Opened with labels per output, the model keeps both (the same numbers as Keras 3, packed); a file
    converted from it gives both outputs in the model's order, int8 at their own scales, each measured."""
    import keras

    from edgecompress.data.preprocessing import to_model_input
    from edgecompress.lite.evaluation import evaluate_tflite
    from edgecompress.lite.runtime import make_interpreter
    from edgecompress.models import packed, training
    from edgecompress.models.user import open_model
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.schemes import ConversionConfig

    folder, keras_metrics = two_output_files
    user = open_model(folder / "heads.keras", folder / "heads.npz")
    t = tasks.task(user.dataset.task)
    assert t.outputs == OUTPUTS and t.judged == "cls" and user.spec.scale == "raw"  # its own Rescaling
    assert packed.output_layout(user.model) == (("cls", (3,)), ("box", (2,)))
    x = to_model_input(user.dataset.x_test, user.spec)
    want = np.concatenate([np.asarray(o) for o in keras.saving.load_model(folder / "heads.keras")(x)], axis=1)
    np.testing.assert_allclose(training.predict(user.model, x), want, rtol=1e-4, atol=1e-5)
    assert open_model(folder / "heads.keras", folder / "heads.npz", output="box").dataset.task.endswith("@box")
    with pytest.raises(EdgeCompressError, match="drop --task"):
        open_model(folder / "heads.keras", folder / "heads.npz", task="regression")

    rows = x[:64]
    rep = lambda: ([rows[i:i + 1]] for i in range(len(rows)))  # noqa: E731 - a representative dataset
    for name, q in (("float32", "none"), ("int8", "int8")):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(convert(user.model, ConversionConfig(name, q), rep))
        outs = make_interpreter(path).get_output_details()
        assert [tuple(d["shape"][1:]) for d in outs] == [(3,), (2,)], name
        result, _ = evaluate_tflite(path, x, user.dataset.y_test, task=user.dataset.task)
        assert result["outputs"]["cls"]["metric"] == "top-1" and result["outputs"]["box"]["metric"] == "R²"
        assert result["accuracy"] == result["outputs"]["cls"]["value"]
        tol = 0.001 if q == "none" else 0.03
        assert result["outputs"]["cls"]["value"] >= keras_metrics["cls"] - tol, (name, result["outputs"])
        assert result["outputs"]["box"]["value"] >= keras_metrics["box"] - tol, (name, result["outputs"])
    # What `bench-device --accuracy` runs on a board: the TF-free harness reads the task from eval.npz.
    from edgecompress.lite import latency

    np.savez(tmp_path / "eval.npz", x=x, y=user.dataset.y_test, task=np.asarray(user.dataset.task))
    on_device = latency.run([str(tmp_path / "int8.tflite")], eval_data=tmp_path / "eval.npz", runs=3, warmup=1)
    acc = on_device["results"][0]["accuracy"]
    assert acc["top1"] == result["accuracy"] and acc["outputs"] == result["outputs"]


@pytest.mark.slow
def test_build_edge_measures_each_output_through_distillation_pruning_and_int8(tmp_path, two_output_files):
    """The whole build, judged on `box` (`--output box`): a half-width student distilled on both outputs (soft
    targets for the classes, the teacher's values for the box), pruned, int8; every file's record has both
    outputs' metrics, the int8 file keeps both near the Keras model's, and `final.keras` has both outputs."""
    import keras

    from tests.support.student_build import build_student

    folder, keras_metrics = two_output_files
    report = build_student(folder / "heads.keras", folder / "heads.npz", tmp_path, distill_epochs=10, output="box")
    out = tmp_path / "out"
    arts = {a["name"]: a for a in report["artifacts"]}
    for name in ("teacher_float32", "float32", "int8"):
        assert set(arts[name]["outputs"]) == {"cls", "box"}, name
        assert arts[name]["accuracy"] == arts[name]["outputs"]["box"]["value"]  # the limit's metric: --output's
    assert arts["int8"]["outputs"]["cls"]["value"] >= keras_metrics["cls"] - 0.05, arts["int8"]["outputs"]
    assert arts["int8"]["outputs"]["box"]["value"] >= keras_metrics["box"] - 0.1, arts["int8"]["outputs"]
    final = keras.saving.load_model(out / "final.keras")
    assert [tuple(o.shape[1:]) for o in final.outputs] == [(3,), (2,)]
    assert "box R²" in (out / "report.md").read_text()


def test_data_of_several_inputs_and_several_outputs_packs_both(tmp_path):
    """Inputs `x_train/<input>` and labels `y_train/<output>` in one `.npz` (found when a tf-keras model of two
    inputs and two outputs was built: packing the inputs dropped the labels)."""
    from edgecompress.configs import Features
    from edgecompress.lite import inputs

    rng = np.random.default_rng(0)
    arrays = {f"x_{s}/tab": rng.normal(size=(n, 4)) for s, n in (("train", 20), ("test", 10))}
    arrays.update({f"x_{s}/seq": rng.normal(size=(n, 3, 2)) for s, n in (("train", 20), ("test", 10))})
    arrays.update({f"y_{s}/cls": np.arange(n) % 3 for s, n in (("train", 20), ("test", 10))})
    arrays.update({f"y_{s}/box": rng.normal(size=(n, 2)) for s, n in (("train", 20), ("test", 10))})
    np.savez(tmp_path / "mix.npz", **arrays)
    spec = Features((10,), inputs=(("tab", (4,)), ("seq", (3, 2))))
    ds = load_dataset(tmp_path / "mix.npz", spec, task=tasks.several_outputs_name(OUTPUTS, "cls"))
    tab, seq = inputs.split(ds.x_test, [(4,), (3, 2)])
    assert np.allclose(tab, arrays["x_test/tab"]) and np.allclose(seq, arrays["x_test/seq"])
    assert np.array_equal(ds.y_test[:, 0], arrays["y_test/cls"]) and np.allclose(ds.y_test[:, 1:], arrays["y_test/box"])
