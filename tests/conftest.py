"""Shared fixtures: a tiny slice of the bundled data and a tiny seeded model.

Everything is seeded; the tiny model trains 2 epochs on 1,500 images in a
few seconds. Numbers asserted in tests say where they come from.
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["support.ci_policy", "support.worker_groups"]

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def tiny_dataset():
    """1,500 train / 300 test images from the bundled subset (first rows; it is shuffled)."""
    from edgecompress.data.loading import load_dataset

    ds = load_dataset()
    ds.x_train, ds.y_train = ds.x_train[:1500], ds.y_train[:1500]
    ds.x_test, ds.y_test = ds.x_test[:300], ds.y_test[:300]
    return ds


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset):
    """The default teacher at width 0.25, 2 epochs: ~70-75% top-1, enough to test plumbing."""
    from edgecompress.models import keras_io, training
    from edgecompress.configs import TrainConfig

    model = keras_io.build_teacher(tiny_dataset.preprocessing, tiny_dataset.num_classes, width=0.25, seed=0)
    training.train(model, tiny_dataset, TrainConfig(epochs=2, seed=0), verbose=0)
    return model


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory, tiny_dataset):
    """The tiny dataset as an .npz, for tasks that take `--data`."""
    p = tmp_path_factory.mktemp("d") / "small.npz"
    np.savez(p, x_train=tiny_dataset.x_train, y_train=tiny_dataset.y_train, x_test=tiny_dataset.x_test,
             y_test=tiny_dataset.y_test)
    return p


@pytest.fixture(scope="session")
def calibration_pixels(root, tiny_dataset):
    from edgecompress.data.calibration import load_calibration_images

    return load_calibration_images(root / "calibration_data", tiny_dataset.preprocessing)


@pytest.fixture(scope="session")
def tiny_tflites(tmp_path_factory, tiny_model, tiny_dataset, calibration_pixels):
    """float32 and int8 .tflite files of the tiny model."""
    from edgecompress.quantize import schemes
    from edgecompress.quantize import convert
    from edgecompress.data.calibration import representative_dataset

    out = tmp_path_factory.mktemp("tflite")
    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    paths = {}
    for conv in (schemes.float32(), schemes.int8_full(), schemes.int8_float_io()):
        paths[conv.name] = convert.write_tflite(convert.convert(tiny_model, conv, rep), out, conv.name)
    return paths


@pytest.fixture(scope="session")
def default_build(tmp_path_factory):
    """`invoke build-edge --out OUT`, the README's bundled default build, run once, its output a pipe: (OUT, the
    process). `test_pipeline` checks its files, report and log, `test_readme` its numbers against the README's."""
    out = tmp_path_factory.mktemp("edge")
    proc = run_invoke(["build-edge", "--out", str(out)], cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def run_invoke(args, cwd, timeout=600, env=None):
    """Runs `invoke ARGS` in a subprocess; returns the CompletedProcess."""
    import subprocess

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def write_png(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode).save(path)
    return path



# A previous build's report.json, as a test that checks a refused build keeps it writes one.
PLACEHOLDER_REPORT = ('{"schema_version": 2, "baseline": "kept", "stages": [], "failed": [], "artifacts": [{"name": '
                      '"kept", "path": "kept.tflite", "quantization": "float32", "size_bytes": 1, "gzip_bytes": 1, '
                      '"sha256": "0", "accuracy": 0.5}]}')


@pytest.fixture(autouse=True)
def _every_report_meets_its_schema(request):
    """After each test, every report.json it wrote under its `tmp_path` (a build in this process or in an
    `invoke` subprocess) is validated against the published schema (`edgecompress/_schemas/report.schema.json`)."""
    folder = Path(request.getfixturevalue("tmp_path")) if "tmp_path" in request.fixturenames else None
    yield
    if folder is None:
        return
    import json

    from edgecompress.schemas import check

    for path in folder.rglob("report.json"):
        check(json.loads(path.read_text()), "report.schema.json")
