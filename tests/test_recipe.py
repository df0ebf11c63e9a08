import json

import pytest

from edgecompress.errors import EdgeCompressError
from edgecompress.recipes.recipe import RECIPES_DIR, STAGES, Recipe, load_recipe, named_recipe, resolve_recipe


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_recipes_load_and_round_trip(path):
    r = load_recipe(path)
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_default_recipe_combines_stages():
    r = resolve_recipe(None)
    assert [s.STAGE for s in r.stages] == ["distill", "prune"]
    assert [c.name for c in r.quantize] == ["float32", "dynamic", "float16", "int8", "int8_float_io"]


def test_unknown_stage_lists_valid_ones():
    import re

    with pytest.raises(EdgeCompressError, match=re.escape(f"unknown stage 'quantise'. Valid stages: {sorted(STAGES)}")):
        Recipe.from_dict({"stages": [{"stage": "quantise"}]})


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(EdgeCompressError, match=r"Unknown parameter\(s\) \['sparsity'\] for PruneConfig. Valid parameters: \['final_sparsity'"):
        Recipe.from_dict({"stages": [{"stage": "prune", "sparsity": 0.5}]})


@pytest.mark.parametrize("recipe, needle", [
    ({"stages": [], "quantize": ["int3"]}, "Unknown quantization variant 'int3'"),
    ({"stages": [], "quantize": []}, "empty `quantize`"),
    ({"stages": [], "quantize": ["int8", "int8"]}, "names a variant twice"),
    ({"steps": []}, r"Unknown recipe key\(s\) \['steps'\]"),
])
def test_bad_recipes(recipe, needle):
    with pytest.raises(EdgeCompressError, match=needle):
        Recipe.from_dict(recipe)


def test_file_errors_name_the_file(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("{not json")
    with pytest.raises(EdgeCompressError, match="r.json is not valid JSON"):
        load_recipe(p)
    p.write_text(json.dumps({"stages": [{"stage": "prune", "final_sparsity": 1.2}]}))
    with pytest.raises(EdgeCompressError, match=r"r.json: .*final_sparsity=1.2"):
        load_recipe(p)
    with pytest.raises(EdgeCompressError, match="Unknown recipe 'nope'. Shipped recipes"):
        named_recipe("nope")


def test_registry_lists_every_stage_once():
    assert sorted(STAGES) == ["cluster", "distill", "factorize", "prune"]
    for name, info in STAGES.items():
        assert info.config.STAGE == name and info.implementation.startswith("edgecompress.")
        assert info.summary


def test_registry_refuses_a_duplicate_and_names_it():
    from edgecompress.recipes.registry import register
    from edgecompress.techniques.configs import PruneConfig

    with pytest.raises(ValueError, match="Stage 'prune' is already registered \\(PruneConfig\\)"):
        register(PruneConfig, "edgecompress.techniques.prune:prune", "again")





def test_a_width_scaled_students_cache_key_holds_the_channel_floor_and_other_stages_keys_do_not():
    """A student made under another `channels.MIN_CHANNELS` is never reused from a stage cache: the distill
    stage's key holds the floor, and a recipe without width scaling keeps the key it had."""
    from types import SimpleNamespace

    from edgecompress.models import channels
    from edgecompress.recipes.runner import stage_keys

    data = SimpleNamespace(fingerprint=lambda: "data")
    default, lowrank = named_recipe("default"), named_recipe("lowrank")
    before = stage_keys(default, "teacher", data), stage_keys(lowrank, "teacher", data)
    channels.MIN_CHANNELS, was = 4, channels.MIN_CHANNELS
    try:
        after = stage_keys(default, "teacher", data), stage_keys(lowrank, "teacher", data)
    finally:
        channels.MIN_CHANNELS = was
    assert after[0][0] != before[0][0] and after[0][1] != before[0][1]  # distill, and the prune chained to it
    assert after[1] == before[1]
