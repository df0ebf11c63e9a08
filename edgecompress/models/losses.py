"""Each task's losses, in one place: what a model trains on and what a student distils by.

A task (`lite.tasks.Task`) names the kind of its loss (`Task.loss`); this module holds one row per kind:

| kind | trains on (`compile_for_task`) | distils by (`distillation_terms`) |
|---|---|---|
| `classes` | cross-entropy by the head (`output_head`: softmax, logits, one sigmoid) | the labels' cross-entropy, and T² KL against the teacher's softened outputs |
| `labels` | binary cross-entropy per sigmoid unit | binary cross-entropy, and mean squared error against the teacher's probabilities |
| `values` | the value loss (mean squared or absolute error) | the value loss, against the labels and against the teacher's outputs |
| `outputs` | each output's own loss, summed (`several_outputs_loss`) | each output's, against its labels and the teacher's |

Every stage (`techniques.trainer`), the teacher's training and the distiller ask here; none writes a loss itself.
"""

from __future__ import annotations

from edgecompress.lite import tasks
from edgecompress.models.keras_io import output_head


def classification_loss(head: str, reduction=None):
    """The training loss for `output_head`'s kind: sparse cross-entropy (from logits for a logits head), or
    binary cross-entropy for one sigmoid unit."""
    from edgecompress.models.backend import keras

    kw = {} if reduction is None else {"reduction": reduction}
    if head == "sigmoid":
        return keras.losses.BinaryCrossentropy(**kw)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=head == "logits", **kw)


def value_loss_fn(value_loss: str = "mse", reduction=None):
    """The Keras loss of `value_loss` (`lite.tasks.VALUE_LOSSES`): mean squared or mean absolute error."""
    from edgecompress.models.backend import keras

    kw = {} if reduction is None else {"reduction": reduction}
    cls = {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError}[
        tasks.check_value_loss(value_loss)]
    return cls(**kw)


def head_log_probs(out, head: str):
    """A classifier's outputs as log-probabilities over its classes, whatever its head (`output_head`): a logits
    head is log-softmaxed, never log(p) of a negative number; one sigmoid unit becomes its two classes."""
    from edgecompress.models.backend import tf

    if head == "logits":
        return tf.nn.log_softmax(out)
    if head == "sigmoid":  # one unit: the two classes' probabilities
        out = tf.concat([1.0 - out, out], axis=-1)
    return tf.nn.log_softmax(tf.math.log(out + 1e-8))


def several_outputs_loss(task, value_loss: str = "mse", *, teacher_weight: float = 0.0, temperature: float = 2.0):
    """The loss of a model of several outputs (`lite.tasks.SeveralOutputs`), one packed row of scores against
    one row of label columns: each classification output's cross-entropy (by its head) and each regression
    output's `value_loss`, summed, per example. With `teacher_weight` > 0 it is a distillation loss
    `(y, student, teacher)`: each output also learns the teacher's (soft targets at `temperature` for a class
    output, `value_loss` against its values for the others), weighted `teacher_weight` against the labels'
    `1 - teacher_weight`."""
    from edgecompress.models.backend import keras, tf

    value = value_loss_fn(value_loss, reduction="none")
    log_probs = head_log_probs

    def per_example(y, s, t=None):
        total, a, b = 0.0, 0, 0
        for o in task.outputs:
            so, yo = s[:, a:a + o.width], y[:, b:b + o.label_columns]
            to = None if t is None else t[:, a:a + o.width]
            if o.task == "classification":
                ls = log_probs(so, o.head)
                hard = keras.losses.sparse_categorical_crossentropy(tf.cast(yo[:, 0], tf.int32), ls, from_logits=True)
                soft = 0.0 if to is None else temperature ** 2 * tf.reduce_sum(
                    tf.nn.softmax(log_probs(to, o.head) / temperature)
                    * (tf.nn.log_softmax(log_probs(to, o.head) / temperature) - tf.nn.log_softmax(ls / temperature)), -1)
            else:
                hard = value(yo, so)
                soft = 0.0 if to is None else value(to, so)
            total += (1 - teacher_weight) * hard + teacher_weight * soft
            a, b = a + o.width, b + o.label_columns
        return total

    return per_example


# --- training: (loss, metrics) for `model.compile`, by kind --------------------------------------------------

def _train_classes(model, task, value_loss):
    from edgecompress.models.backend import keras

    head = output_head(model)
    return classification_loss(head), [keras.metrics.BinaryAccuracy(name="accuracy") if head == "sigmoid" else
                                       keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def _train_labels(model, task, value_loss):  # a 0/1 label per sigmoid unit
    from edgecompress.models.backend import keras

    return keras.losses.BinaryCrossentropy(), [keras.metrics.BinaryAccuracy(name="accuracy")]


def _train_values(model, task, value_loss):  # a reconstruction, a regression
    return value_loss_fn(value_loss), None


def _train_outputs(model, task, value_loss):  # each output by its own loss, summed
    return several_outputs_loss(task, value_loss), None


TRAINING = {"classes": _train_classes, "labels": _train_labels, "values": _train_values, "outputs": _train_outputs}


def compile_for_task(model, learning_rate=1e-3, task: str = "classification", value_loss: str = "mse"):
    """Compiles `model` with Adam (`learning_rate`: a number or a Keras schedule) and the loss of `task`'s kind
    (`TRAINING`): for a classifier its head's, tracking `accuracy`; for a model of values `value_loss` (mean
    squared error by default, or mean absolute error). Returns `model`."""
    from edgecompress.models.backend import keras

    t = tasks.task(task)
    loss, metrics = TRAINING[t.loss](model, t, value_loss)
    kwargs = {} if metrics is None else {"metrics": metrics}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, **kwargs)
    return model


# --- distillation: per-example (hard, soft) terms and the student's outputs, by kind --------------------------

class Distillation:
    """`task`'s distillation loss: `terms(y, student, teacher)` gives per-example `(hard, soft, outputs)`, where
    `student()` and `teacher()` run the two models on the batch (called in the order each kind always has, so
    seeded runs give the same bytes) and `outputs` is what the student's metric reads.

    Args:
        task: A `lite.tasks.Task` name.
        value_loss: For a model of values, `lite.tasks.VALUE_LOSSES`. Defaults to "mse".
        temperature: The soft targets' temperature for class outputs. Defaults to 2.0.
        heads: (teacher head, student head), `output_head`'s, for a classifier.
    """

    def __init__(self, task: str, value_loss: str = "mse", temperature: float = 2.0, heads=(None, None)):
        from edgecompress.models.backend import keras

        none = keras.losses.Reduction.NONE
        self.task = tasks.task(task)
        self.kind = self.task.loss
        self.temperature = float(temperature)
        self.teacher_head, self.student_head = heads
        # A classifier's metric is tracked while it trains; a model of values, labels or several outputs has
        # only its losses (its held-out student loss stands in).
        self.tracks_accuracy = self.kind == "classes"
        if self.kind == "outputs":
            self._several = (several_outputs_loss(self.task, value_loss),
                             several_outputs_loss(self.task, value_loss, teacher_weight=1.0,
                                                  temperature=self.temperature))
        self.bce = keras.losses.BinaryCrossentropy(reduction=none)
        self.mse = keras.losses.MeanSquaredError(reduction=none)
        self.value_loss = value_loss_fn(value_loss, reduction=none)
        self.ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=none)
        self.kl = keras.losses.KLDivergence(reduction=none)

    def terms(self, y, student, teacher, mix=None):
        """Per-example (hard, soft, student outputs). `mix` = (lam, other) for a classifier's blended batch
        (mixup): the labels' loss is `lam` on its own labels and `1 - lam` on the `other` rows'."""
        return getattr(self, "_" + self.kind)(y, student, teacher, mix)

    def _outputs(self, y, student, teacher, mix):
        s = student()
        hard, soft = self._several[0](y, s), self._several[1](y, s, teacher())
        return hard, soft, s

    def _values(self, y, student, teacher, mix):
        from edgecompress.models.backend import tf

        flat = lambda v: tf.reshape(v, (tf.shape(v)[0], -1))  # noqa: E731 - per-example mean over values
        s = student()
        hard = self.value_loss(flat(y), flat(s))
        soft = self.value_loss(flat(teacher()), flat(s))
        return hard, soft, s

    def _labels(self, y, student, teacher, mix):
        s = student()
        hard = self.bce(y, s)
        soft = self.mse(teacher(), s)
        return hard, soft, s

    def _classes(self, y, student, teacher, mix):
        from edgecompress.models.backend import tf

        t = head_log_probs(teacher(), self.teacher_head)
        s = head_log_probs(student(), self.student_head)
        if mix is None:
            hard = self.ce(y, s)
        else:
            lam, other = mix
            hard = lam * self.ce(y, s) + (1 - lam) * self.ce(tf.gather(y, other), s)
        soft = self.kl(tf.nn.softmax(t / self.temperature), tf.nn.softmax(s / self.temperature)) * self.temperature ** 2
        return hard, soft, s
