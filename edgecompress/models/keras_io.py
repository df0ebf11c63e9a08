"""Keras models: the default teacher, what a model's head and shapes say, and safe loading and saving.

Training is `models.training`; losses are `models.losses`.

Inside edgecompress, models are tf-keras (Keras 2) models, because
tensorflow-model-optimization rejects Keras 3 objects. Keras 3 files are
loaded with Keras 3 and translated (`edgecompress.models.translate`), and can be
saved back as Keras 3. Loading refuses `Lambda` layers (arbitrary Python
code) unless the caller passes `safe_mode=False`.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path


from edgecompress.configs import Features, ModelSpec, Preprocessing
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.fileio import atomic_path, atomic_write_json

logger = logging.getLogger(__name__)

SPEC_SUFFIX = ".spec.json"


def build_teacher(spec: Preprocessing, num_classes: int, *, width: float = 1.0, seed: int = 0, name: str = "teacher"):
    """Builds the default CNN classifier.

    Two 3x3 convolutions with max pooling, a dense hidden layer, and a
    separate `Softmax` layer so the logits stay reachable for distillation.

    Args:
        spec: Input preprocessing (gives the input shape).
        num_classes: Number of output classes.
        width: Multiplier on every hidden layer's filters and units; students
            for distillation use `width < 1`. Defaults to 1.0.
        seed: Seeds the weight initializers. Defaults to 0.
        name: Model name. Defaults to `"teacher"`.
    """
    from edgecompress.models.backend import keras

    if not width > 0:
        raise EdgeCompressError(f"Received an invalid value for `width`, expected a positive number. Received: width={width!r}")
    keras.utils.set_random_seed(seed)
    c = lambda n: max(1, int(round(n * width)))  # noqa: E731
    layers = keras.layers
    inputs = keras.Input(spec.input_shape, name="image")
    x = layers.Conv2D(c(32), 3, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(c(64), 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.3, name="dropout1")(x)
    x = layers.Dense(c(128), activation="relu", name="fc1")(x)
    x = layers.Dropout(0.3, name="dropout2")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    probs = layers.Softmax(name="probs")(logits)
    return keras.Model(inputs, probs, name=name)


# What a classifier's last layer emits, by its activation: the loss and the distiller read this table.
HEADS = {"softmax": "softmax", "linear": "logits", None: "logits", "sigmoid": "sigmoid"}


def output_head(model) -> str:
    """What `model` outputs: `"softmax"` (probabilities), `"logits"` (a Dense with no activation, trained
    with `from_logits=True`), `"sigmoid"` (one unit: the probability of class 1) or `"sigmoids"` (several
    units, each the probability of a label of its own: the `multilabel` task).

    Read from the last layer (through tfmot's pruning, clustering and QAT wrappers): a `Softmax` layer or
    an activation. A last layer of another kind (a `Reshape` after the softmax, say) is taken as
    probabilities, as before heads were read.
    """
    head = _last_activation(model)
    if head == "logits" and model.output_shape[-1] == 1:
        raise EdgeCompressError(
            f"Model {model.name!r} ends in one unit with no activation: a binary logit or a regression, which "
            "edgecompress cannot judge by top-1. For a regression pass `--task regression` (or labels that are "
            "values, not class ids); for two classes add `activation=\"sigmoid\"` to the last Dense, or end in a "
            "Dense with one unit per class.")
    return head


def _last_activation(model) -> str:
    """`output_head`'s reading of the last layer, unchecked."""
    layer = model.layers[-1]
    while hasattr(layer, "layer") and not hasattr(layer, "activation"):  # tfmot's wrappers
        layer = layer.layer
    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", "softmax")
    name = act if isinstance(act, str) or act is None else getattr(act, "__name__", "softmax")
    head = HEADS.get(name, "softmax")
    return "sigmoids" if head == "sigmoid" and model.output_shape[-1] != 1 else head  # sigmoids: a label per unit


def model_task(model) -> str:
    """The task (`lite.tasks`) a model's shapes say it has: `"anomaly"` for a model whose output has its
    input's shape (an autoencoder: its reconstruction error is the anomaly score), `"multilabel"` for one that
    ends in several sigmoid units, else `"classification"`.
    `--task` overrides it."""
    if not isinstance(model.input_shape, list) and not isinstance(model.output_shape, list) and \
            tuple(model.output_shape[1:]) == tuple(model.input_shape[1:]):
        return "anomaly"
    if not isinstance(model.output_shape, list) and _last_activation(model) == "sigmoids":
        return "multilabel"
    return "classification"


_MAE_NAMES = {"mae", "mean_absolute_error", "meanabsoluteerror"}


def saved_value_loss(path) -> str:
    """The value loss (`lite.tasks.VALUE_LOSSES`) a saved model was compiled with: "mae" for mean absolute error
    (a `.keras` file's compile config, an `.h5` file's training config), else "mse" (also for a model saved
    without compiling)."""
    path = Path(path)
    loss = None
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as z:
                loss = (json.loads(z.read("config.json")).get("compile_config") or {}).get("loss")
        elif path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("training_config")
            loss = json.loads(raw).get("loss") if raw is not None else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return "mse"
    if isinstance(loss, dict):  # a serialized Loss object
        loss = loss.get("class_name") or (loss.get("config") or {}).get("name")
    if isinstance(loss, str) and loss.replace(" ", "").lower() in _MAE_NAMES:
        return "mae"
    return "mse"


def input_preprocessing(model, scale: str = "unit") -> Preprocessing | Features:
    """Derives the input spec from a model's declared input shape: `Preprocessing` for an image
    (batch, height, width, 1 or 3), `Features` for any other fixed shape (MFCCs, sensor windows, rows), and
    for several inputs (packed into one row: `models.packed`), `Features` with their layout."""
    from edgecompress.models import packed

    shape = model.input_shape
    if isinstance(shape, list):
        from edgecompress.models.graph import check_single_io

        check_single_io(model, f"Model {model.name!r}")
    layout = packed.layout(model)
    if layout:  # several inputs, packed into one row (`translate.to_tf_keras`)
        return Features((packed.row_width(layout),), inputs=layout)
    if len(shape) == 4 and shape[-1] in (1, 3) and any(d is None for d in shape[1:3]):
        raise EdgeCompressError(
            f"Model {model.name!r} declares input shape {tuple(shape)}: an image model of no fixed size. "
            "A .tflite file needs one; rebuild the model with its size, e.g. `Input((224, 224, 3))`."
        )
    if any(d is None for d in shape[1:]):
        raise EdgeCompressError(
            f"Model {model.name!r} declares input shape {tuple(shape)}: a dimension of no fixed size. A .tflite "
            "file needs fixed shapes; rebuild the model's input with every dimension given.")
    if len(shape) != 4 or shape[-1] not in (1, 3):  # not an image: features (a (30, 1, 40) wake-word window), as they are
        return Features(tuple(int(d) for d in shape[1:]))
    return Preprocessing(height=int(shape[1]), width=int(shape[2]), channels=int(shape[3]), scale=scale)


def _keras_major(version) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


_REBUILD_FIX = ("Rebuild it from built-in Keras layers (custom and subclassed layers cannot be translated "
                "for pruning), or save it again with `model.save('model.keras')`.")


def _inspect_config(path: Path):
    """Returns (keras_version, config_json_text) without deserializing the model."""
    if path.is_dir():
        meta = path / "keras_metadata.pb"
        if not (path / "saved_model.pb").exists():
            raise EdgeCompressError(f"{path} is a directory but not a SavedModel (no saved_model.pb).")
        if not meta.exists():
            raise EdgeCompressError(
                f"SavedModel {path} has no Keras metadata (keras_metadata.pb): it was "
                "exported with Keras 3 `model.export()` or plain `tf.saved_model.save`, "
                "which edgecompress cannot train further. Save the Keras model itself instead: "
                "`model.save('model.keras')`."
            )
        text = meta.read_bytes().decode("utf-8", "replace")
        return None, text
    suffix = path.suffix.lower()
    if suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
                config = z.read("config.json").decode("utf-8")
        except (zipfile.BadZipFile, KeyError, OSError, json.JSONDecodeError) as e:
            raise EdgeCompressError(
                f"Cannot read {path} as a .keras model archive ({type(e).__name__}: {e}). "
                "The file is corrupt or not a Keras model; re-save it with `model.save('model.keras')`."
            ) from None
        return meta.get("keras_version"), config
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version")
                config = f.attrs.get("model_config")
        except OSError as e:
            raise EdgeCompressError(f"Cannot read {path} as an HDF5 Keras model ({e}).") from None
        if isinstance(version, bytes):
            version = version.decode()
        if isinstance(config, bytes):
            config = config.decode()
        if config is None:
            raise EdgeCompressError(f"{path} holds only weights, not a model (no model_config). Save the whole model with `model.save`.")
        return version, config
    raise EdgeCompressError(
        f"Received an invalid value for `model`: {path} is not a .keras file, an .h5 file "
        "or a SavedModel directory."
    )


def model_format(path) -> str:
    """`"keras3"` when the file was saved by Keras 3, else `"tf_keras"`."""
    version, _ = _inspect_config(Path(path))
    return "keras3" if _keras_major(version) == 3 else "tf_keras"


def load_model(path, *, safe_mode: bool = True, log=None, output: str | None = None, all_outputs: bool = False):
    """Loads a Keras 3 or tf-keras model as a flat tf-keras model.

    Keras 3 files (`.keras`, `.h5`) are loaded with Keras 3 and translated
    layer by layer (`translate.to_tf_keras`); nested sub-models, in either
    library, are inlined so every stage reaches every layer.

    Args:
        path: The model file or directory.
        safe_mode: Refuse `Lambda` layers, whose Python code would run on
            load. Pass `False` only for models you trust. Defaults to True.
        log: A `translate.TranslationLog` to fill. Defaults to None.
        output: Of a model with several outputs, the one to keep, by name (`one_output`). Defaults to None:
            the first.
        all_outputs: Keep every output of a model of several, packed into one (`models.packed.pack_outputs`):
            a build that measures each (its data labels each). Defaults to False.

    Raises:
        EdgeCompressError: for a missing path, a corrupt file, missing
            weights, a layer that cannot be translated exactly, or (in safe
            mode) a model with a Lambda layer.
    """
    from edgecompress.models import translate

    path = Path(path)
    if not path.exists():
        raise EdgeCompressError(f"Received an invalid value for `model`: {path} does not exist.")
    version, config = _inspect_config(path)
    keras3 = _keras_major(version) == 3
    if safe_mode and config and ('"class_name": "Lambda"' in config or '"class_name":"Lambda"' in config):
        raise EdgeCompressError(
            f"{path} contains a Lambda layer, whose Python code would run when the model "
            "is loaded. Refusing in safe mode; pass `--unsafe` (safe_mode=False) only if you "
            "trust where the file came from (a Lambda cannot be pruned or translated either: "
            "replace it with built-in layers)."
        )
    if keras3 and config:
        _refuse_custom_classes(path, config)
    if keras3 and path.suffix.lower() == ".keras":
        _check_keras3_weights(path)
    if keras3:
        import keras as keras_lib

        loader = lambda: keras_lib.saving.load_model(path, compile=False, safe_mode=safe_mode)  # noqa: E731
    else:
        from edgecompress.models.backend import keras as keras_lib

        known = translate.applications_layers(keras_lib)  # a tf-keras file names them without their module
        safe = {"safe_mode": safe_mode} if path.suffix.lower() == ".keras" else {}
        loader = lambda: keras_lib.models.load_model(path, compile=False, custom_objects=known, **safe)  # noqa: E731
    try:
        model = loader()
    except Exception as e:  # noqa: BLE001 - any deserialization failure is the file's fault
        raise EdgeCompressError(
            f"Cannot load model {path} (saved by Keras {version or '2'}): {type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}. {_REBUILD_FIX}"
        ) from None
    if not isinstance(model, keras_lib.Model):
        raise EdgeCompressError(f"{path} did not load as a Keras Model (got {type(model).__name__}).")
    if keras3 and type(model).__name__ not in ("Functional", "Sequential"):
        raise EdgeCompressError(
            f"{path} holds a subclassed model ({type(model).__name__}), whose graph is Python code edgecompress "
            "cannot follow. Build it with the Functional or Sequential API.")
    if not (all_outputs and len(model.outputs) > 1):
        model = one_output(model, output, keras_lib)
    log = log if log is not None else translate.TranslationLog()
    model = translate.to_tf_keras(model, log)
    if keras3:
        logger.info("Translated Keras %s model %s to tf-keras (%d layers%s)", version, path, len(model.layers),
                    translate.rebuilt_summary(log.decomposed))
    return model


def one_output(model, output: str | None, keras_lib):
    """`model` cut to one of its outputs, by name (`output`; None: the first), with a warning naming the
    outputs left out: what edgecompress builds, measures and ships (a `.tflite` of that output alone). A
    model of one output is returned as it is; a name it does not have is refused with the names it has."""
    from edgecompress.models import graph

    names = graph.output_names(model)
    if output is not None and output not in names:
        raise EdgeCompressError(f"Received an invalid value for `output`: model {model.name!r} has no output "
                                f"{output!r}; its outputs are {names}. Pass one of them to --output.")
    if len(names) == 1:
        return model
    i = names.index(output) if output is not None else 0
    logger.warning("Model %r has %d outputs (%s): building %r%s; the other output(s) are not in the files built "
                   "(--output NAME builds another, and --data's labels must be that output's)", model.name,
                   len(names), ", ".join(names), names[i], "" if output else ", the first")
    return keras_lib.Model(model.inputs, model.outputs[i], name=model.name)


def _refuse_custom_classes(path: Path, config_text: str) -> None:
    """Names the first layer whose class is not Keras's own (Keras 3 writes each object's module)."""
    try:
        config = json.loads(config_text)
    except json.JSONDecodeError:
        return

    def walk(obj):
        if isinstance(obj, dict):
            module = obj.get("module")
            if "class_name" in obj and isinstance(module, str) and not module.startswith("keras"):
                name = (obj.get("config") or {}).get("name", "?") if isinstance(obj.get("config"), dict) else "?"
                raise EdgeCompressError(
                    f"{path}: layer {name!r} is a custom class {obj['class_name']} (module {module}), which "
                    f"edgecompress cannot translate or prune. {_REBUILD_FIX}")
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(config)


def _check_keras3_weights(path: Path) -> None:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if not any(n.startswith("model.weights") for n in names):
        raise EdgeCompressError(f"{path} has no weights (no model.weights.h5 inside the archive). Save the whole "
                                "model with `model.save('model.keras')`, not only its config.")


def save_model(model, path, spec: ModelSpec | None = None, *, fmt: str = "tf_keras"):
    """Saves `model` atomically (and its `ModelSpec` beside it as JSON).

    Args:
        fmt: `"keras3"` writes a Keras 3 file (`translate.to_keras3`) that
            `keras.saving.load_model` reads; a model Keras 3 cannot hold
            (quantization-aware training wrappers) is saved as tf-keras with
            a warning. Defaults to `"tf_keras"`.

    A model of several inputs, packed into one row for the stages (`models.packed`), is written with its
    inputs (`translate.unpacked`), as the user built it; loading it packs it again.
    """
    from edgecompress.models import translate

    path = Path(path)
    model = translate.unpacked(model)
    if fmt == "keras3":
        try:
            model = translate.to_keras3(model)
        except EdgeCompressError as e:
            logger.warning("Saving %s as a tf-keras file: Keras 3 cannot hold it (%s)", path, e)
    with atomic_path(path) as tmp:
        model.save(tmp)
    if spec is not None:
        atomic_write_json(spec_path(path), spec.to_dict())
    return path


def spec_path(model_path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + SPEC_SUFFIX)


def load_spec(model_path) -> ModelSpec | None:
    p = spec_path(model_path)
    if p.exists():
        return ModelSpec.from_dict(json.loads(p.read_text()))
    return None


def count_params(model) -> int:
    return int(model.count_params())
