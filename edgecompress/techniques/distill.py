"""Knowledge distillation for tf-keras (which has no built-in distiller).

The student learns from the frozen teacher's softened outputs (temperature
`T`) mixed with the hard labels:

    loss = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(soft(teacher/T) || soft(student/T))

Logits are taken as `log(probabilities)`, which softmax treats identically
up to a constant, so any classifier ending in softmax works as teacher or
student. `DistillConfig` is the recipe stage `{"stage": "distill", ...}`.
The same student is also trained from scratch with the same budget, so the
report shows what distillation bought.
"""

from __future__ import annotations

import logging
import math
import warnings

from edgecompress.models.distribute import get_strategy
from edgecompress.errors import EdgeCompressError
from edgecompress.techniques.configs import DistillConfig  # noqa: F401  (re-exported: the config lives apart)
from edgecompress.lite import tasks
from edgecompress.models.keras_io import count_params, output_head
from edgecompress.models.losses import Distillation
from edgecompress.models.training import held_out, keras_metric, learning_rate, train

logger = logging.getLogger(__name__)




def scale_width(model, width: float, name: str | None = None, dropout: float | None = None,
                min_channels: int | None = None):
    """The same architecture with its channels scaled by `width` (see `channels.analyse`).

    Channels joined by residual `Add`s, squeeze-excite `Multiply`s and
    depthwise convolutions are scaled together, so the student stays a valid
    graph; spaces touching the input, the output or a layer the analysis does
    not know keep every channel. Weights are freshly initialized (see
    `inherit_weights`). `dropout`, when given, replaces the rate of every
    Dropout layer. No space is scaled below `min_channels` (default
    `channels.MIN_CHANNELS`, 8; a narrower one keeps its own).

    Raises:
        EdgeCompressError: when no channel can be scaled (the "student"
            would be as large as its teacher), naming what kept them.
    """
    from edgecompress.models import channels

    plan = channels.analyse(model, width, min_channels)
    if not plan.sizes:
        blocked = plan.full_width() or ["no Conv2D or Dense layer"]
        raise EdgeCompressError(
            f"Model {model.name!r} has no channels that can be scaled by width={width}: they all keep full width "
            f"because of {'; '.join(blocked)}. Pass a `student` model instead.")
    student = channels.scaled_model(model, plan, name=name or f"{model.name}_w{width:g}", dropout=dropout)
    student._edgecompress_plan = plan
    if width < 1 and count_params(student) >= count_params(model):
        raise EdgeCompressError(
            f"The width-{width:g} student of {model.name!r} has {count_params(student):,} parameters, as many as its "
            f"teacher ({count_params(model):,}): every channel keeps full width because of "
            f"{'; '.join(plan.full_width()) or 'the graph'}. Pass a `student` model instead.")
    if plan.full_width():
        logger.info("Kept at full width: %s", "; ".join(plan.full_width()))
    return student


def relu_for_hard_swish(model):
    """`model` with ReLU where it computes hard-swish (`DistillConfig.hard_swish="relu"`): not the same
    function, a student's lever for speed, which distillation then trains. Returns `model` itself when it has
    no hard-swish; every other layer keeps its weights."""
    from edgecompress.models.backend import keras
    from edgecompress.quantize.rewrites import replace_hard_swish

    return replace_hard_swish(model, lambda name, x, _: keras.layers.ReLU(name=name)(x), "ReLU (a student's choice)")


def inherit_weights(teacher, student) -> None:
    """Copies the teacher's most important channels into a student made by `scale_width`.

    Each channel space keeps the channels whose producing kernels have the
    largest L1 norm (in their original order); every consumer gets the
    matching input channels, through BatchNormalization, pooling, residual
    `Add`s, squeeze-excite `Multiply`s, depthwise convolutions and Flatten's
    positions. The output layer keeps all its units.

    Raises:
        EdgeCompressError: naming the layer, when the student is wider than
            the teacher or was not made by `scale_width`.
    """
    from edgecompress.models import channels

    plan = getattr(student, "_edgecompress_plan", None)
    if plan is None:
        raise EdgeCompressError(f"Student {student.name!r} was not made by `scale_width`; only a width-scaled "
                                "student has the teacher's channels to inherit. Use init='random'.")
    channels.inherit(teacher, student, plan)


def make_distiller(student, teacher, temperature: float = 2.0, alpha: float = 0.5, task: str = "classification",
                   value_loss: str = "mse"):
    """A Keras model whose `fit` trains `student` against a frozen copy of `teacher` (built in the current
    strategy's scope); `alpha` weighs the labels, `1 - alpha` the teacher's softened outputs (for a task that
    is not classification, the teacher's outputs themselves, by `value_loss`: mean squared error, or mean
    absolute error for a model compiled with it). Other stages use it to
    fine-tune with the teacher (pruning with `distill`)."""
    from edgecompress.models.backend import keras

    frozen = keras.models.clone_model(teacher)
    frozen.set_weights(teacher.get_weights())
    return _distiller_class()(student, frozen, temperature, alpha, task, value_loss)


def teacher_trainer(student, build_teacher, learning_rate: float, stage: str, task: str = "classification",
                    value_loss: str = "mse"):
    """`student` inside a compiled distiller against the build's teacher: how a stage with `distill: true`
    fine-tunes (call it in the stage's strategy scope). Raises a clear error when there is no teacher."""
    from edgecompress.models.backend import keras

    if build_teacher is None:
        raise EdgeCompressError(f"Received `distill`=True for {stage}, but no teacher: it fine-tunes against the "
                                "build's teacher, which a recipe run has. Use it in a recipe, or drop `distill`.")
    trainer = make_distiller(student, build_teacher, task=task, value_loss=value_loss)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return trainer


def _distiller_class():
    from edgecompress.models.backend import keras, tf

    class Distiller(keras.Model):
        """Trains `student` against a frozen `teacher`; logs both losses."""

        def __init__(self, student, teacher, temperature, alpha, task="classification", value_loss="mse",
                     mixup=0.0):
            super().__init__(name="distiller")
            self.student, self.teacher = student, teacher
            self.teacher.trainable = False
            self.temperature, self.alpha = float(temperature), float(alpha)
            # The task's own distillation loss (`models.losses.Distillation`): a classifier's outputs become
            # log-probabilities over its classes first, whatever its head (`keras_io.output_head`).
            kind = tasks.task(task).loss
            heads = (output_head(teacher), output_head(student)) if kind == "classes" else (None, None)
            self.loss_terms = Distillation(task, value_loss, self.temperature, heads)
            self.tracks_accuracy = self.loss_terms.tracks_accuracy
            # Mixup blends a classifier's training batches (`DistillConfig.mixup`); other tasks train unblended.
            self.mixup = float(mixup) if self.tracks_accuracy else 0.0
            self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
            self.distill_loss_tracker = keras.metrics.Mean(name="distill_loss")
            self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [self.student_loss_tracker, self.distill_loss_tracker] + ([self.acc] if self.tracks_accuracy else [])

        def call(self, x, training=False):
            return self.student(x, training=training)

        def _distill_losses(self, x, y, training):
            mix = None
            if training and self.mixup > 0 and x.dtype.is_floating:  # ids or counts are not blended
                x, lam, other = self._blend(x)
                mix = (lam, other)
            hard, soft, s = self.loss_terms.terms(y, lambda: self.student(x, training=training),
                                                  lambda: self.teacher(x, training=False), mix)
            return self._mean(self.alpha * hard + (1 - self.alpha) * soft), hard, soft, s

        def _blend(self, x):
            """`x` blended with a shuffle of itself, `lam ~ Beta(a, a)` per example; returns (blend, lam, order)."""
            n = tf.shape(x)[0]
            a = tf.random.gamma([n], self.mixup)
            lam = a / (a + tf.random.gamma([n], self.mixup))
            other = tf.random.shuffle(tf.range(n))
            w = tf.reshape(lam, tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
            return w * x + (1 - w) * tf.gather(x, other), lam, other

        @staticmethod
        def _mean(per_example):
            # Average over the global batch so gradients sum correctly across replicas.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            return tf.reduce_sum(per_example) / tf.cast(tf.shape(per_example)[0] * replicas, tf.float32)

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                loss, hard, soft, s = self._distill_losses(x, y, True)
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
            return self._update(y, hard, soft, s)

        def test_step(self, data):
            x, y = data
            _, hard, soft, s = self._distill_losses(x, y, False)
            return self._update(y, hard, soft, s)

        def _update(self, y, hard, soft, s):
            self.student_loss_tracker.update_state(hard)
            self.distill_loss_tracker.update_state(soft)
            if self.tracks_accuracy:
                self.acc.update_state(y, s)
            return {m.name: m.result() for m in self.metrics}

    return Distiller


def _make_student(teacher, config: DistillConfig, seed: int):
    """Returns (student, inherited): `inherited` says whether it starts from the teacher's weights."""
    from edgecompress.models.backend import keras

    keras.utils.set_random_seed(seed)
    if config.student:
        from edgecompress.models.keras_io import load_model

        student = load_model(config.student)
        student = keras.models.clone_model(student)  # fresh weights: the budget comparison is fair
    else:
        student = scale_width(teacher, config.width, name="student", dropout=config.student_dropout)
    inherited = False
    if not config.student and config.init in ("auto", "teacher"):
        try:
            inherit_weights(teacher, student)
            inherited = True
        except Exception as e:  # noqa: BLE001 - "auto" must never stop a build over an optional head start
            if config.init == "teacher":
                raise
            logger.warning("%s Starting the student from random weights instead.", e)
    if config.hard_swish == "relu":
        student = relu_for_hard_swish(student)
    student.trainable = True
    if config.bn_momentum is not None:
        for layer in student.layers:
            if hasattr(layer, "moving_mean") and layer.momentum > config.bn_momentum:  # BatchNormalization
                layer.momentum = config.bn_momentum
    if student.input_shape != teacher.input_shape or student.output_shape != teacher.output_shape:
        raise EdgeCompressError(
            f"Student {student.name!r} has input/output shapes {student.input_shape}/{student.output_shape}; "
            f"the teacher has {teacher.input_shape}/{teacher.output_shape}. They must match."
        )
    if count_params(student) > count_params(teacher):
        warnings.warn(f"Student {student.name!r} has more parameters ({count_params(student)}) than the "
                      f"teacher ({count_params(teacher)}).", stacklevel=3)
    logger.info("Student %s: %d parameters (teacher %d, %.2fx), %s", student.name, count_params(student),
                count_params(teacher), count_params(student) / max(1, count_params(teacher)),
                "starts from the teacher's channels" if inherited else "starts from random weights")
    return student, inherited


def distill(teacher, dataset, config: DistillConfig = None, *, seed: int = 0, verbose: int = 1, **_):
    """Trains a student from `teacher` on `dataset`; returns (student, metrics).

    Metrics: `accuracy` (student, distilled), `scratch_accuracy` (same
    student trained on labels alone, when `baseline`), `teacher_accuracy`,
    `params`, `teacher_params` and the final losses.
    """
    from edgecompress.models.backend import keras

    config = config or DistillConfig()
    training = config.training(seed)
    data = held_out(dataset, training)
    rows = len(data[0][1])
    epochs = config.epochs_for(rows)
    if epochs != training.epochs:
        logger.info("%d epochs of %d training rows are fewer than min_steps=%d optimizer steps: distilling for %d "
                    "epochs", training.epochs, rows, config.min_steps, epochs)
        training = training.replace(epochs=epochs)
    with get_strategy(config.strategy).scope():
        # The teacher's weights are copied into the scope so every replica has them.
        frozen = keras.models.clone_model(teacher)
        frozen.set_weights(teacher.get_weights())
        student, inherited = _make_student(teacher, config, seed)
        start = student.get_weights()
        distiller = _distiller_class()(student, frozen, config.temperature, config.alpha, dataset.task,
                                       dataset.value_loss, config.mixup)
        distiller.compile(optimizer=keras.optimizers.Adam(learning_rate(training, rows)))
    logger.info("Distilling %s (%d params) into %s (%d params), T=%g, alpha=%g%s%s", teacher.name,
                count_params(teacher), student.name, count_params(student), config.temperature, config.alpha,
                f", mixup Beta({config.mixup:g}, {config.mixup:g})" if distiller.mixup > 0 else "",
                ", the rate decaying on a cosine" if config.lr_schedule == "cosine" else "")
    # A model of values has no top-1 while it trains: its held-out squared error stands in.
    monitor = ("val_accuracy", "max") if distiller.tracks_accuracy else ("val_student_loss", "min")
    hist = train(distiller, dataset, training, data=data, compile=False, monitor=monitor, verbose=verbose)
    epochs_run = len(hist.history["student_loss"])
    metrics = {
        "accuracy": keras_metric(student, dataset),
        "teacher_accuracy": keras_metric(teacher, dataset),
        "params": count_params(student),
        "teacher_params": count_params(teacher),
        "student_loss": float(hist.history["student_loss"][-1]),
        "distill_loss": float(hist.history["distill_loss"][-1]),
        "epochs": epochs_run,
    }
    for name in ("student_loss", "distill_loss"):
        if not math.isfinite(metrics[name]):
            raise EdgeCompressError(f"Distillation diverged: the student's {name} is {metrics[name]} after "
                                    f"{epochs_run} epoch(s). Likely causes: a learning rate too high for this model "
                                    f"(learning_rate={config.learning_rate:g}), or inputs at the wrong scale.")
    if config.baseline:
        # From scratch: random weights; for a student that did not inherit, the ones it started from.
        scratch_start = _make_student(teacher, config.replace(init="random"), seed)[0].get_weights() if inherited else start
        metrics["scratch_accuracy"] = _labels_only(student, scratch_start, dataset, config, seed, verbose, epochs_run)
        gap = metrics["teacher_accuracy"] - metrics["scratch_accuracy"]
        metrics["gap_recovered"] = (metrics["accuracy"] - metrics["scratch_accuracy"]) / gap if gap > 0 else None
        if inherited:
            # What the teacher's weights alone buy, so the soft targets' share is visible too.
            metrics["inherited_accuracy"] = _labels_only(student, start, dataset, config, seed, verbose, epochs_run)
    t = tasks.task(dataset.task)
    logger.info("Distilled student: %s (from scratch: %s%s)", t.says(metrics["accuracy"]),
                t.format(metrics["scratch_accuracy"]) if "scratch_accuracy" in metrics
                else "not trained; `baseline: true` on the stage trains it",
                f"; teacher's weights, labels only: {t.format(metrics['inherited_accuracy'])}"
                if "inherited_accuracy" in metrics else "")
    return student, metrics


def _labels_only(student, weights, dataset, config, seed, verbose, epochs=None):
    """Trains a copy of `student` from `weights` on the labels alone with the same budget; returns its top-1."""
    from edgecompress.models.backend import keras

    with get_strategy(config.strategy).scope():
        model = keras.models.clone_model(student)
    keras.utils.set_random_seed(seed)
    model.set_weights(weights)
    train(model, dataset, config.training(seed, epochs=epochs or config.epochs, lr_schedule="constant", patience=None,
                                          mixup=0.0), verbose=verbose)
    return keras_metric(model, dataset)
