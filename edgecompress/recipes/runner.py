"""Runs a recipe's training-time stages in order, reusing cached ones.

Each stage is keyed in the stage cache by everything before it (the
teacher's key, every earlier stage's config, the data, the seed), so a
recipe that shares a prefix with an earlier one reuses that prefix. What a
stage is, and which exist, is `registry`.
"""

from __future__ import annotations

import logging
import time

from edgecompress.models import keras_io, training
from edgecompress.techniques.prune import keras_sparsity
from edgecompress.recipes.registry import run_stage
from edgecompress.report.results import StageResult
from edgecompress.models.sanity import check_stage
from edgecompress.errors import stop_if_interrupted

logger = logging.getLogger(__name__)


def stage_keys(recipe, teacher_key, dataset, seed=0) -> list[str]:
    """The cache key of each of `recipe`'s stages: it chains the keys before it."""
    from edgecompress.recipes.cache import make_key

    keys, key = [], teacher_key
    for stage in recipe.stages:
        key = make_key(key, stage.STAGE, stage.to_dict(), dataset.fingerprint(), seed, *stage.cache_parts())
        keys.append(key)
    return keys


def run_stages(teacher, dataset, recipe, cache, teacher_key, *, seed=0, verbose=1, on_stage=None):
    """Applies the recipe's stages in order, reusing cached ones.

    Returns (final model, final key, stage log): `results.StageResult`s,
    the teacher first; each stage's `seconds` is 0 when it came from the
    cache (`cached` true). A stage whose model is at chance or holds NaN
    weights raises `sanity.ImplausibleResult`. `on_stage(index, result)`,
    when given, is called after each stage (1-based index) and may raise to
    stop the recipe there.
    """
    stage_log = [teacher_entry(teacher, dataset, cache, teacher_key)]
    final, key, started = teacher, teacher_key, time.time()
    for i, (stage, key) in enumerate(zip(recipe.stages, stage_keys(recipe, teacher_key, dataset, seed)), 1):
        name = _stage_name(i - 1, stage)
        stop_if_interrupted()
        logger.info("  stage %d/%d: %s", i, len(recipe.stages), stage.STAGE)
        t0 = time.time()
        cached = cache.get_model(name, key)
        metrics = cache.get_json(f"{name}.metrics", key)
        hit = cached is not None and metrics is not None
        if hit:
            final = cached
        else:
            final, metrics = run_stage(stage, final, dataset, teacher=teacher, seed=seed, verbose=verbose)
            metrics.setdefault("params", keras_io.count_params(final))
            metrics.setdefault("sparsity", keras_sparsity(final))
            cache.put_model(name, key, final)
            cache.put_json(f"{name}.metrics", key, metrics)
        stage_log.append(StageResult(stage.STAGE, final.name, metrics, stage.to_dict(),
                                     0.0 if hit else round(time.time() - t0, 1), hit))
        logger.info("  stage %d/%d: %s %s (%.0f s since the first stage)", i, len(recipe.stages), stage.STAGE,
                    "reused from the cache" if hit else f"done in {time.time() - t0:.0f} s", time.time() - started)
        check_stage(stage.STAGE, metrics.get("accuracy"), num_classes=dataset.num_classes, model=final,
                    task=dataset.task)
        if on_stage is not None:
            on_stage(i, stage_log[-1])
    return final, key, stage_log


def teacher_entry(teacher, dataset, cache, teacher_key) -> StageResult:
    """The stage log's first entry: the teacher's top-1, parameters and sparsity (cached)."""
    from edgecompress.recipes.cache import make_key

    metrics_key = make_key(teacher_key, dataset.fingerprint())
    metrics = cache.get_json("teacher.metrics", metrics_key)
    if metrics is None:
        metrics = {"accuracy": training.keras_metric(teacher, dataset), "params": keras_io.count_params(teacher),
                   "sparsity": keras_sparsity(teacher)}
        cache.put_json("teacher.metrics", metrics_key, metrics)
    return StageResult("teacher", teacher.name, metrics)


def _stage_name(index: int, stage) -> str:
    """The cache name of stage `index` (0-based): `stage1-distill`, ..."""
    return f"stage{index + 1}-{stage.STAGE}"
