#!/usr/bin/env python
"""Make the two-output example (benchmarks/two_heads.py) and build it twice: `--recipe quantize-only`
and the closed loop (`--budget-minutes 3`), each output measured; prints each build's files and metrics.

    python scripts/several_outputs_example.py build/two-heads
"""

import json
import sys

sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))  # benchmarks/
from pathlib import Path

from benchmarks import two_heads
from edgecompress.builder.options import BuildOptions
from edgecompress.lite.tasks import says_each
from edgecompress.pipeline import build_edge


def main(out):
    out = Path(out)
    print("Keras 3:", json.dumps(two_heads.make(out)))
    for name, extra in (("quantize-only", {"recipe": "quantize-only"}), ("loop", {"budget_minutes": 3.0})):
        report = build_edge(BuildOptions(model=str(out / "heads.keras"), data=str(out / "heads.npz"),
                                         out_dir=str(out / name), verbose=0, **extra))
        for a in report["artifacts"]:
            mark = " (selected)" if a["name"] == report.get("selected") else ""
            print(f"{name}: {a['name']}{mark}: {a['size_bytes']} bytes ({a['gzip_bytes']} gzipped), "
                  f"{says_each(a['outputs'])}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/two-heads")
