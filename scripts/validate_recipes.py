"""Scores recipes on a benchmark's validation split: how the shipped search space was chosen.

    python scripts/validate_recipes.py build/benchmark scripts/space_experiments.json [--only NAME,...]

BENCHMARK is the folder of `invoke benchmark --search` (its `teacher.keras`,
`calibration_data/` and the search's stage cache `search/.cache`, so
students the search trained are reused). RECIPES is a JSON object
{name: recipe}, each a recipe as `--recipe` takes it (`stages`, `quantize`;
the first scheme is measured). Every recipe trains on the training images
less the search's validation split and is scored on that split, as a search
trial is; the test split is never read. One line per recipe: validation
top-1, gzip size, each stage's top-1, seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))  # benchmarks/
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path, help="folder of `invoke benchmark --search`")
    parser.add_argument("recipes", type=Path, help="JSON object {name: recipe}")
    parser.add_argument("--only", default="", help="comma-separated names to run (default: all)")
    parser.add_argument("--data", default="fashion-mnist", help="the benchmark's dataset (default: fashion-mnist)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from edgecompress.data import calibration
    from edgecompress.models import keras_io, training
    from edgecompress.recipes.cache import StageCache
    from edgecompress.configs import Preprocessing
    from edgecompress.data.loading import load_dataset
    from edgecompress.builder.measure import convert_and_measure
    from edgecompress.recipes.recipe import Recipe
    from edgecompress.search.space import load_space
    from edgecompress.recipes.runner import run_stages
    from benchmarks.recipes import comparison_teacher_key

    out = args.benchmark
    teacher = keras_io.load_model(out / "teacher.keras")
    dataset = load_dataset(args.data, Preprocessing(), seed=args.seed)
    val = dataset.validation_split(load_space("default").validation_fraction, args.seed)
    pixels = calibration.load_calibration_images(out / "calibration_data", dataset.preprocessing)
    cache = StageCache(out / "search" / ".cache")
    teacher_key = comparison_teacher_key(out / "teacher.keras")  # as `invoke benchmark` keys it
    recipes = json.loads(args.recipes.read_text())
    only = {n for n in args.only.split(",") if n}
    baseline = training.keras_metric(teacher, val)
    print(f"teacher: validation top-1 {100 * baseline:.2f}%", flush=True)
    for name, spec in recipes.items():
        if only and name not in only:
            continue
        t0 = time.time()
        recipe = Recipe.from_dict({**spec, "name": name})
        final, key, log = run_stages(teacher, val, recipe, cache, teacher_key, seed=args.seed, verbose=0)
        arts, failed = convert_and_measure(final, recipe.quantize[:1], pixels, val, cache, key,
                                           prefix=f"{name}_", runs=5, warmup=1)
        if failed:
            print(f"{name}: failed: {failed[0]['error']}", flush=True)
            continue
        a = arts[0]
        stages = " ".join(f"{s.stage}={100 * s.metrics['accuracy']:.2f}" for s in log[1:] if "accuracy" in s.metrics)
        print(f"{name}: validation {100 * a.accuracy:.2f}% ({100 * (a.accuracy - baseline):+.2f}) at "
              f"{a.gzip_bytes:,} bytes gzipped; stages {stages} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
