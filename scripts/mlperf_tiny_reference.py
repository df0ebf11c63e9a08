#!/usr/bin/env python
"""Measure MLPerf Tiny's reference int8 files the way a build measures its own: file bytes, gzip bytes (level 9), file
bytes without the names no kernel reads (`lite.strip`, as `--target mcu` makes its files), and TensorFlow Lite Micro's view (whether it runs the file, its tensor arena, the op it refuses; `lite.micro`).

    python scripts/mlperf_tiny_reference.py PATH/TO/mlcommons-tiny --json docs/results/mlperf_tiny_reference.json

PATH is a checkout of GitHub's mlcommons/tiny (the files are not copied into this repository); its commit is
recorded beside the numbers.
"""

import argparse
import gzip
import sys
from pathlib import Path

from results_file import git_commit, stamp, write

FILES = {  # task -> the reference int8 file, as MLPerf Tiny v1.x ships it
    "keyword spotting": "benchmark/training/keyword_spotting/trained_models/kws_ref_model.tflite",
    "image classification": "benchmark/training/image_classification/trained_models/pretrainedResnet_quant.tflite",
    "visual wake words": "benchmark/training/visual_wake_words/trained_models/vww_96_int8.tflite",
    "anomaly detection": "benchmark/training/anomaly_detection/trained_models/ad01_int8.tflite",
}


def main(argv=None):
    from edgecompress.lite.micro import micro_fit
    from edgecompress.lite.strip import strip_names

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tiny", help="a checkout of mlcommons/tiny")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    root = Path(args.tiny)
    rows = {}
    for task, rel in FILES.items():
        data = (root / rel).read_bytes()
        rows[task] = {"file": rel, "file_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9)),
                      "stripped_bytes": len(strip_names(data)),
                      "tflm": micro_fit(root / rel).to_dict()}
    out = {**stamp("python scripts/mlperf_tiny_reference.py PATH/TO/mlcommons-tiny"
                   + (f" --json {args.json}" if args.json else "")),
           "source": "github.com/mlcommons/tiny", "source_commit": git_commit(root), "references": rows}
    write(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
