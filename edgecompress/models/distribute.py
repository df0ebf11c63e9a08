"""`tf.distribute` strategies by name, so a recipe or flag can pick one.

- `"default"`: one device (what you get without asking).
- `"mirrored"`: `MirroredStrategy`, every GPU (or logical CPU) of this machine.
- `"multiworker"`: `MultiWorkerMirroredStrategy` across machines; each worker
  reads its role from the `TF_CONFIG` environment variable.

Every training stage builds its models and optimizers inside
`strategy.scope()`.
"""

from __future__ import annotations

from edgecompress.errors import EdgeCompressError

STRATEGIES = ("default", "mirrored", "multiworker")


_strategies: dict = {}


def get_strategy(name: str | None = "default"):
    """Returns the `tf.distribute.Strategy` called `name`.

    One instance per name per process: a model built in one
    `MirroredStrategy` cannot be compiled or trained in another.
    """
    from edgecompress.models.backend import tf

    name = name or "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name in _strategies:
        return _strategies[name]
    if name == "mirrored":
        _strategies[name] = tf.distribute.MirroredStrategy()
        return _strategies[name]
    if name == "multiworker":
        _strategies[name] = tf.distribute.MultiWorkerMirroredStrategy()
        return _strategies[name]
    raise EdgeCompressError(
        f"Received an invalid value for `strategy`, expected one of {list(STRATEGIES)}. Received: strategy={name!r}"
    )
