import pytest

from conftest import run_invoke
from edgecompress.builder.preflight import check_model, format_findings

pytestmark = pytest.mark.slow


def test_default_teacher_is_clean(tiny_model):
    r = check_model(tiny_model)
    assert r["ok"] and r["not_prunable"] == [] and r["not_qat"] == [] and r["float_ops_under_int8"] == []
    assert r["xnnpack_sparse_layers"] == [] and "fc1" in r["xnnpack_dense_layers"]


def test_problems_are_named():
    from edgecompress.models.backend import keras, tf

    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(name="w", shape=(shape[-1],))

        def call(self, x):
            return x * self.w

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inp)
    x = keras.layers.Conv2D(16, 1, name="pointwise")(x)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = Scale(name="custom")(x)
    x = tf.math.sin(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax", name="head")(x))
    r = check_model(model)
    assert not r["ok"]
    assert "custom" in r["not_prunable"] and "norm" in r["not_qat"] and "custom" in r["not_qat"]
    assert "SIN" in r["float_ops_under_int8"]
    assert r["xnnpack_sparse_layers"] == ["pointwise"]
    text = format_findings(r)
    assert "cannot prune custom" in text and "SIN" in text and "int8_float_io" in text


def test_task(tmp_path, root, tiny_model):
    tiny_model.save(tmp_path / "m.keras")
    proc = run_invoke(["check-model", "--model", str(tmp_path / "m.keras"), "--json", str(tmp_path / "r.json")], cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "every op has an int8 kernel" in proc.stdout and (tmp_path / "r.json").exists()


def test_check_model_says_what_the_model_is_for():
    """MLPerf Tiny's anomaly detector (ad01.h5: 640 in, 640 out) was refused as an image of no size; it is
    features, and its task is anomaly detection by ROC-AUC."""
    from edgecompress.models.backend import keras

    inp = keras.Input((640,))
    ae = keras.Model(inp, keras.layers.Dense(640)(keras.layers.Dense(8, activation="relu")(inp)))
    r = check_model(ae)
    assert r["input_kind"] == "features" and r["task"]["name"] == "anomaly" and r["task"]["metric"] == "ROC-AUC"
    assert "task: anomaly, judged by ROC-AUC" in format_findings(r)
