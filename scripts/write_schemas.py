#!/usr/bin/env python
"""Write the JSON Schemas of recipe and search-space files, generated from their typed classes, into the package
(edgecompress/_schemas/). tests/test_schemas.py fails when the files differ from what the classes generate.

    python scripts/write_schemas.py
"""

import json
import sys

from edgecompress.schemas import SCHEMA_DIR, schemas


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, schema in schemas().items():
        (SCHEMA_DIR / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(SCHEMA_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
