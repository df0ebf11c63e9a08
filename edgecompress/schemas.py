"""The published JSON Schemas: of the files users write (recipes, search spaces) and of the files a build writes
that tools read (report.json, a study's trial records), generated from their typed classes (`Config.json_schema`,
`results.report_schema`), shipped in `edgecompress/_schemas/` (`scripts/write_schemas.py` writes them).

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

    from edgecompress.report.results import report_schema
    from edgecompress.search.records import TrialRecord

    out = {}
    for name, cls in (("recipe.schema.json", Recipe), ("search-space.schema.json", SearchSpace)):
        schema = cls.json_schema()
        schema["properties"]["$schema"] = {"type": "string", "description": "This schema's location, for editors."}
        out[name] = {"$schema": DIALECT, "$id": f"edgecompress/{name}", **schema}
    for name, schema in (("report.schema.json", report_schema()), ("trial-record.schema.json",
                                                                   TrialRecord.json_schema())):
        out[name] = {"$schema": DIALECT, "$id": f"edgecompress/{name}", **schema}
    return out


def check(document: dict, name: str) -> None:
    """Validates `document` against the published schema `name` (`report.schema.json`...); raises
    `jsonschema.ValidationError` naming the path of what is wrong. Needs `jsonschema` (the `test` extra)."""
    import json

    import jsonschema

    jsonschema.validate(document, json.loads((SCHEMA_DIR / name).read_text()))
