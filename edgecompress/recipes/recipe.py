"""Recipes: which compressions, in what order, with what parameters, as data.

A recipe is a JSON file:

    {
      "name": "my-recipe",
      "stages": [],
      "quantize": ["float32", "dynamic", "float16", "int8", "int8_float_io"]
    }

`stages` lists the training-time stages, applied in order to the model the
previous stage produced (none: the teacher goes straight to conversion):

- `{"stage": "distill", "width": 0.5, "temperature": 4, "alpha": 0.1, "epochs": 10}`
  (`techniques.configs.DistillConfig`)
- `{"stage": "factorize", "energy": 0.9, "finetune_epochs": 2}` (`techniques.configs.FactorizeConfig`)
- `{"stage": "prune", "final_sparsity": 0.8, "epochs": 3}` (`techniques.configs.PruneConfig`)

Unknown stages or parameters are refused with the list of valid ones.
`quantize` names the `.tflite` variants made from the final model; each is a
named variant (`edgecompress.quantize.schemes.VARIANTS`) or a full `ConversionConfig`
mapping, which takes its scheme's defaults.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgecompress.configs import Config, require
from edgecompress.errors import EdgeCompressError
from edgecompress.quantize.schemes import DEFAULT_VARIANTS, conversion
from edgecompress.recipes.registry import STAGES, stage_schema  # the one stage registry


@dataclasses.dataclass(frozen=True)
class Recipe(Config):
    """An ordered list of stages and the variants to convert the result to."""

    name: str = "default"
    stages: tuple = ()
    quantize: tuple = DEFAULT_VARIANTS

    def __post_init__(self):
        stages = []
        for i, s in enumerate(self.stages):
            if isinstance(s, dict):
                s = dict(s)
                kind = s.pop("stage", None)
                if kind not in STAGES:
                    raise EdgeCompressError(
                        f"Recipe {self.name!r}, stage {i}: unknown stage {kind!r}. "
                        f"Valid stages: {sorted(STAGES)}."
                    )
                s = STAGES[kind].config.from_dict(s)
            stages.append(s)
        object.__setattr__(self, "stages", tuple(stages))
        convs = tuple(conversion(q) for q in self.quantize)
        names = [c.name for c in convs]
        require(len(set(names)) == len(names), f"Recipe {self.name!r} names a variant twice: {names}")
        require(bool(convs), f"Recipe {self.name!r} has an empty `quantize` list; name at least 'float32'.")
        object.__setattr__(self, "quantize", convs)

    @classmethod
    def json_schema(cls) -> dict:
        """A recipe file's JSON Schema: its stages (`registry.stage_schema`) and its variants, each a name of
        `schemes.VARIANTS` or a `ConversionConfig` mapping."""
        from edgecompress.quantize.schemes import VARIANTS, ConversionConfig

        schema = super().json_schema()
        schema["properties"]["description"] = {"type": "string", "description": "What the recipe is for."}
        schema["properties"]["stages"] = {"type": "array", "items": stage_schema(),
                                          "description": "The compressions, in order, each on what the last made."}
        schema["properties"]["quantize"] = {
            "type": "array", "minItems": 1, "description": "The variants to convert the result to.",
            "items": {"anyOf": [{"enum": sorted(VARIANTS)}, ConversionConfig.json_schema()]}}
        return schema

    def lever_kinds(self) -> set:
        """The kinds of lever its stages pull: {"structured", "unstructured"}, a part of it, or empty."""
        return {lever[0] for lever in (stage.lever() for stage in self.stages) if lever}

    def levers(self) -> str:
        """What this recipe's stages pull, as a log line says it: "structured (speed and size): width 0.5;
        unstructured (size only): 75% sparse", or "none (quantization alone)"."""
        kinds = {}
        for stage in self.stages:
            lever = stage.lever()
            if lever:
                kinds.setdefault(lever[0], []).append(lever[1])
        names = {"structured": "structured (speed and size)", "unstructured": "unstructured (size only)"}
        return "; ".join(f"{names[k]}: {', '.join(v)}" for k, v in kinds.items()) or "none (quantization alone)"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "stages": [{"stage": s.STAGE, **s.to_dict()} for s in self.stages],
            "quantize": [c.to_dict() for c in self.quantize],
        }

    @classmethod
    def from_dict(cls, config):
        if not isinstance(config, dict):
            raise EdgeCompressError(f"A recipe must be a JSON object; received {type(config).__name__}.")
        config = dict(config)
        config.pop("description", None)
        config.pop("$schema", None)  # an editor's pointer to edgecompress/_schemas/
        unknown = sorted(set(config) - {"name", "stages", "quantize"})
        if unknown:
            raise EdgeCompressError(
                f"Unknown recipe key(s) {unknown}. Valid keys: ['name', 'description', 'stages', 'quantize']."
            )
        return cls(**config)


def load_recipe(path) -> Recipe:
    """Reads a recipe JSON file, with errors that name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeCompressError(f"Recipe file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise EdgeCompressError(f"Recipe {path} is not valid JSON: {e}") from None
    try:
        return Recipe.from_dict(data)
    except EdgeCompressError as e:
        raise EdgeCompressError(f"Recipe {path}: {e}") from None


RECIPES_DIR = Path(__file__).parent  # the recipe files sit beside this module


def named_recipe(name: str) -> Recipe:
    """A recipe shipped with edgecompress (`edgecompress/recipes/NAME.json`)."""
    path = RECIPES_DIR / f"{name}.json"
    if not path.exists():
        raise EdgeCompressError(
            f"Unknown recipe {name!r}. Shipped recipes: {sorted(p.stem for p in RECIPES_DIR.glob('*.json'))}, "
            "or pass a path to your own JSON file."
        )
    return load_recipe(path)


def resolve_recipe(spec) -> Recipe:
    """A recipe from None (the default), a shipped name, or a file path."""
    if spec is None:
        return default_recipe()
    if isinstance(spec, Recipe):
        return spec
    if Path(spec).suffix == ".json" or Path(spec).exists():
        return load_recipe(spec)
    return named_recipe(str(spec))


def default_recipe() -> Recipe:
    """The recipe a bare `invoke build-edge` runs: distill, prune, convert."""
    return named_recipe("default")


def config_key(recipe: Recipe) -> str:
    """Two recipes with equal keys make the same files: their stages and schemes, not their names."""
    import hashlib
    import json

    d = recipe.to_dict()
    return hashlib.sha256(json.dumps([d["stages"], d["quantize"]], sort_keys=True).encode()).hexdigest()[:16]
