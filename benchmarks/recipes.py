"""Recipes compared side by side on one teacher: the `invoke benchmark` table.

Trains (or loads) one teacher, runs each recipe on it, measures every
artifact with the interpreter, and writes `benchmark.md` and
`benchmark.json`: the numbers quoted in the README.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from edgecompress.lite.latency import DEFAULT_RUNS
from edgecompress.data import calibration
from edgecompress.models import keras_io, training
from edgecompress.report.write import markdown_table
from edgecompress.configs import Preprocessing, TrainConfig
from edgecompress.data.loading import load_dataset
from edgecompress.recipes.cache import StageCache, make_key
from edgecompress.lite.fileio import atomic_write_json, atomic_write_text, sha256_path
from edgecompress.builder.selection import Constraints, GateError
from edgecompress.builder.measure import publish
from edgecompress.builder.steps import compress
from edgecompress.recipes.recipe import resolve_recipe

logger = logging.getLogger(__name__)


def compare_recipes(data="fashion-mnist", recipes=("default", "tfmot-guide"), out_dir="build/benchmark", *,
              teacher_epochs=15, seed=0, runs=DEFAULT_RUNS, verbose=1, teacher=None, search=None, budget_minutes=30.0,
              max_accuracy_drop=None, max_file_kb=None, max_latency_ms=None, compare=("grid",)) -> dict:
    """Runs `recipes` on one teacher and writes the comparison table.

    With `search` (a search space name or file), also searches on the same
    teacher: its artifacts, `report.md`/`report.html` and `selected.tflite`
    go to `<out_dir>/search/`, the table gains the search's Pareto front
    (by gzip size) and its selected artifact, and `bench["comparison"]`
    puts the selected artifact next to each recipe's int8 file. Each space
    in `compare` (default: `grid`, the search before Optuna) is searched too,
    with the same budget on the same teacher, into `<out_dir>/search-NAME/`;
    `bench["hypervolume"]` holds each front's hypervolume on the test split
    (reference: the teacher's float32 gzip bytes and its top-1 less the
    allowed drop). With a search, the teacher trains on the training images
    less the search's validation split.

    Raises:
        GateError: when the search ran but nothing met the constraints (the
            table is written first).
    """
    from edgecompress.lite.fileio import folder_lock

    out_dir = Path(out_dir)
    with folder_lock(out_dir, "invoke benchmark"):
        return _compare(data, recipes, out_dir, teacher_epochs=teacher_epochs, seed=seed, runs=runs, verbose=verbose,
                      teacher=teacher, search=search, budget_minutes=budget_minutes,
                      max_accuracy_drop=max_accuracy_drop, max_file_kb=max_file_kb, max_latency_ms=max_latency_ms,
                      compare=tuple(compare or ()) if search else ())


def comparison_teacher_key(path) -> str:
    """The stage-cache key of a benchmark's teacher file: its bytes (`scripts/validate_recipes.py` reuses the
    search's cached stages through it)."""
    return make_key("study-teacher", sha256_path(path))  # the key it always had: caches stay valid


def _compare(data, recipes, out_dir: Path, *, teacher_epochs, seed, runs, verbose, teacher, search, budget_minutes,
           max_accuracy_drop, max_file_kb, max_latency_ms, compare) -> dict:
    from edgecompress.search.space import load_space

    started = time.time()
    spaces = [(load_space(search), "search")] + [(s, f"search-{s.name}") for s in map(load_space, compare)] if search else []
    dataset = load_dataset(data, Preprocessing(), seed=seed) if teacher is None else None
    if teacher is None:
        fit = dataset
        if spaces:  # the search's validation split stays out of everything the teacher learned from
            fit = dataset.without_validation(spaces[0][0].validation_fraction, seed)
        logger.info("Training the teacher on %s (%d images, %d epochs)", dataset.name, len(fit.y_train), teacher_epochs)
        model = training.train_default_teacher(fit, TrainConfig(epochs=teacher_epochs, seed=seed), verbose=verbose)
        keras_io.save_model(model, out_dir / "teacher.keras", dataset.model_spec())
    else:
        from edgecompress.models.user import open_model

        user = open_model(teacher, data, seed=seed)
        model, dataset = user.model, user.dataset
    cal_dir = out_dir / "calibration_data"
    calibration.write_calibration_images(dataset, cal_dir, seed=seed)
    pixels = calibration.load_calibration_images(cal_dir, dataset.preprocessing)
    cache = StageCache(out_dir / ".cache")
    teacher_key = comparison_teacher_key(out_dir / "teacher.keras" if teacher is None else teacher)
    rows, runs_out = [], {}
    for name in recipes:
        recipe = resolve_recipe(name)
        logger.info("Recipe %r", recipe.name)
        t0 = time.time()
        built = compress(model, dataset, recipe, pixels, cache, teacher_key, seed=seed, verbose=verbose, runs=runs)
        publish(built.artifacts, out_dir / recipe.name)
        result = {**built.report_fields(), "seconds": round(time.time() - t0, 1)}
        runs_out[recipe.name] = result
        for a in result["artifacts"]:
            if a["name"] == "teacher_float32" and rows:
                continue
            rows.append((recipe.name if a["name"] != "teacher_float32" else "teacher", a))
    bench = {"dataset": dataset.describe(), "recipes": runs_out, "seconds": round(time.time() - started, 1)}
    gate_error = None
    constraints = Constraints(max_accuracy_drop, max_file_kb, max_latency_ms)
    for space, folder in spaces:
        label = "search" if folder == "search" else space.name
        # Each search starts cold, with its own stage cache: neither inherits the other's trained students.
        found, error = _search(model, dataset, space, pixels, StageCache(out_dir / folder / ".cache"), teacher_key,
                               out_dir / folder,
                               budget_minutes=budget_minutes, seed=seed, verbose=verbose, runs=runs,
                               constraints=constraints)
        gate_error = gate_error or error
        bench.setdefault("searches", {})[label] = {"search": found["search"], "selected": found.get("selected"),
                                                   "constraints": found.get("constraints") or {}, "folder": folder}
        for a in found["artifacts"]:
            if a["name"] == found["selected"] or (a.get("pareto", {}).get("size") and a["name"] != "teacher_float32"):
                rows.append((f"{label} (selected)" if a["name"] == found["selected"] else f"{label} (front)", a))
        bench["seconds"] = round(time.time() - started, 1)
    if spaces:
        bench["search"] = bench["searches"]["search"]
        bench["hypervolume"] = _hypervolumes(rows, max_accuracy_drop)
    teacher_row = next(a for r, a in rows if r == "teacher")
    table = [["recipe", "artifact", "size KB", "gzip KB", "x smaller (gzip)", "top-1 %", "delta pts", "sparsity %", "p50 ms"]]
    for recipe_name, a in rows:
        table.append([recipe_name, a["name"], f"{a['size_bytes'] / 1024:,.1f}", f"{a['gzip_bytes'] / 1024:,.1f}",
                      f"{teacher_row['gzip_bytes'] / a['gzip_bytes']:.1f}", f"{100 * a['accuracy']:.2f}",
                      f"{100 * (a['accuracy'] - teacher_row['accuracy']):+.2f}", f"{100 * a['sparsity']:.1f}",
                      f"{a['latency_ms']['p50']:.3f}"])
    comparison = []
    selected = next((a for r, a in rows if r == "search (selected)"), None)  # the first space's
    if selected:
        for recipe_name, a in rows:
            if recipe_name in runs_out and a["name"] == "int8":
                comparison.append(f"Selected `{selected['name']}` against {recipe_name}'s int8: "
                                  f"{a['gzip_bytes'] / selected['gzip_bytes']:.2f}x smaller in gzip bytes "
                                  f"({selected['gzip_bytes'] / 1024:.1f} vs {a['gzip_bytes'] / 1024:.1f} KB), top-1 "
                                  f"{100 * selected['accuracy']:.2f}% vs {100 * a['accuracy']:.2f}% "
                                  f"({100 * (selected['accuracy'] - a['accuracy']):+.2f} points).")
    bench["comparison"] = comparison
    bench["table"] = table
    lines = [f"# Benchmark on {dataset.name} ({len(dataset.y_train)} train / {len(dataset.y_test)} test)", "",
             markdown_table(table), ""]
    for label, s in bench.get("searches", {}).items():
        c = {k: v for k, v in s["constraints"].items() if v is not None}
        counts = ", ".join(f"{n} {k}" for k, n in s["search"].get("counts", {}).items())
        hv = bench["hypervolume"].get(label)
        lines += [f"Search `{s['search']['space']['name']}` ({s['search'].get('sampler', 'grid')}): "
                  f"{len(s['search']['candidates'])} trials ({counts}) in {s['search']['seconds']:.0f} s, constraints "
                  f"{c}: " + (f"selected `{s['selected']}`." if s["selected"] else "nothing met them.")
                  + (f" Hypervolume of its front on the test split: {hv:,.0f} KB x points." if hv is not None else "")
                  + f" Full report: `{s['folder']}/report.md`.", ""]
    if comparison:
        lines += [f"- {line}" for line in comparison] + [""]
    lines += ["## Stages", ""]
    for name, result in runs_out.items():
        for s in result["stages"]:
            m = {k: v for k, v in s["metrics"].items() if not isinstance(v, (list, dict))}
            lines.append(f"- {name} / **{s['stage']}**: " + ", ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    lines += ["", f"Total time: {bench['seconds']:.0f} s."]
    atomic_write_json(out_dir / "benchmark.json", bench)
    atomic_write_text(out_dir / "benchmark.md", "\n".join(lines) + "\n")
    if gate_error is not None:
        raise gate_error
    return bench


def _hypervolumes(rows, max_accuracy_drop) -> dict:
    """Each search's front, its hypervolume on the test split (`pareto.front_hypervolume`, KB x points)."""
    from edgecompress.report.pareto import front_hypervolume

    teacher = next(a for r, a in rows if r == "teacher")
    out = {}
    for label in dict.fromkeys(r.rsplit(" (", 1)[0] for r, _ in rows if r.endswith(("(front)", "(selected)"))):
        pts = [(a["gzip_bytes"], a["accuracy"]) for r, a in rows if r.rsplit(" (", 1)[0] == label]
        out[label] = front_hypervolume(pts, (teacher["gzip_bytes"], teacher["accuracy"]), max_accuracy_drop)["value"]
    return out


def _search(model, dataset, space, pixels, cache, teacher_key, out_dir: Path, *, budget_minutes, seed, verbose, runs,
            constraints):
    """The comparison's search: the same tail as a build (publish, select, report) into `out_dir`."""
    from edgecompress.builder.measure import MeasureSettings
    from edgecompress.builder.options import SearchSettings
    from edgecompress.builder.steps import finish
    from edgecompress.search.run import search
    from edgecompress.search.space import load_space

    settings = SearchSettings(budget_minutes=budget_minutes, constraints=constraints,
                              measure=MeasureSettings(runs=runs), holdout="training",  # its teacher trained without them
                              seed=seed, verbose=verbose)
    result = search(model, dataset, load_space(space), pixels, cache, teacher_key, settings, out_dir=out_dir)
    facts = {"dataset": dataset.describe(), "seed": seed, "latency_runs": runs}
    try:
        return finish(result, facts, out_dir, constraints), None
    except GateError as e:
        from edgecompress.report.write import load_report

        return load_report(out_dir), e
