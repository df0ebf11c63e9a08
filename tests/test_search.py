"""`--search`: search spaces as data, the time budget, Pareto fronts, selection."""

import json
from pathlib import Path
import re

import pytest

from conftest import run_invoke
from edgecompress.errors import EdgeCompressError
from edgecompress.report.pareto import mark_pareto, pareto
from edgecompress.report.results import Artifact
from edgecompress.recipes.registry import STAGES
from edgecompress.search import records
from edgecompress.search.run import search
from edgecompress.search.space import SearchSpace, candidate_name, load_space

def _settings(options=None, *, max_accuracy_drop=None, **changes):
    """`SearchSettings` of `options` (a `BuildOptions`) with an accuracy limit and `changes`."""
    from edgecompress.builder.options import BuildOptions

    return (options or BuildOptions()).replace(max_accuracy_drop=max_accuracy_drop).search_settings(**changes)


def _search(*args, out_dir=None, **kwargs) -> dict:
    """The search's typed result as the report serializes it."""
    return search(*args, _settings(**kwargs), out_dir=out_dir).report_fields()


TINY_SPACE = {
    "name": "tiny",
    "stages": [{"stage": "distill", "width": 0.5, "epochs": 1, "baseline": False},
               {"stage": "prune", "final_sparsity": 0.5, "initial_sparsity": 0.0, "epochs": 1}],
    "grid": {"prune.final_sparsity": [None, 0.5]},
    "quantize": ["int8", "float16"],
}


def test_grid_makes_one_recipe_per_combination_and_null_drops_the_stage():
    space = SearchSpace.from_dict({**TINY_SPACE, "quantize": ["int8"], "grid": {"distill.width": [0.5, 0.25],
                                                                                "prune.final_sparsity": [None, 0.6]}})
    cands = space.candidates()
    assert [r.name for _, r in cands] == ["width0.5-final_sparsity_none", "width0.5-final_sparsity0.6",
                                          "width0.25-final_sparsity_none", "width0.25-final_sparsity0.6"]
    stages = {r.name: [(s.STAGE, getattr(s, "width", None) or getattr(s, "final_sparsity", None)) for s in r.stages]
              for _, r in cands}
    assert stages["width0.25-final_sparsity_none"] == [("distill", 0.25)]
    assert stages["width0.5-final_sparsity0.6"] == [("distill", 0.5), ("prune", 0.6)]
    assert SearchSpace.from_json(space.to_json()) == space


@pytest.mark.parametrize("grid, needle", [
    ({"quantize.mode": [1]}, re.escape(f"unknown stage 'quantize'. Valid stages: {sorted(STAGES)}")),
    ({"factorize.energy": [0.9]}, "names stage 'factorize', which is not in `stages`"),
    ({"prune.sparsity": [0.5]}, "prune has no parameter 'sparsity'. Valid parameters: .*final_sparsity"),
    ({"prune.final_sparsity": []}, "non-empty list"),
    ({"prune.final_sparsity": [1.5]}, "final_sparsity"),
    ({"prune.final_sparsity": {"low": 0.9, "high": 0.5}}, r"low > high \(0.9 > 0.5\)"),
    ({"prune.final_sparsity": {"low": 0.5}}, "a range is"),
    ({"prune.final_sparsity": {"low": 0.5, "high": 0.99}}, "final_sparsity"),  # 0.99 ok; see the next
    ({"prune.final_sparsity": {"low": 0.5, "high": 1.5}}, "final_sparsity"),
    ({"prune": [0.5]}, r"takes \[true, false\]"),
    ({"distill.epochs": {"low": 1, "high": 3, "log": True, "step": 1}}, "a `log` range needs"),
])
def test_bad_grid_names_the_key_and_the_valid_ones(grid, needle):
    if grid == {"prune.final_sparsity": {"low": 0.5, "high": 0.99}}:
        SearchSpace.from_dict({**TINY_SPACE, "grid": grid})  # both ends valid: accepted
        return
    with pytest.raises(EdgeCompressError, match=needle):
        SearchSpace.from_dict({**TINY_SPACE, "grid": grid})


def test_ranges_stage_switches_and_schemes_become_optuna_parameters():
    import optuna

    space = SearchSpace.from_dict({
        "name": "r", "stages": TINY_SPACE["stages"] + [{"stage": "cluster", "number_of_clusters": 16}],
        "grid": {"prune.final_sparsity": {"low": 0.5, "high": 0.9}, "cluster": [True, False],
                 "cluster.number_of_clusters": {"low": 4, "high": 32, "log": True}, "distill.width": [0.25, 0.5]},
        "quantize": ["int8", "int16x8"]})
    params = space.parameters()
    assert params["cluster.number_of_clusters"].is_int and not params["prune.final_sparsity"].is_int
    assert params["quantize"].choices == ("int8", "int16x8")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        choice = space.suggest(trial)
        recipe = space.recipe(choice)
        kinds = [s.STAGE for s in recipe.stages]
        assert ("cluster" in kinds) == choice["cluster"]
        assert 0.5 <= recipe.stages[1].final_sparsity <= 0.9 and len(str(recipe.stages[1].final_sparsity)) <= 5
        assert [c.name for c in recipe.quantize] == [choice["quantize"]]
        assert ("number_of_clusters" in recipe.name) == choice["cluster"]  # a dropped stage's values are not named
        seen.add(choice["quantize"])
        study.tell(trial, [0.5, 1.0])
    assert seen == {"int8", "int16x8"}
    with pytest.raises(EdgeCompressError, match="range without a `step`"):
        SearchSpace.from_dict({**space.to_dict(), "sampler": "grid"})
    with pytest.raises(EdgeCompressError, match=r"expected one of \['tpe', 'nsga2', 'grid', 'random'\]"):
        SearchSpace.from_dict({**space.to_dict(), "sampler": "cmaes"})


def test_equal_recipes_share_one_config_key_whatever_the_dropped_stage_was_given():
    from edgecompress.recipes.recipe import config_key

    space = SearchSpace.from_dict({**TINY_SPACE, "grid": {"prune": [True, False], "prune.final_sparsity": [0.5, 0.7]}})
    keys = {(c["prune"], c["prune.final_sparsity"], c["quantize"]): config_key(r) for c, r in space.candidates()}
    assert keys[(False, 0.5, "int8")] == keys[(False, 0.7, "int8")]  # no pruning: the sparsity does not matter
    assert len({keys[(True, 0.5, "int8")], keys[(True, 0.7, "int8")], keys[(False, 0.5, "int8")],
                keys[(False, 0.5, "float16")]}) == 4


def test_the_template_is_the_first_choice_where_the_space_holds_it():
    space = load_space("default")
    first = space.template_choice()
    assert first["quantize"] == "int8" and first["cluster"] is True and first["factorize"] is True
    assert space.recipe(first).stages == space.recipe({**first}).stages
    off_grid = SearchSpace.from_dict({**TINY_SPACE, "grid": {"prune.final_sparsity": {"low": 0.6, "high": 0.9, "step": 0.2}}})
    assert off_grid.template_choice() == {"quantize": "int8"}  # 0.5 is outside the range: the sampler picks


def test_shipped_space_loads_and_unknown_names_list_the_shipped(tmp_path):
    space = load_space("default")
    assert space.sampler == "tpe" and space.selective_int8 and {"cluster", "quantize"} <= set(space.parameters())
    assert "int16x8" in space.quantize and any(s["stage"] == "cluster" for s in space.stages)
    auto = load_space("auto")  # the closed loop: a ladder from PTQ of the model itself to students
    assert [r["name"] for r in auto.ladder][:5] == ["model", "model-dynamic", "model-int4", "model-int4-mixed75", "prune-50"]
    assert auto.recipe(auto.rung_choice(auto.ladder[0])).stages == ()  # the first rung is PTQ alone
    grid = load_space("grid")  # the search before Optuna: 16 trained candidates x 3 schemes
    assert grid.sampler == "grid" and len(grid.candidates()) == 48
    with pytest.raises(EdgeCompressError, match=r"Shipped spaces: \['auto', 'default', 'grid'\]"):
        load_space("nope")
    bad = tmp_path / "s.json"
    bad.write_text('{"name": "x", "grid": {}, "colour": 1}')
    with pytest.raises(EdgeCompressError, match=r"s.json.*Unknown parameter\(s\) \['colour'\]"):
        load_space(str(bad))


def test_the_closed_loops_per_tensor_rungs_only_convert_what_their_parent_trained():
    """`int8_per_tensor` rungs climb from a rung that met the limit, with its stages exactly (the stage cache
    makes them a conversion), and one scale per kernel is a scheme TPE may choose too."""
    from edgecompress.recipes.recipe import config_key

    auto = load_space("auto")
    rungs = {r["name"]: r for r in auto.ladder}
    per_tensor = [r for r in auto.ladder if r["choice"].get("quantize") == "int8_per_tensor"]
    assert [r["name"] for r in per_tensor] == ["student-0.5-per-tensor", "student-0.375-per-tensor", "student-0.25-per-tensor",
                                              "student-0.75-all-per-tensor"]
    for rung in per_tensor:
        mine, parent = (auto.recipe(auto.rung_choice(r)) for r in (rung, rungs[rung["after"]]))
        assert mine.stages == parent.stages and mine.stages  # trained stages, the parent's
        assert [c.per_channel for c in parent.quantize] == [True] and [c.per_channel for c in mine.quantize] == [False]
        assert config_key(mine) != config_key(parent)  # not taken for a duplicate of the parent's trial
    assert "int8_per_tensor" in auto.parameters()["quantize"].choices


def test_candidate_names():
    assert candidate_name({}) == "base"
    assert candidate_name({"distill.width": 0.5, "factorize.energy": None}) == "width0.5-energy_none"
    assert candidate_name({"factorize.ranks": {"fc1": 2}, "prune.schedule": "constant"}) == "ranks_fc1_2-schedule_constant"
    assert candidate_name({"prune.qat": True, "distill.epochs": 3}) == "qat_true-epochs3"
    assert candidate_name({"cluster": False, "prune": True}) == "cluster_off-prune_on"


def test_pareto_marks_match_brute_force():
    import random

    rnd = random.Random(0)
    arts = [{"name": str(i), "path": "", "quantization": "int8", "size_bytes": 1, "sha256": "",
             "gzip_bytes": rnd.randint(1, 20), "accuracy": rnd.randint(0, 10) / 10,
             "latency_ms": {"p50": rnd.random()}} for i in range(40)]
    typed = [Artifact.from_dict(a) for a in arts]
    from edgecompress.report.sizes import size

    mark_pareto(typed, size("gzip"))
    arts = [a.to_dict() for a in typed]
    for a in arts:
        dominated = any(b["gzip_bytes"] <= a["gzip_bytes"] and b["accuracy"] >= a["accuracy"]
                        and (b["gzip_bytes"] < a["gzip_bytes"] or b["accuracy"] > a["accuracy"]) for b in arts)
        assert a["pareto"]["size"] == (not dominated)
    assert sum(a["pareto"]["latency"] for a in arts) >= 1
    for a in arts:  # three axes: smaller, faster, more accurate
        cost = lambda b: (b["gzip_bytes"], b["latency_ms"]["p50"], -b["accuracy"])  # noqa: E731
        dominated = any(all(x <= y for x, y in zip(cost(b), cost(a))) and cost(b) != cost(a) for b in arts)
        assert a["pareto"]["size+latency"] == (not dominated)
        assert not (a["pareto"]["size"] or a["pareto"]["latency"]) or a["pareto"]["size+latency"] or any(
            cost(b) == cost(a) for b in arts if b is not a)  # a 2-axis front point is on the 3-axis front
    assert pareto([(1, 0.5), (1, 0.5)]) == [0, 1]  # ties are both kept
    assert pareto([(2, 0.9), (1, 0.9)]) == [1]


@pytest.mark.slow
def test_search_measures_every_trial_on_validation_and_reuses_shared_stages(tmp_path, tiny_model, tiny_dataset,
                                                                            calibration_pixels):
    from edgecompress.recipes.cache import StageCache
    from edgecompress.builder.options import BuildOptions

    cache = StageCache(tmp_path / "cache")
    space = SearchSpace.from_dict({**TINY_SPACE, "sampler": "grid"})
    r = _search(tiny_model, tiny_dataset, space, calibration_pixels, cache, "tiny", budget_minutes=10,
                options=BuildOptions(runs=10, warmup=2), verbose=0, out_dir=tmp_path)
    names = [a["name"] for a in r["artifacts"]]
    assert names[0] == "teacher_float32" and sorted(names[1:]) == [
        "final_sparsity0.5_float16", "final_sparsity0.5_int8", "final_sparsity_none_float16", "final_sparsity_none_int8"]
    log = r["search"]["candidates"]
    assert [c["status"] for c in log] == ["done"] * 4 and r["search"]["counts"] == {"done": 4}
    # The tiny model learned from all its training images: it is judged on half of the 300 test images.
    assert r["search"]["validation"]["count"] == 150 and r["search"]["validation"]["holdout"] == "test"
    # Trials sharing the distill stage took it from the cache: one trained it.
    cached = [a["recipe"]["stages"][1]["cached"] for a in r["artifacts"][1:]]
    assert cached.count(False) == 1
    by = {a["name"]: a for a in r["artifacts"]}
    assert by["final_sparsity0.5_int8"]["sparsity"] > 0.4 > by["final_sparsity_none_int8"]["sparsity"]
    for a in r["artifacts"]:  # scored on the validation split, reported on the test split: two numbers
        assert 0.2 < a["accuracy"] <= 1 and 0.2 < a["val_accuracy"] <= 1 and "pareto" in a

    # A second call resumes the study: nothing runs again, the same files come back.
    again = _search(tiny_model, tiny_dataset, space, calibration_pixels, cache, "tiny", budget_minutes=10,
                    options=BuildOptions(runs=10, warmup=2), verbose=0, out_dir=tmp_path)
    assert again["search"]["resumed_trials"] == 4 and len(again["search"]["candidates"]) == 4
    assert [a["sha256"] for a in again["artifacts"]] == [a["sha256"] for a in r["artifacts"]]


def test_a_recipe_says_which_levers_it_pulls():
    from edgecompress.recipes.recipe import Recipe

    r = Recipe.from_dict({"name": "x", "quantize": ["int8"], "stages": [
        {"stage": "distill", "width": 0.5}, {"stage": "factorize"}, {"stage": "prune", "final_sparsity": 0.75},
        {"stage": "cluster", "number_of_clusters": 8}]})
    assert r.levers() == ("structured (speed and size): width 0.5, factorized (energy 0.9); "
                          "unstructured (size only): 75% sparse, 8 clusters")
    assert Recipe.from_dict({"name": "y", "quantize": ["int8"], "stages": []}).levers() == "none (quantization alone)"
    full_width = Recipe.from_dict({"name": "z", "quantize": ["int8"], "stages": [{"stage": "distill", "width": 1.0}]})
    assert full_width.levers() == "none (quantization alone)"


@pytest.mark.slow
def test_max_latency_ms_is_a_constraint_on_every_trial(tmp_path, tiny_model, tiny_dataset, calibration_pixels,
                                                       caplog):
    """With one worker each trial's file is timed alone: its p50 less the limit is an Optuna constraint (feasible
    when <= 0), beside the accuracy limit, and the log line says it and which levers the recipe pulled."""
    from edgecompress.builder.options import BuildOptions
    from edgecompress.recipes.cache import StageCache
    from edgecompress.search.study import STUDY_NAME, open_storage

    caplog.set_level("INFO")
    space = SearchSpace.from_dict({**TINY_SPACE, "sampler": "grid", "quantize": ["int8"]})
    r = _search(tiny_model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "cache"), "tiny",
                budget_minutes=10, max_accuracy_drop=50.0, verbose=0, out_dir=tmp_path,
                options=BuildOptions(runs=10, warmup=2, max_latency_ms=1e-6))
    assert r["search"]["counts"] == {"done": 2}
    assert "over --max-latency-ms 1e-06" in caplog.text and "levers: structured (speed and size): width 0.5" in caplog.text
    assert "unstructured (size only): 50% sparse" in caplog.text
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(None, tmp_path))
    for t in study.get_trials():
        assert records.read(t).over_latency > 0
        assert t.system_attrs["constraints:latency_ms"] == records.read(t).over_latency


@pytest.mark.slow
def test_budget_stops_after_the_trial_that_would_not_fit(tmp_path, tiny_model, tiny_dataset, calibration_pixels):
    from edgecompress.recipes.cache import StageCache
    from edgecompress.builder.options import BuildOptions

    space = SearchSpace.from_dict({**TINY_SPACE, "grid": {"distill.width": [0.5, 0.25]}, "quantize": ["float16"]})
    r = _search(tiny_model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "c"), "tiny",
                budget_minutes=0.001, options=BuildOptions(runs=5, warmup=1), verbose=0, out_dir=tmp_path)
    log = r["search"]["candidates"]
    assert [c["status"] for c in log] == ["done"]  # the first always runs, so there is an answer
    assert len(r["artifacts"]) == 2


@pytest.mark.slow
def test_search_recovers_int8_inside_the_trial(tmp_path, tiny_dataset, calibration_pixels):
    """A trial whose int8 collapses makes a selective-int8 file, and that file is the trial's result."""
    from edgecompress.models import keras_io
    from edgecompress.recipes.cache import StageCache
    from edgecompress.builder.options import BuildOptions
    from test_gate import _spiky_model

    model = keras_io.load_model(_spiky_model(tmp_path / "spiky.keras", tiny_dataset))
    space = SearchSpace(name="q", quantize=("int8",))
    r = _search(model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "c"), "spiky",
                budget_minutes=5, max_accuracy_drop=2.0, options=BuildOptions(runs=5, warmup=1), verbose=0,
                out_dir=tmp_path)
    by = {a["name"]: a for a in r["artifacts"]}
    assert list(by) == ["teacher_float32", "base_int8_selective"]
    assert by["teacher_float32"]["val_accuracy"] - by["base_int8_selective"]["val_accuracy"] <= 0.02
    assert by["base_int8_selective"]["recipe"]["conversion"]["float_layers"] == ["head2", "spiky"]


@pytest.mark.slow
def test_build_edge_search_selects_on_validation_and_reports(tmp_path, root, tiny_model, small_npz):
    tiny_model.save(tmp_path / "m.keras")
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "m.keras"), "--data", str(small_npz), "--search",
                       str(tmp_path / "space.json"), "--budget-minutes", "10", "--max-accuracy-drop", "30",
                       "--out", str(out), "--runs", "10", "--quiet"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["space"]["name"] == "tiny" and report["search"]["sampler"] == "tpe"
    assert report["search"]["counts"].get("done", 0) >= 2
    assert report["search"]["candidates"][0]["choice"] == {"prune.final_sparsity": 0.5, "quantize": "int8"}  # the template
    assert report["search"]["resumed_trials"] == 0  # a new study, though its first trial was queued
    sel = next(a for a in report["artifacts"] if a["name"] == report["selected"])
    assert (out / "selected.tflite").read_bytes() == Path(sel["path"]).read_bytes()
    assert Path(sel["path"]).parent == out / "trials" and (out / "trials.csv").exists()
    from edgecompress.recipes.recipe import load_recipe

    again = load_recipe(out / "selected_recipe.json")  # the winner, runnable with --recipe
    assert sel["name"].startswith(again.name + "_") and [s.STAGE for s in again.stages][0] == "distill"
    base = report["artifacts"][0]
    ok = [a for a in report["artifacts"] if 100 * (base["val_accuracy"] - a["val_accuracy"]) <= 30]
    assert sel["size_bytes"] == min(a["size_bytes"] for a in ok)  # judged on validation, not test
    md = (out / "report.md").read_text()
    assert "## Search" in md and "150 images no model trained on this data learned from" in md
    stem = Path(sel["path"]).stem  # its short name, linking to the recipe that made it, then a few words of it
    assert re.search(rf"\| \[{stem}\]\(trials/{stem}\.recipe\.json\) \| [^|]*prune 0\.5, int8 \| done \|", md), md
    assert "<h2>Search</h2>" in (out / "report.html").read_text()
    assert (out / ".edgecompress" / "study" / "study.journal").exists()


@pytest.mark.slow
def test_search_and_recipe_together_are_refused(tmp_path, root, small_npz):
    proc = run_invoke(["build-edge", "--data", str(small_npz), "--search", "--recipe", "default", "--out",
                       str(tmp_path / "o"), "--quiet"], cwd=root)
    assert proc.returncode == 2 and "Pass one of them" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_the_search_goes_on(tmp_path, tiny_model, tiny_dataset, calibration_pixels):
    from edgecompress.recipes.cache import StageCache
    from edgecompress.builder.options import BuildOptions
    from edgecompress.report.write import search_table

    # A fixed rank above what fc1 allows fails that trial only.
    space = SearchSpace.from_dict({"name": "r", "stages": [{"stage": "factorize", "finetune_epochs": 0}],
                                   "grid": {"factorize.ranks": [{"fc1": 100000}, {"fc1": 2}]},
                                   "quantize": ["float16"], "sampler": "grid"})
    r = _search(tiny_model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "c"), "tiny",
                budget_minutes=10, options=BuildOptions(runs=5, warmup=1), verbose=0, out_dir=tmp_path)
    log = {c["name"]: c for c in r["search"]["candidates"]}
    assert log["ranks_fc1_100000"]["status"] == "failed" and "fc1" in log["ranks_fc1_100000"]["error"]
    assert log["ranks_fc1_2"]["status"] == "done" and r["failed"][0]["name"] == "ranks_fc1_100000"
    rows = search_table({"artifacts": r["artifacts"], "search": r["search"]})
    assert sorted(row[3].split(" (")[0] for row in rows[1:]) == ["done", "failed"]
    bad = SearchSpace.from_dict({**space.to_dict(), "grid": {"factorize.ranks": [{"fc1": 100000}]}})
    with pytest.raises(EdgeCompressError, match="no trial finished"):
        _search(tiny_model, tiny_dataset, bad, calibration_pixels, StageCache(tmp_path / "c2"), "tiny",
                budget_minutes=10, options=BuildOptions(runs=5, warmup=1), verbose=0, out_dir=tmp_path / "o2")


@pytest.mark.slow
def test_build_with_a_failed_trial_still_selects_then_exits_non_zero(tmp_path, root, tiny_model, small_npz):
    tiny_model.save(tmp_path / "m.keras")
    (tmp_path / "space.json").write_text(json.dumps(
        {"name": "r", "stages": [{"stage": "factorize", "finetune_epochs": 0}],
         "grid": {"factorize.ranks": [{"fc1": 100000}, {"fc1": 2}]}, "quantize": ["float16"], "sampler": "grid"}))
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "m.keras"), "--data", str(small_npz), "--search",
                       str(tmp_path / "space.json"), "--max-accuracy-drop", "100", "--out", str(out), "--runs", "5",
                       "--quiet"], cwd=root)
    assert proc.returncode == 4 and "ranks_fc1_100000" in proc.stderr, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["selected"] and (out / "selected.tflite").exists()
    assert sorted(c["status"] for c in report["search"]["candidates"]) == ["done", "failed"]


@pytest.mark.slow
def test_recipes_are_scored_on_the_validation_split_by_the_space_script(tmp_path, root, tiny_model, tiny_dataset,
                                                                          small_npz):
    """`scripts/validate_recipes.py` (how the shipped space was chosen) trains on the training images less the
    validation split and prints each recipe's validation top-1 and gzip bytes."""
    import subprocess
    import sys

    from edgecompress.data import calibration
    from edgecompress.models import keras_io
    from edgecompress.configs import ModelSpec

    bench = tmp_path / "benchmark"
    keras_io.save_model(tiny_model, bench / "teacher.keras", ModelSpec(tiny_dataset.preprocessing,
                                                                     tiny_dataset.class_names))
    calibration.write_calibration_images(tiny_dataset, bench / "calibration_data", per_class=2)
    prune = {"stage": "prune", "final_sparsity": 0.5, "epochs": 1}
    (tmp_path / "r.json").write_text(json.dumps({"half": {"stages": [prune], "quantize": ["int8"]},
                                                 "skipped": {"stages": [prune], "quantize": ["dynamic"]}}))
    r = subprocess.run([sys.executable, "scripts/validate_recipes.py", str(bench), str(tmp_path / "r.json"),
                        "--data", str(small_npz), "--only", "half"], cwd=root, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("teacher: validation top-1") and len(lines) == 2, r.stdout
    assert re.match(r"half: validation \d+\.\d\d% \([+-]\d+\.\d\d\) at [\d,]+ bytes gzipped; stages prune=", lines[1])
    assert (bench / "search" / ".cache").is_dir()  # the search's cache: students it trained are reused


def test_a_teacher_that_learned_from_the_validation_images_is_named():
    """A model the user brings was trained on all its training images; the search's validation split is
    drawn from them, so the teacher's validation top-1 (the baseline) is inflated. Sampling noise is not."""
    from edgecompress.report.write import search_lines
    from edgecompress.search.holdout import teacher_saw_validation

    seen = teacher_saw_validation(0.883, 1000, 0.8145, 2000)  # measured: the MobileNetV2 example, Keras 3
    assert seen == {"validation": 0.883, "test": 0.8145, "z": 5.1}
    assert teacher_saw_validation(0.9263, 6000, 0.9224, 10000) is None  # a teacher trained without them
    assert teacher_saw_validation(0.95, 100, 0.90, 100) is None  # 5 points, but 100 images each: noise
    assert teacher_saw_validation(0.91, 1000, 0.90, 1000) is None  # under a point
    report = {"search": {"space": {"name": "s"}, "candidates": [], "seconds": 1, "budget_minutes": 1,
                         "validation": {"count": 1000, "fraction": 0.1, "teacher_saw_it": seen}}, "artifacts": []}
    text = "\n".join(search_lines(report))
    assert "**The teacher scores 88.30% on the validation split but 81.45% on the test split**" in text
    del report["search"]["validation"]["teacher_saw_it"]
    assert "The teacher scores" not in "\n".join(search_lines(report))


def test_levers_for_speed_join_a_build_only_when_speed_is_asked_and_the_model_has_them():
    """The closed loop's `latency_grid` and `when: latency` rungs (a ReLU student for a hard-swish model) are in
    the space a build searches only with --max-latency-ms, and only for a model that has hard-swish."""
    from edgecompress.models.backend import keras
    from edgecompress.search.space import LEVER_APPLIES

    space = load_space("auto")
    relu_rungs = [r["name"] for r in space.ladder if r.get("when") == "latency"]
    assert relu_rungs == ["student-0.75-relu"]
    plain = space.for_build(None, None, "gzip")
    assert "distill.hard_swish" not in plain.parameters() and len(plain.ladder) == len(space.ladder) - 1
    fast = space.for_build(None, 0.05, "gzip")
    assert "distill.hard_swish" in fast.parameters() and [r["name"] for r in fast.ladder] == [
        r["name"] for r in space.ladder]
    assert all("when" not in r for r in fast.ladder) and fast.for_build(None, 0.05, "gzip") == fast  # idempotent
    # Pruning alone shrinks the download, not the file: its rungs run only when the build chooses by gzip.
    assert [r["name"] for r in space.ladder if r.get("when") == "gzip"] == ["prune-50", "prune-75", "prune-85"]
    by_file = space.for_build(None, None, "file")
    # A rung that becomes another's twin once pruning and clustering go (`gzip_stages`) goes too.
    assert [r["name"] for r in by_file.ladder] == [r["name"] for r in plain.ladder if not r["name"].startswith("prune-")
                                                   and r["name"] != "student-0.75-prune-75"]
    assert space.for_build(None, None).ladder == by_file.ladder  # file bytes are the default
    assert by_file.for_build(None, None, "file") == by_file  # idempotent
    # A rung that does not name the lever keeps the template's first value, not a sampled one.
    student = next(r for r in fast.ladder if r["name"] == "student-0.75")
    assert fast.rung_params(student)["distill.hard_swish"] == "keep"
    rung = next(r for r in fast.ladder if r["name"] == "student-0.75-relu")
    stages = {s.STAGE: s for s in fast.recipe(fast.rung_choice(rung)).stages}
    assert stages["distill"].hard_swish == "relu" and stages["distill"].width == 0.75
    # A model without hard-swish: the ReLU student would be the same student under another name.
    inp = keras.Input((8, 8, 1))
    no_hs = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(
        keras.layers.Conv2D(4, 3, activation="relu")(inp))))
    assert LEVER_APPLIES["distill.hard_swish"](no_hs) is False
    assert space.for_build(no_hs, 0.05, "gzip").parameters().keys() == plain.parameters().keys()
    assert len(space.for_build(no_hs, 0.05, "gzip").ladder) == len(plain.ladder)
    with pytest.raises(EdgeCompressError, match="run only with --max-latency-ms; give it \"when\": \"latency\""):
        SearchSpace.from_dict({**json.loads(space.to_json()), "ladder": [
            *space.ladder, {"name": "after-relu", "after": "student-0.75-relu", "choice": {}}]})
    with pytest.raises(EdgeCompressError, match="not in `grid` too"):
        SearchSpace.from_dict({**json.loads(space.to_json()), "latency_grid": {"prune.final_sparsity": [0.5]}})


def test_a_build_by_file_bytes_runs_no_stage_that_shrinks_only_the_download():
    """`gzip_stages`: pruning and clustering leave a dense file's bytes as they are, so a build that chooses by
    file bytes searches without them (template, grid, rungs); a rung that becomes another's twin goes, and the
    rungs that climbed from it climb from the twin. By gzip, the space is as written."""
    space = load_space("auto")
    assert space.gzip_stages == ("prune", "cluster")
    by_gzip, by_file = space.for_build(None, None, "gzip"), space.for_build(None, None, "file")
    assert {"prune", "cluster"} <= {s["stage"] for s in by_gzip.stages} and "prune.final_sparsity" in by_gzip.grid
    assert {s["stage"] for s in by_file.stages} == {"distill", "factorize"}
    assert not {k for k in by_file.parameters() if k.partition(".")[0] in ("prune", "cluster")}
    for rung in by_file.ladder:
        assert not {k for k in rung["choice"] if k.partition(".")[0] in ("prune", "cluster")}, rung
        assert {s.STAGE for s in by_file.recipe(by_file.rung_choice(rung)).stages} <= {"distill", "factorize"}
    rungs = {r["name"]: r for r in by_file.ladder}
    assert "student-0.75-prune-75" not in rungs and rungs["student-0.75-all"]["after"] == "student-0.75"
    choices = [json.dumps(r["choice"], sort_keys=True) for r in by_file.ladder]
    assert len(choices) == len(set(choices))  # no two rungs are one trial
    assert space.without_stages(()) == space.replace(gzip_stages=())  # nothing named, nothing dropped
