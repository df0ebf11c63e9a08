"""`--search`: search spaces as data, the time budget, Pareto fronts, selection."""

import json
import re

import pytest

from conftest import run_invoke
from edgecompress.errors import EdgeCompressError
from edgecompress.pareto import mark_pareto, pareto
from edgecompress.results import Artifact
from edgecompress.registry import STAGES
from edgecompress.search import SearchSpace, candidate_name, load_space, search

def _search(*args, **kwargs) -> dict:
    """The search's typed result as the report serializes it."""
    return search(*args, **kwargs).report_fields()


TINY_SPACE = {
    "name": "tiny",
    "stages": [{"stage": "distill", "width": 0.5, "epochs": 1, "baseline": False},
               {"stage": "prune", "final_sparsity": 0.5, "initial_sparsity": 0.0, "epochs": 1}],
    "grid": {"prune.final_sparsity": [None, 0.5]},
    "quantize": ["int8", "float16"],
}


def test_grid_makes_one_recipe_per_combination_and_null_drops_the_stage():
    space = SearchSpace.from_dict({**TINY_SPACE, "grid": {"distill.width": [0.5, 0.25],
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
])
def test_bad_grid_names_the_key_and_the_valid_ones(grid, needle):
    with pytest.raises(EdgeCompressError, match=needle):
        SearchSpace.from_dict({**TINY_SPACE, "grid": grid})


def test_shipped_space_loads_and_unknown_names_list_the_shipped(tmp_path):
    space = load_space("default")
    assert len(space.candidates()) == 16 and space.selective_int8
    with pytest.raises(EdgeCompressError, match=r"Shipped spaces: \['default'\]"):
        load_space("nope")
    bad = tmp_path / "s.json"
    bad.write_text('{"name": "x", "grid": {}, "colour": 1}')
    with pytest.raises(EdgeCompressError, match=r"s.json.*Unknown parameter\(s\) \['colour'\]"):
        load_space(str(bad))


def test_candidate_names():
    assert candidate_name({}) == "base"
    assert candidate_name({"distill.width": 0.5, "factorize.energy": None}) == "width0.5-energy_none"
    assert candidate_name({"factorize.ranks": {"fc1": 2}, "prune.schedule": "constant"}) == "ranks_fc1_2-schedule_constant"
    assert candidate_name({"prune.qat": True, "distill.epochs": 3}) == "qat_true-epochs3"


def test_pareto_marks_match_brute_force():
    import random

    rnd = random.Random(0)
    arts = [{"name": str(i), "path": "", "quantization": "int8", "size_bytes": 1, "sha256": "",
             "gzip_bytes": rnd.randint(1, 20), "accuracy": rnd.randint(0, 10) / 10,
             "latency_ms": {"p50": rnd.random()}} for i in range(40)]
    typed = [Artifact.from_dict(a) for a in arts]
    mark_pareto(typed)
    arts = [a.to_dict() for a in typed]
    for a in arts:
        dominated = any(b["gzip_bytes"] <= a["gzip_bytes"] and b["accuracy"] >= a["accuracy"]
                        and (b["gzip_bytes"] < a["gzip_bytes"] or b["accuracy"] > a["accuracy"]) for b in arts)
        assert a["pareto"]["size"] == (not dominated)
    assert sum(a["pareto"]["latency"] for a in arts) >= 1
    assert pareto([(1, 0.5), (1, 0.5)]) == [0, 1]  # ties are both kept
    assert pareto([(2, 0.9), (1, 0.9)]) == [1]


@pytest.mark.slow
def test_search_measures_every_candidate_and_reuses_shared_stages(tmp_path, tiny_model, tiny_dataset,
                                                                  calibration_pixels):
    from edgecompress.cache import StageCache
    from edgecompress.pipeline import BuildOptions
    from edgecompress.search import search

    cache = StageCache(tmp_path / "cache")
    r = _search(tiny_model, tiny_dataset, SearchSpace.from_dict(TINY_SPACE), calibration_pixels, cache, "tiny",
               budget_minutes=10, options=BuildOptions(runs=10, warmup=2), verbose=0)
    names = [a["name"] for a in r["artifacts"]]
    assert names == ["teacher_float32", "final_sparsity_none_int8", "final_sparsity_none_float16",
                     "final_sparsity0.5_int8", "final_sparsity0.5_float16"]
    log = r["search"]["candidates"]
    assert [c["status"] for c in log] == ["done", "done"]
    # The second candidate shares the distill stage: it came from the cache.
    stages = {a["name"]: a["recipe"]["stages"] for a in r["artifacts"][1:]}
    assert stages["final_sparsity0.5_int8"][1]["cached"] is True and stages["final_sparsity_none_int8"][1]["cached"] is False
    by = {a["name"]: a for a in r["artifacts"]}
    assert by["final_sparsity0.5_int8"]["sparsity"] > 0.4 > by["final_sparsity_none_int8"]["sparsity"]
    assert all(0.2 < a["accuracy"] <= 1 and "pareto" in a for a in r["artifacts"])


@pytest.mark.slow
def test_budget_skips_the_candidates_that_would_not_fit(tmp_path, tiny_model, tiny_dataset, calibration_pixels):
    from edgecompress.cache import StageCache
    from edgecompress.pipeline import BuildOptions
    from edgecompress.search import search

    space = SearchSpace.from_dict({**TINY_SPACE, "grid": {"distill.width": [0.5, 0.25]}, "quantize": ["float16"]})
    r = _search(tiny_model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "c"), "tiny",
               budget_minutes=0.001, options=BuildOptions(runs=5, warmup=1), verbose=0)
    log = r["search"]["candidates"]
    assert log[0]["status"] == "done"  # the first always runs, so there is an answer
    assert log[1]["status"] == "skipped" and log[1]["reason"].startswith("budget: needs about")
    assert [a["name"] for a in r["artifacts"]] == ["teacher_float32", "width0.5_float16"]


@pytest.mark.slow
def test_search_recovers_int8_per_candidate(tmp_path, tiny_dataset, calibration_pixels):
    """A candidate whose int8 collapses gets a selective-int8 file from inside the search."""
    from edgecompress import models
    from edgecompress.cache import StageCache
    from edgecompress.pipeline import BuildOptions
    from edgecompress.search import search
    from test_gate import _spiky_model

    model = models.load_model(_spiky_model(tmp_path / "spiky.keras", tiny_dataset))
    space = SearchSpace(name="q", quantize=("int8",))
    r = _search(model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "c"), "spiky",
               budget_minutes=5, max_accuracy_drop=2.0, options=BuildOptions(runs=5, warmup=1), verbose=0)
    by = {a["name"]: a for a in r["artifacts"]}
    base = by["teacher_float32"]["accuracy"]
    assert base - by["base_int8"]["accuracy"] > 0.3
    assert base - by["base_int8_selective"]["accuracy"] <= 0.02
    assert r["search"]["candidates"][0]["int8_recovery"]["float_layers"] == ["head2", "spiky"]
    # Its conversion is a recipe entry that reproduces it (`float_layers`), e.g. in selected_recipe.json.
    assert by["base_int8_selective"]["recipe"]["conversion"]["float_layers"] == ["head2", "spiky"]


@pytest.mark.slow
def test_build_edge_search_selects_and_reports(tmp_path, root, tiny_model, small_npz):
    tiny_model.save(tmp_path / "m.keras")
    (tmp_path / "space.json").write_text(json.dumps(TINY_SPACE))
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "m.keras"), "--data", str(small_npz), "--search",
                       str(tmp_path / "space.json"), "--budget-minutes", "10", "--max-accuracy-drop", "30",
                       "--out", str(out), "--runs", "10", "--quiet"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["space"]["name"] == "tiny" and len(report["search"]["candidates"]) == 2
    sel = next(a for a in report["artifacts"] if a["name"] == report["selected"])
    assert (out / "selected.tflite").read_bytes() == (out / f"{sel['name']}.tflite").read_bytes()
    from edgecompress.recipe import load_recipe

    again = load_recipe(out / "selected_recipe.json")  # the winner, runnable with --recipe
    assert sel["name"].startswith(again.name + "_") and [s.STAGE for s in again.stages][0] == "distill"
    ok = [a for a in report["artifacts"] if 100 * (report["artifacts"][0]["accuracy"] - a["accuracy"]) <= 30]
    assert sel["gzip_bytes"] == min(a["gzip_bytes"] for a in ok)
    md = (out / "report.md").read_text()
    assert "## Search" in md and "| final_sparsity0.5 | done |" in md
    assert "<h2>Search</h2>" in (out / "report.html").read_text()


@pytest.mark.slow
def test_search_and_recipe_together_are_refused(tmp_path, root, small_npz):
    proc = run_invoke(["build-edge", "--data", str(small_npz), "--search", "--recipe", "default", "--out",
                       str(tmp_path / "o"), "--quiet"], cwd=root)
    assert proc.returncode == 2 and "Pass one of them" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_failing_candidate_is_reported_and_the_search_goes_on(tmp_path, tiny_model, tiny_dataset,
                                                                calibration_pixels):
    from edgecompress.cache import StageCache
    from edgecompress.pipeline import BuildOptions
    from edgecompress.report import search_table
    from edgecompress.search import search

    # A fixed rank above what fc1 allows fails that candidate only.
    space = SearchSpace.from_dict({"name": "r", "stages": [{"stage": "factorize", "finetune_epochs": 0}],
                                   "grid": {"factorize.ranks": [{"fc1": 100000}, {"fc1": 2}]},
                                   "quantize": ["float16"]})
    r = _search(tiny_model, tiny_dataset, space, calibration_pixels, StageCache(tmp_path / "c"), "tiny",
               budget_minutes=10, options=BuildOptions(runs=5, warmup=1), verbose=0)
    log = r["search"]["candidates"]
    assert [c["status"] for c in log] == ["failed", "done"]
    assert "fc1" in log[0]["error"] and r["failed"][0]["name"] == log[0]["name"]
    rows = search_table({"artifacts": r["artifacts"], "search": r["search"]})
    assert rows[1][1].startswith("failed (") and rows[2][1] == "done"
    bad = SearchSpace.from_dict({**space.to_dict(), "grid": {"factorize.ranks": [{"fc1": 100000}]}})
    with pytest.raises(EdgeCompressError, match="no candidate finished"):
        search(tiny_model, tiny_dataset, bad, calibration_pixels, StageCache(tmp_path / "c2"), "tiny",
               budget_minutes=10, options=BuildOptions(runs=5, warmup=1), verbose=0)


@pytest.mark.slow
def test_build_with_a_failed_candidate_still_selects_then_exits_non_zero(tmp_path, root, tiny_model, small_npz):
    tiny_model.save(tmp_path / "m.keras")
    (tmp_path / "space.json").write_text(json.dumps(
        {"name": "r", "stages": [{"stage": "factorize", "finetune_epochs": 0}],
         "grid": {"factorize.ranks": [{"fc1": 100000}, {"fc1": 2}]}, "quantize": ["float16"]}))
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "m.keras"), "--data", str(small_npz), "--search",
                       str(tmp_path / "space.json"), "--max-accuracy-drop", "100", "--out", str(out), "--runs", "5",
                       "--quiet"], cwd=root)
    assert proc.returncode == 4 and "ranks_fc1_100000" in proc.stderr, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["selected"] and (out / "selected.tflite").exists()
    assert [c["status"] for c in report["search"]["candidates"]] == ["failed", "done"]
