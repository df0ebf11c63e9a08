"""The published JSON Schemas (`edgecompress/schemas.py`): generated from the typed classes, committed as they are
generated, valid against draft 2020-12, met by every bundled recipe and space, and refusing what the loaders
refuse."""

import json

import jsonschema
import pytest

from edgecompress.recipes.recipe import RECIPES_DIR, load_recipe
from edgecompress.schemas import SCHEMA_DIR, schemas
from edgecompress.search.space import SPACES_DIR, load_space


def _validator(name):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_committed_schemas_are_what_the_classes_generate():
    for name, schema in schemas().items():
        assert json.loads((SCHEMA_DIR / name).read_text()) == json.loads(json.dumps(schema)), (
            f"{name} is stale: run `python scripts/write_schemas.py`")


@pytest.mark.parametrize("kind, folder", [("recipe.schema.json", RECIPES_DIR), ("search-space.schema.json", SPACES_DIR)])
def test_every_bundled_file_meets_its_schema(kind, folder):
    v = _validator(kind)
    files = sorted(folder.glob("*.json"))
    assert files
    for f in files:
        assert not list(v.iter_errors(json.loads(f.read_text()))), f


@pytest.mark.parametrize("bad", [
    {"stages": [{"stage": "prune", "final_sparsity": "high"}]},  # a string for a number
    {"stages": [{"stage": "prune", "sparsity": 0.5}]},  # no such parameter
    {"stages": [{"stage": "shrink"}]},  # no such stage
    {"quantize": ["int3"]},  # no such variant
    {"colour": "red"},  # no such key
])
def test_the_recipe_schema_refuses_what_the_loader_refuses(tmp_path, bad):
    from edgecompress.errors import EdgeCompressError

    recipe = {"name": "x", "stages": [], "quantize": ["int8"], **bad}
    assert list(_validator("recipe.schema.json").iter_errors(recipe))
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    with pytest.raises(EdgeCompressError):
        load_recipe(tmp_path / "r.json")


def test_a_file_may_name_its_schema_for_editors(tmp_path):
    recipe = {"$schema": "edgecompress/recipe.schema.json", "name": "x", "quantize": ["int8"]}
    assert not list(_validator("recipe.schema.json").iter_errors(recipe))
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    assert load_recipe(tmp_path / "r.json").name == "x"
    space = json.loads((SPACES_DIR / "default.json").read_text())
    (tmp_path / "s.json").write_text(json.dumps({"$schema": "edgecompress/search-space.schema.json", **space}))
    assert load_space(tmp_path / "s.json").name == space["name"]
    assert list(_validator("search-space.schema.json").iter_errors({**space, "sampler": "annealing"}))



def test_the_report_schema_refuses_a_report_tools_could_not_read():
    import jsonschema

    from edgecompress.schemas import check

    good = {"schema_version": 2, "baseline": "float32", "stages": [], "failed": [],
            "artifacts": [{"name": "float32", "path": "float32.tflite", "quantization": "float32", "size_bytes": 10,
                           "gzip_bytes": 9, "sha256": "ab", "accuracy": 0.9, "pareto": {"size": True}}]}
    check(good, "report.schema.json")  # extra measures beside an artifact's fields are allowed
    for bad in ({**good, "artifacts": []}, {k: v for k, v in good.items() if k != "baseline"},
                {**good, "artifacts": [{**good["artifacts"][0], "gzip_bytes": "9"}]},
                {**good, "schema_version": 3}):
        with pytest.raises(jsonschema.ValidationError):
            check(bad, "report.schema.json")
