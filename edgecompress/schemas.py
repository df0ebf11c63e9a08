"""The published JSON Schemas of the files users write: recipes and search spaces, generated from their typed
classes (`Config.json_schema`), shipped in `edgecompress/_schemas/` (`scripts/write_schemas.py` writes them).

Point an editor at them for completion and checks, e.g. VS Code's `json.schemas` setting, or a file's own
`"$schema"` key (which the loaders ignore).
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent / "_schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, dict]:
    """File name -> schema, for each kind of file a user writes."""
    from edgecompress.recipes.recipe import Recipe
    from edgecompress.search.space import SearchSpace

    out = {}
    for name, cls in (("recipe.schema.json", Recipe), ("search-space.schema.json", SearchSpace)):
        schema = cls.json_schema()
        schema["properties"]["$schema"] = {"type": "string", "description": "This schema's location, for editors."}
        out[name] = {"$schema": DIALECT, "$id": f"edgecompress/{name}", **schema}
    return out
