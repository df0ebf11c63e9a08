"""Search: try many recipes within a time budget and keep the Pareto front.

A search space is data, a JSON file like a recipe plus a `grid`:

    {
      "name": "default",
      "stages": [
        {"stage": "distill", "width": 0.5, "baseline": false},
        {"stage": "prune", "final_sparsity": 0.75}
      ],
      "grid": {"distill.width": [0.5, 0.75], "prune.final_sparsity": [null, 0.6, 0.75, 0.85]},
      "quantize": ["int8", "float16", "dynamic"],
      "selective_int8": true
    }

`stages` is the template; each `grid` entry `"STAGE.PARAM": [values]`
varies one parameter of one stage, and `null` drops that stage from the
candidate (no pruning, no factorization). Every combination is a candidate
recipe, run in the order of the grid (the first key varies slowest, so
candidates sharing a stage prefix reuse it from the cache). `quantize` is
the variants made from every candidate. With `selective_int8`, a
candidate whose int8 files all lose more than `--max-accuracy-drop` also
gets a selective-int8 file with its most sensitive layers in float.

Every file is measured with the real interpreter. Candidates are started
while the time spent plus the estimated cost of the next one (the mean time
of each of its uncached stages so far, plus the mean time of converting and
measuring) fits in the budget; the rest are listed as skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
import time
from pathlib import Path

from edgecompress.configs import _Config, _require
from edgecompress.errors import EdgeCompressError
from edgecompress.pareto import mark_pareto
from edgecompress.recipe import Recipe
from edgecompress.results import BuildResult
from edgecompress.registry import STAGES

logger = logging.getLogger(__name__)

SPACES_DIR = Path(__file__).parent / "search_spaces"


@dataclasses.dataclass(frozen=True)
class SearchSpace(_Config):
    """The recipes `--search` tries (see the module docstring for the file format).

    Args:
        name: Names the space in the report. Defaults to `"custom"`.
        stages: The template stages, as in a recipe. Defaults to `()`.
        grid: `{"STAGE.PARAM": [values]}`; `null` drops the stage. Defaults to `{}`.
        quantize: Variants made from every candidate. Defaults to
            `("int8", "float16", "dynamic")`.
        selective_int8: Try selective int8 on candidates whose int8 loses
            more than the accuracy limit. Defaults to True.
    """

    name: str = "custom"
    stages: tuple = ()
    grid: dict = dataclasses.field(default_factory=dict)
    quantize: tuple = ("int8", "float16", "dynamic")
    selective_int8: bool = True

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(dict(s) for s in self.stages))
        object.__setattr__(self, "quantize", tuple(self.quantize))
        _require(isinstance(self.grid, dict), f"Received an invalid value for `grid`, expected a mapping of "
                                              f"'STAGE.PARAM' to a list of values. Received: grid={self.grid!r}")
        kinds = [s.get("stage") for s in self.stages]
        for key, values in self.grid.items():
            stage, _, param = key.partition(".")
            _require(stage in STAGES, f"Search space {self.name!r}: grid key {key!r} names unknown stage {stage!r}. "
                                      f"Valid stages: {sorted(STAGES)}.")
            _require(stage in kinds, f"Search space {self.name!r}: grid key {key!r} names stage {stage!r}, which is "
                                     f"not in `stages` ({kinds}). Valid keys look like 'prune.final_sparsity'.")
            fields = [f.name for f in dataclasses.fields(STAGES[stage].config)]
            _require(param in fields, f"Search space {self.name!r}: grid key {key!r}: {stage} has no parameter "
                                      f"{param!r}. Valid parameters: {fields}.")
            _require(isinstance(values, list) and values, f"Search space {self.name!r}: grid key {key!r} needs a "
                                                          f"non-empty list of values. Received: {values!r}")
        self.candidates()  # every combination must be a valid recipe (stages, parameters, variants)

    def candidates(self) -> list[tuple[dict, Recipe]]:
        """Every (grid values, recipe) combination, in grid order."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            choice = dict(zip(keys, values))
            stages = []
            for s in self.stages:
                s = dict(s)
                drop = False
                for key, v in choice.items():
                    stage, _, param = key.partition(".")
                    if stage == s["stage"]:
                        if v is None:
                            drop = True
                        else:
                            s[param] = v
                if not drop:
                    stages.append(s)
            try:
                recipe = Recipe(name=candidate_name(choice), stages=tuple(stages), quantize=self.quantize)
            except EdgeCompressError as e:
                raise EdgeCompressError(f"Search space {self.name!r}, candidate {choice}: {e}") from None
            out.append((choice, recipe))
        return out


def candidate_name(choice: dict) -> str:
    """A file-name-safe name: `{"distill.width": 0.5, "prune.final_sparsity": None}` -> `"width0.5-final_sparsity_none"`."""
    if not choice:
        return "base"
    parts = []
    for key, v in choice.items():
        param = key.partition(".")[2]
        if v is None:
            slug = "_none"
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            slug = f"{v:g}"
        else:  # strings, booleans, mappings such as ranks: letters, digits and . - _ only
            slug = re.sub(r"[^A-Za-z0-9.-]+", "_", v if isinstance(v, str) else json.dumps(v)).strip("_")
            slug = slug if slug[:1].isdigit() else f"_{slug}"
        parts.append(param + slug)
    return "-".join(parts)


def load_space(spec) -> SearchSpace:
    """A search space from a shipped name (`edgecompress/search_spaces/NAME.json`) or a JSON file."""
    if isinstance(spec, SearchSpace):
        return spec
    spec = "default" if spec in (None, True, "") else str(spec)
    path = Path(spec) if (spec.endswith(".json") or Path(spec).exists()) else SPACES_DIR / f"{spec}.json"
    if not path.exists():
        raise EdgeCompressError(
            f"Received an invalid value for `search_space`: {spec!r} is neither a file nor a shipped space. "
            f"Shipped spaces: {sorted(p.stem for p in SPACES_DIR.glob('*.json'))}.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EdgeCompressError(f"Search space {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise EdgeCompressError(f"Search space {path} must be a JSON object.")
    data.pop("description", None)
    try:
        return SearchSpace.from_dict(data)
    except EdgeCompressError as e:
        raise EdgeCompressError(f"Search space {path}: {e}") from None


class _Clock:
    """Estimates a candidate's cost from what was measured so far.

    The cost is the mean time of each of its uncached stages plus the mean
    time candidates spent converting and measuring.
    """

    def __init__(self, budget_s: float):
        self.budget_s, self.start, self.times, self.measuring = budget_s, time.time(), {}, []

    @property
    def spent(self) -> float:
        return time.time() - self.start

    def record(self, stage_log, total_seconds):
        trained = 0.0
        for s in stage_log[1:]:
            if not s.cached:
                self.times.setdefault(s.stage, []).append(s.seconds)
                trained += s.seconds
        self.measuring.append(max(0.0, total_seconds - trained))

    def estimate(self, recipe, uncached) -> float:
        est = sum(self.measuring) / len(self.measuring) if self.measuring else 0.0
        for i in uncached:
            seen = self.times.get(recipe.stages[i].STAGE)
            est += sum(seen) / len(seen) if seen else 0.0
        return est


def search(teacher, dataset, space: SearchSpace, pixels, cache, teacher_key, *, budget_minutes: float = 30,
           max_accuracy_drop=None, options=None, seed=0, verbose=1) -> dict:
    """Runs the space's candidates within the budget; returns artifacts, Pareto fronts and a log.

    Returns a `results.BuildResult` like `pipeline.compress`'s (the
    teacher's stage log, `final_model` None) whose `search` holds the space,
    the budget, and per candidate its recipe, status (`done`, `skipped`,
    `failed`), seconds and artifact names. Artifacts are named
    `<candidate>_<variant>` and carry `pareto: {"size": bool, "latency": bool}`.
    """
    from edgecompress.measure import convert_and_measure, recover_int8, teacher_baseline
    from edgecompress.stages import run_stages, stage_is_cached, stage_keys, teacher_entry

    _require(budget_minutes > 0, "Received an invalid value for `budget_minutes`, expected a number > 0. "
                                 f"Received: budget_minutes={budget_minutes!r}")
    kw = {"threads": options.threads, "runs": options.runs, "warmup": options.warmup} if options else {}
    clock = _Clock(60 * budget_minutes)
    candidates = space.candidates()
    teacher_log = [teacher_entry(teacher, dataset, cache, teacher_key)]
    artifacts, failed = teacher_baseline(teacher, pixels, dataset, cache, teacher_key, teacher_log[0], **kw)
    if not artifacts:
        raise EdgeCompressError("The teacher could not be converted: " + "; ".join(f["error"] for f in failed))
    baseline = artifacts[0]
    log = []
    logger.info("Search %r: %d candidates, budget %g min", space.name, len(candidates), budget_minutes)
    for n, (choice, recipe) in enumerate(candidates, 1):
        keys = stage_keys(recipe, teacher_key, dataset, seed)
        uncached = [i for i, k in enumerate(keys) if not stage_is_cached(cache, recipe, i, k)]
        est = clock.estimate(recipe, uncached)
        entry = {"name": recipe.name, "choice": choice, "recipe": recipe.to_dict()}
        if log and clock.spent + est > clock.budget_s:
            logger.info("[search %d/%d] %s: skipped, about %.0f s more would exceed the budget (%.0f of %.0f s spent)",
                        n, len(candidates), recipe.name, est, clock.spent, clock.budget_s)
            log.append({**entry, "status": "skipped", "reason": f"budget: needs about {est:.0f} s, "
                                                                f"{clock.budget_s - clock.spent:.0f} s left"})
            continue
        logger.info("[search %d/%d] %s (%.0f of %.0f s spent)", n, len(candidates), recipe.name, clock.spent,
                    clock.budget_s)
        t0 = time.time()
        try:
            final, final_key, stage_log = run_stages(teacher, dataset, recipe, cache, teacher_key, seed=seed,
                                                     verbose=verbose)
        except EdgeCompressError as e:  # one bad combination must not end the search
            logger.error("  %s failed: %s", recipe.name, e)
            log.append({**entry, "status": "failed", "error": str(e), "seconds": round(time.time() - t0, 1)})
            failed.append({"name": recipe.name, "error": str(e)})
            continue
        prov = {"recipe": recipe.to_dict(), "stages": [s.to_dict() for s in stage_log],
                "search": {"space": space.name, "choice": choice}}
        more, more_failed = convert_and_measure(final, recipe.quantize, pixels, dataset, cache, final_key,
                                                prefix=f"{recipe.name}_", provenance=prov, **kw)
        result = BuildResult(more, final_model=final)
        if space.selective_int8 and max_accuracy_drop is not None and options is not None:
            rec = recover_int8(result, dataset, pixels, cache, max_accuracy_drop,
                               baseline_accuracy=baseline.accuracy, options=options, prefix=f"{recipe.name}_")
            if rec is not None:
                entry["int8_recovery"] = rec
            more_failed += result.failed
        artifacts += more
        failed += more_failed
        clock.record(stage_log, time.time() - t0)
        entry.update(status="done", seconds=round(time.time() - t0, 1), artifacts=[a.name for a in more],
                     stage_metrics={s.stage: s.metrics for s in stage_log[1:]})
        log.append(entry)
        best = max(more, key=lambda a: a.accuracy, default=None)
        if best:
            logger.info("  best of %s: %s top-1 %.2f%% at %.1f KB gzipped", recipe.name, best.name,
                        100 * best.accuracy, best.gzip_bytes / 1024)
    done = sum(e["status"] == "done" for e in log)
    if not done:
        raise EdgeCompressError(f"Search {space.name!r}: no candidate finished:\n" +
                                "\n".join(f"  {e['name']}: {e.get('error') or e.get('reason')}" for e in log))
    mark_pareto(artifacts)
    logger.info("Search done: %d of %d candidates in %.0f s; Pareto front (size): %s", done, len(candidates),
                clock.spent, ", ".join(a.name for a in artifacts if a.extra["pareto"]["size"]))
    return BuildResult(artifacts, failed, teacher_log, baseline.name,
                       search={"space": space.to_dict(), "budget_minutes": budget_minutes,
                               "seconds": round(clock.spent, 1), "candidates": log})
