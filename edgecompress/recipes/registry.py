"""The one registry of training-time stages: name -> config type -> implementation.

A stage is a registered type (`Stage`): a frozen config dataclass from
`stage_configs` whose `STAGE` is the name a recipe uses, and an
implementation `"module:function"` called as
`function(model, dataset, config, *, seed, verbose)` and returning
`(new model, metrics)`. Implementations are imported only when their stage
runs: parsing a recipe or a search space imports no TensorFlow.

Recipes, search spaces, `invoke check-model`, the README's stage list and
every "valid stages" message read `STAGES`. Adding a stage is a config class
in `stage_configs`, an implementation module, and one `register` call here.

Example:

>>> from edgecompress.recipes.registry import STAGES, run_stage
>>> config = STAGES["prune"].config(final_sparsity=0.5)
>>> model, metrics = run_stage(config, model, dataset)
"""

from __future__ import annotations

import dataclasses
import importlib
from edgecompress.errors import EdgeCompressError
from edgecompress.techniques.configs import ClusterConfig, DistillConfig, FactorizeConfig, PruneConfig


@dataclasses.dataclass(frozen=True)
class StageInfo:
    """One row of the registry."""

    name: str
    config: type
    implementation: str
    summary: str


STAGES: dict[str, StageInfo] = {}


def register(config: type, implementation: str, summary: str) -> StageInfo:
    """Adds a stage; refuses a second registration under the same name."""
    if not isinstance(getattr(config, "STAGE", None), str) or not config.STAGE:
        raise ValueError(f"{config.__name__} has no STAGE name to register under.")
    if config.STAGE in STAGES:
        raise ValueError(f"Stage {config.STAGE!r} is already registered ({STAGES[config.STAGE].config.__name__}); "
                         f"the stage registry refuses {config.__name__} under the same name.")
    module, sep, function = implementation.partition(":")
    if not (module.startswith("edgecompress.") and sep and function):
        raise ValueError(f"Received an invalid implementation {implementation!r}; expected 'edgecompress.module:function'.")
    STAGES[config.STAGE] = StageInfo(config.STAGE, config, implementation, summary)
    return STAGES[config.STAGE]


def get_stage(name: str) -> StageInfo:
    """The registry row of stage `name`, or an error listing the valid ones."""
    if name not in STAGES:
        raise EdgeCompressError(f"Unknown stage {name!r}. Valid stages: {sorted(STAGES)}.")
    return STAGES[name]


def run_stage(config, model, dataset, *, teacher=None, seed: int = 0, verbose: int = 1):
    """Runs `config`'s stage on `model`; returns (new model, metrics)."""
    info = get_stage(config.STAGE)
    module, _, function = info.implementation.partition(":")
    run = getattr(importlib.import_module(module), function)
    # The implementations take the model the previous stage made (distillation's teacher is that model);
    # the build's original model goes to every one as `build_teacher` (pruning with `distill` learns from it).
    return run(model, dataset, config, seed=seed, verbose=verbose, build_teacher=teacher)


register(DistillConfig, "edgecompress.techniques.distill:distill",
         "knowledge distillation into a width-scaled (or given) student")
register(FactorizeConfig, "edgecompress.techniques.factorize:factorize", "low-rank (truncated SVD) factorization of Dense and Conv2D")
register(PruneConfig, "edgecompress.techniques.prune:prune", "tfmot magnitude pruning while fine-tuning (optionally QAT)")
register(ClusterConfig, "edgecompress.techniques.cluster:cluster",
         "tfmot weight clustering while fine-tuning (optionally CQAT, or PCQAT after pruning)")


def stage_schema() -> dict:
    """A recipe's (or a space's) stage as JSON Schema: one of the registered stages, named by `"stage"`, with that
    stage's own parameters (`Config.json_schema`)."""
    options = []
    for name, info in sorted(STAGES.items()):
        schema = info.config.json_schema()
        schema["properties"] = {"stage": {"const": name, "description": info.summary}, **schema["properties"]}
        schema["required"] = ["stage", *schema.get("required", [])]
        options.append(schema)
    return {"oneOf": options}
