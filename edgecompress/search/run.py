"""Search: an Optuna study over recipes, within a time budget; the Pareto front of its files.

A search space is data, a JSON file like a recipe plus the parameters to vary:

    {
      "name": "default",
      "stages": [
        {"stage": "distill", "width": 0.5, "baseline": false},
        {"stage": "prune", "final_sparsity": 0.75},
        {"stage": "cluster", "number_of_clusters": 16}
      ],
      "grid": {
        "distill.width": [0.25, 0.5],
        "prune.final_sparsity": {"low": 0.5, "high": 0.95, "step": 0.05},
        "cluster": [true, false],
        "cluster.number_of_clusters": {"low": 8, "high": 32, "log": true}
      },
      "quantize": ["int8", "int16x8", "float16"],
      "sampler": "tpe"
    }

`stages` is the template. Each `grid` entry varies one parameter of one
stage: a list is a categorical choice (`null` drops that stage from the
trial), `{"low", "high"}` a range (integers when both are integers; `step`
and `log` as in Optuna), and a bare stage name with `[true, false]` says
whether the stage runs at all. `quantize` is the scheme of the trial's one
file, itself a parameter when it lists more than one.

A trial is one `.tflite` file: its recipe's stages (reused from the stage
cache when an earlier trial shared the prefix), one conversion, measured
with the real interpreter on a validation split held out of the training
data. The study has two objectives, validation top-1 (maximized) and gzip
bytes (minimized); `--max-accuracy-drop` is its constraint. `sampler` picks
Optuna's sampler (see `SAMPLERS`); how trials run, stop early, resume and
spread over workers is `edgecompress.search.study`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import re
import time
from pathlib import Path

from edgecompress.search import study as optimize
from edgecompress.builder.measure import MeasureSettings
from edgecompress.configs import Config, require
from edgecompress.errors import EdgeCompressError
from edgecompress.lite import tasks
from edgecompress.recipes.recipe import Recipe
from edgecompress.recipes.registry import STAGES

logger = logging.getLogger(__name__)

SPACES_DIR = Path(__file__).parent / "spaces"

# Optuna's samplers by name, with settings for 20-40 trials (see `optimize.make_sampler`).
SAMPLERS = tuple(optimize.SAMPLERS)


def _has_hard_swish(model) -> bool:
    from edgecompress.quantize.rewrites import hard_swish_multiplies

    return bool(hard_swish_multiplies(model))


# A `latency_grid` key joins a build's grid only when the model has what it changes (`SearchSpace.for_build`):
# a ReLU student of a model without hard-swish is the same student under another name.
LEVER_APPLIES = {"distill.hard_swish": _has_hard_swish}


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter: `choices` (categorical) or `low`..`high` (a range)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in (self.low, self.high)) and (self.step is None or isinstance(self.step, int))

    def values(self) -> list | None:
        """Every value, when it can be listed (choices, or a range with a `step`)."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + i * self.step, 10) for i in range(n + 1)]


def _encode(v):
    """A categorical value as Optuna stores it: JSON text for anything but None/bool/int/float/str."""
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True)


def _param(space_name: str, key: str, spec) -> Param:
    where = f"Search space {space_name!r}: grid key {key!r}"
    if isinstance(spec, list):
        require(bool(spec), f"{where} needs a non-empty list of values. Received: {spec!r}")
        return Param(key, choices=tuple(spec))
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"low", "high", "step", "log"})
        require(not unknown and {"low", "high"} <= set(spec),
                 f"{where}: a range is {{\"low\": L, \"high\": H}} with optional \"step\" and \"log\". "
                 f"Received: {spec!r}")
        low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log", False))
        num = (int, float)
        require(isinstance(low, num) and isinstance(high, num) and not isinstance(low, bool),
                 f"{where}: `low` and `high` must be numbers. Received: {spec!r}")
        require(low <= high, f"{where}: the range has low > high ({low!r} > {high!r}). Swap them.")
        require(step is None or (isinstance(step, num) and step > 0), f"{where}: `step` must be > 0. Received: {step!r}")
        require(not (log and (low <= 0 or step is not None)),
                 f"{where}: a `log` range needs low > 0 and no `step`. Received: {spec!r}")
        return Param(key, low=low, high=high, step=step, log=log)
    raise EdgeCompressError(f"{where} must be a list of values or a range {{\"low\": L, \"high\": H}}. "
                            f"Received: {spec!r}")


@dataclasses.dataclass(frozen=True)
class SearchSpace(Config):
    """The recipes `--search` tries (see the module docstring for the file format).

    Args:
        name: Names the space in the report and the study. Defaults to `"custom"`.
        stages: The template stages, as in a recipe. Defaults to `()`.
        grid: `{"STAGE.PARAM": [values] or {"low", "high"}, "STAGE": [true, false]}`;
            `null` in a list drops the stage. Defaults to `{}`.
        quantize: The file's scheme; a parameter when it lists several.
            Defaults to `("int8", "float16", "dynamic")`.
        selective_int8: When a trial's int8 file loses more than the accuracy
            limit, its most sensitive layers go back to float and that file is
            the trial's. Defaults to True.
        sampler: One of `SAMPLERS`. `"grid"` tries every listed combination
            (ranges need a `step`). Defaults to `"tpe"`.
        trials: Stop after this many finished trials (the budget still
            applies). Defaults to None: the budget alone.
        startup_trials: Random trials before TPE models the results, or
            NSGA-II's population size. Defaults to 8.
        validation_fraction: Share of the training images held out to score
            and select trials when the teacher never learned from them
            (`holdout="training"`: `invoke benchmark`'s teacher). Defaults to 0.1.
        ladder: Trials run first, in order, before the sampler: each rung is
            `{"name": N, "choice": {KEY: VALUE}, "after": M or null}`, its
            choice over the template's values; a rung `after` another runs
            only when that one met the accuracy limit (it climbs from it), and
            is skipped, with the reason logged, when it did not. The closed
            loop's ladder climbs from PTQ of the model itself to pruning it,
            then to students. Defaults to `()`: the template is the first trial.
            A rung with `"when": "latency"` is a lever for speed only: it is
            run only when the build has `--max-latency-ms` (see `for_build`).
        latency_grid: Grid keys that are levers for speed, not size or
            accuracy (`{"distill.hard_swish": ["keep", "relu"]}`): they join
            the grid only when the build has `--max-latency-ms` and the model
            has what the lever changes (`LEVER_APPLIES`; see `for_build`).
            Each list's first value is the template's. Defaults to `{}`.
        patience: Stop when this many proposals in a row (duplicates included) have not put a new file on the
            judged front (`search.stop`). Defaults to None: the budget, `trials` or the space's end alone.
    """

    name: str = "custom"
    stages: tuple = ()
    grid: dict = dataclasses.field(default_factory=dict)
    quantize: tuple = ("int8", "float16", "dynamic")
    selective_int8: bool = True
    sampler: str = "tpe"
    trials: int | None = None
    startup_trials: int = 8
    validation_fraction: float = 0.1
    ladder: tuple = ()
    latency_grid: dict = dataclasses.field(default_factory=dict)
    patience: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(dict(s) for s in self.stages))
        object.__setattr__(self, "ladder", tuple(dict(r) for r in self.ladder))
        object.__setattr__(self, "quantize", tuple(self.quantize))
        require(isinstance(self.grid, dict), f"Received an invalid value for `grid`, expected a mapping of "
                                              f"'STAGE.PARAM' to a list of values. Received: grid={self.grid!r}")
        require(self.sampler in SAMPLERS, f"Search space {self.name!r}: received an invalid value for `sampler`, "
                                           f"expected one of {list(SAMPLERS)}. Received: sampler={self.sampler!r}")
        require(self.trials is None or (isinstance(self.trials, int) and self.trials > 0),
                 f"Search space {self.name!r}: `trials` must be a number > 0 or null. Received: trials={self.trials!r}")
        require(isinstance(self.startup_trials, int) and self.startup_trials >= 2,
                 f"Search space {self.name!r}: `startup_trials` must be an integer >= 2. "
                 f"Received: startup_trials={self.startup_trials!r}")
        require(self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                 f"Search space {self.name!r}: `patience` must be an integer >= 1 or null. "
                 f"Received: patience={self.patience!r}")
        require(0 < self.validation_fraction < 0.5, f"Search space {self.name!r}: `validation_fraction` must be in "
                                                     f"(0, 0.5). Received: {self.validation_fraction!r}")
        require(bool(self.quantize), f"Search space {self.name!r}: `quantize` needs at least one scheme.")
        kinds = [s.get("stage") for s in self.stages]
        require(isinstance(self.latency_grid, dict) and not set(self.latency_grid) & set(self.grid),
                 f"Search space {self.name!r}: `latency_grid` is a mapping of 'STAGE.PARAM' to values that are not "
                 f"in `grid` too. Received: latency_grid={self.latency_grid!r}")
        for key, values in {**self.grid, **self.latency_grid}.items():
            stage, dot, param = key.partition(".")
            require(stage in STAGES, f"Search space {self.name!r}: grid key {key!r} names unknown stage {stage!r}. "
                                      f"Valid stages: {sorted(STAGES)}.")
            require(stage in kinds, f"Search space {self.name!r}: grid key {key!r} names stage {stage!r}, which is "
                                     f"not in `stages` ({kinds}). Valid keys look like 'prune.final_sparsity'.")
            if not dot:
                require(isinstance(values, list) and values and all(isinstance(v, bool) for v in values),
                         f"Search space {self.name!r}: grid key {key!r} (a stage) takes [true, false]: whether "
                         f"the stage runs. Received: {values!r}")
                continue
            fields = [f.name for f in dataclasses.fields(STAGES[stage].config)]
            require(param in fields, f"Search space {self.name!r}: grid key {key!r}: {stage} has no parameter "
                                      f"{param!r}. Valid parameters: {fields}.")
            _param(self.name, key, values)
        if self.sampler == "grid":
            for p in self.parameters().values():
                require(p.values() is not None, f"Search space {self.name!r}: the grid sampler lists every value, "
                                                 f"but grid key {p.key!r} is a range without a `step`. Add a step "
                                                 f"or pick sampler 'tpe'.")
        # The template, each listed value and both ends of each range must make valid recipes.
        for p in self.parameters().values():
            for v in (p.values() if p.choices is not None else [p.low, p.high]):
                self.recipe({p.key: v})
        names, speed = [], []
        full = self.for_build(None, 1.0)  # the `when: latency` rungs are checked against the space they run in
        for rung in self.ladder:
            where = f"Search space {self.name!r}: ladder rung {rung.get('name')!r}"
            require(set(rung) <= {"name", "choice", "after", "when"} and isinstance(rung.get("name"), str)
                     and isinstance(rung.get("choice", {}), dict) and rung.get("when") in (None, "latency"),
                     f"{where}: a rung is {{\"name\": N, \"choice\": {{KEY: VALUE}}, \"after\": NAME or null, "
                     f"\"when\": \"latency\" (optional)}}. Received: {rung!r}")
            require(rung.get("when") or rung.get("after") not in speed,
                     f"{where}: it climbs from {rung.get('after')!r}, a rung run only with --max-latency-ms; give it "
                     f"\"when\": \"latency\" too.")
            view = full if rung.get("when") else self
            require(rung["name"] not in names, f"{where}: two rungs have this name; name each once.")
            require(rung.get("after") in (None, *names),
                     f"{where}: `after` names {rung.get('after')!r}, which is not an earlier rung ({names}).")
            unknown = sorted(set(rung.get("choice", {})) - set(view.parameters()))
            require(not unknown, f"{where}: {unknown} are not parameters of the space. Valid keys: "
                                  f"{sorted(view.parameters())}.")
            view.recipe(view.rung_choice(rung))
            names.append(rung["name"])
            if rung.get("when"):
                speed.append(rung["name"])

    def for_build(self, model, max_latency_ms) -> "SearchSpace":
        """The space one build searches: with `max_latency_ms`, the `latency_grid` keys whose lever `model`
        has (`LEVER_APPLIES`; any lever when `model` is None) join the grid and the `when: latency` rungs that
        use only those join the ladder; without it, neither. The build and every worker call this, so their
        fingerprints agree; a space without either is returned as it is."""
        if not self.latency_grid and not any(r.get("when") for r in self.ladder):
            return self
        latency = max_latency_ms is not None
        extra = {k: v for k, v in self.latency_grid.items()
                 if latency and (model is None or LEVER_APPLIES.get(k, lambda m: True)(model))}
        keys = set(self.grid) | set(extra) | {"quantize"}
        ladder = tuple({k: v for k, v in r.items() if k != "when"} for r in self.ladder
                       if not r.get("when") or (extra and set(r.get("choice", {})) <= keys))
        # The template holds each added key's first value ("keep"), so a rung that does not name it keeps it
        # rather than leaving it to the sampler.
        stages = tuple({**st, **{k.partition(".")[2]: _param(self.name, k, v).values()[0] for k, v in extra.items()
                                 if k.partition(".")[0] == st.get("stage") and k.partition(".")[2] not in st}}
                       for st in self.stages)
        return self.replace(stages=stages, grid={**self.grid, **extra}, latency_grid={}, ladder=ladder)

    def parameters(self) -> dict:
        """`{key: Param}`: the grid's, plus `quantize` when it lists several schemes."""
        out = {k: _param(self.name, k, v) for k, v in self.grid.items()}
        if len(self.quantize) > 1:
            out["quantize"] = Param("quantize", choices=self.quantize)
        return out

    def suggest(self, trial) -> dict:
        """One trial's choice `{key: value}`, every parameter asked of the Optuna `trial` (all, always, so
        every sampler sees one fixed space; `recipe` ignores the parameters of a dropped stage)."""
        choice = {}
        for key, p in self.parameters().items():
            if p.choices is not None:
                enc = [_encode(v) for v in p.choices]
                choice[key] = p.choices[enc.index(trial.suggest_categorical(key, enc))]
            elif p.is_int:
                choice[key] = trial.suggest_int(key, p.low, p.high, step=p.step or 1, log=p.log)
            else:
                v = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
                choice[key] = round(v, 10) if p.step else float(f"{v:.3g}")  # 3 digits: names and cache keys repeat
        return choice

    def template_choice(self) -> dict:
        """The template's own values as a choice (each stage on, the first scheme), for the parameters whose
        domain holds them: the study's first trial, so the recipe the space was written around is measured."""
        stages = {s["stage"]: s for s in self.stages}
        out = {}
        for key, p in self.parameters().items():
            stage, dot, param = key.partition(".")
            if key == "quantize":
                value = self.quantize[0]
            elif not dot:
                value = True
            elif param in stages[stage]:
                value = stages[stage][param]
            else:
                continue
            if (p.choices is not None and value in p.choices) or (
                    p.choices is None and isinstance(value, (int, float)) and p.low <= value <= p.high
                    and (p.step is None or abs(round((value - p.low) / p.step) * p.step + p.low - value) < 1e-9)):
                out[key] = _encode(value)
        return out

    def rung_choice(self, rung: dict) -> dict:
        """A ladder rung's full choice (decoded): the template's values, then the rung's."""
        params = self.parameters()
        decoded = {}
        for key, enc in self.template_choice().items():
            p = params[key]
            decoded[key] = p.choices[[_encode(v) for v in p.choices].index(enc)] if p.choices is not None else enc
        return {**decoded, **rung.get("choice", {})}

    def rung_params(self, rung: dict) -> dict:
        """A ladder rung as Optuna's `enqueue_trial` takes it: every parameter the template or rung fixes."""
        return {k: _encode(v) for k, v in self.rung_choice(rung).items()}

    def grid_space(self) -> dict:
        """The grid sampler's `{key: [encoded values]}`."""
        return {k: [_encode(v) for v in p.values()] for k, p in self.parameters().items()}

    def recipe(self, choice: dict) -> Recipe:
        """The recipe of one choice: the template with its values; one scheme."""
        off = {k for k, v in choice.items() if "." not in k and k != "quantize" and v is False}
        off |= {k.partition(".")[0] for k, v in choice.items() if "." in k and v is None}
        stages = []
        for s in self.stages:
            if s["stage"] in off:
                continue
            s = dict(s)
            for key, v in choice.items():
                stage, dot, param = key.partition(".")
                if dot and stage == s["stage"]:
                    s[param] = v
            stages.append(s)
        quantize = choice.get("quantize", self.quantize[0])
        named = {k: v for k, v in choice.items() if k != "quantize" and not (k.partition(".")[0] in off and "." in k
                                                                             and v is not None)}
        try:
            return Recipe(name=candidate_name(named), stages=tuple(stages), quantize=(quantize,))
        except EdgeCompressError as e:
            raise EdgeCompressError(f"Search space {self.name!r}, candidate {choice}: {e}") from None

    def candidates(self) -> list[tuple[dict, Recipe]]:
        """Every listed combination (what the grid sampler tries), as (choice, recipe), first key slowest."""
        params = self.parameters()
        lists = [p.values() for p in params.values()]
        require(all(v is not None for v in lists), f"Search space {self.name!r} has ranges without a `step`: its "
                                                    "combinations cannot be listed.")
        return [(c, self.recipe(c)) for c in (dict(zip(params, vs)) for vs in itertools.product(*lists))]

    def fingerprint(self) -> str:
        """What the study checks before a worker joins: this space's content."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def candidate_name(choice: dict) -> str:
    """A file-name-safe name: `{"distill.width": 0.5, "prune.final_sparsity": None}` -> `"width0.5-final_sparsity_none"`."""
    if not choice:
        return "base"
    parts = []
    for key, v in choice.items():
        stage, dot, param = key.partition(".")
        param = param if dot else stage
        if v is None or v is False:
            slug = "_none" if dot else "_off"
        elif v is True and not dot:
            slug = "_on"
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            slug = f"{v:g}"
        else:  # strings, booleans, mappings such as ranks: letters, digits and . - _ only
            slug = re.sub(r"[^A-Za-z0-9.-]+", "_", v if isinstance(v, str) else json.dumps(v)).strip("_")
            slug = slug if slug[:1].isdigit() else f"_{slug}"
        parts.append(param + slug)
    return "-".join(parts)


def load_space(spec) -> SearchSpace:
    """A search space from a shipped name (`edgecompress/search/spaces/NAME.json`) or a JSON file."""
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


def _absolute(value):
    """A path option as an absolute path (a worker may start elsewhere); names such as `fashion-mnist` unchanged."""
    return str(Path(value).resolve()) if value and Path(str(value)).exists() else value


def trial_entry(t, retried: dict | None = None) -> dict:
    """One trial of the study as the report's search log has it: status (`done`, `stopped early`, `duplicate`,
    `retried`, `failed`, or Optuna's state), why, the stage top-1s, who ran it and how long. `retried` maps
    a failed trial's number to why another trial runs it again (that trial's `retry_reason`)."""
    retried = retried or {}
    from optuna.trial import TrialState

    ua = t.user_attrs
    entry = {"trial": t.number, "name": ua.get("name", f"trial{t.number}"), "choice": ua.get("choice", t.params),
             "status": t.state.name.lower(), "seconds": ua.get("seconds", 0.0), "worker": ua.get("worker"),
             "tf_threads": ua.get("tf_threads")}
    if "stages" in ua:
        entry["stage_accuracy"] = {s["stage"]: s["accuracy"] for s in ua["stages"]}
    if "rung" in ua:
        entry["rung"] = ua["rung"]
    if "suspect" in ua:
        entry["suspect"] = ua["suspect"]
    if "duplicate_of" in ua:
        entry.update(status="duplicate", reason=f"same recipe and scheme as trial {ua['duplicate_of']}")
    elif t.state == TrialState.PRUNED and "stopped_early" in ua:
        se = ua["stopped_early"]
        entry.update(status="stopped early", stage=se["stage"],
                     reason=f"after {se['stage']}: {100 * se['accuracy']:.2f}% < {100 * se['floor']:.2f}%")
    elif t.state == TrialState.PRUNED and "ended" in ua:
        entry.update(status="ended", reason=ua["ended"])
    elif t.number in retried:
        why = retried[t.number]
        how = "was interrupted" if why.get("interrupted") else "died"
        entry.update(status="retried", reason=f"its worker {why.get('worker') or '?'} {how}; run again")
    elif t.state == TrialState.FAIL:
        entry.update(status="failed", error=ua.get("error", "the worker stopped with an error; see its log"))
    elif t.state == TrialState.COMPLETE and "artifact" in ua:
        entry["status"] = "done"
    return entry


def _trial_file(t, store, cache):
    """A finished trial's `results.Artifact`, its file fetched from the artifact store into the cache (checked
    against its sha256)."""
    from optuna.artifacts import download_artifact

    from edgecompress.lite.fileio import sha256_path
    from edgecompress.report.results import Artifact

    record = t.user_attrs["artifact"]
    a = Artifact.from_dict({k: v for k, v in record.items() if k != "artifact_id"})
    local = cache.file(f"{a.name}.trial", a.sha256, ".tflite")
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        download_artifact(artifact_store=store, file_path=str(local), artifact_id=record["artifact_id"])
    if sha256_path(local) != a.sha256:
        raise EdgeCompressError(f"Trial {t.number}'s file in the artifact store does not match its recorded sha256: "
                                "the store was changed or is another study's. Point --artifacts at this study's.")
    a.cache_path = str(local)
    a.extra["trial"] = t.number
    return a


def mark_fronts(artifacts, max_accuracy_drop):
    """Marks `pareto` on every artifact: size, the study's front (validation top-1 against gzip bytes);
    latency, test top-1 against p50. Returns (size front, its hypervolume, the reference point): the
    reference point is the first artifact's (the teacher's), as `pareto.front_hypervolume` defines it."""
    from edgecompress.report.pareto import front_hypervolume, mark_pareto, pareto

    mark_pareto(artifacts)  # both fronts on test top-1; the size front is then the study's
    objectives = [(a.gzip_bytes, a.extra["val_accuracy"]) for a in artifacts]
    front = set(pareto(objectives))
    for i, a in enumerate(artifacts):
        a.extra["pareto"]["size"] = i in front
    hv = front_hypervolume(objectives[1:], objectives[0], max_accuracy_drop)
    return [a for i, a in enumerate(artifacts) if i in front], {**hv, "on": "validation top-1"}


def teacher_saw_validation(val_accuracy: float, n_val: int, test_accuracy: float, n_test: int,
                           z: float = 4.0, min_points: float = 1.0) -> dict | None:
    """{"validation", "test", "z"} when the teacher does better on the validation split than on the test split
    by more than sampling explains (`z` standard errors, and at least `min_points`): it learned from those
    images, so its validation top-1, the search's baseline, is inflated. None otherwise."""
    gap = val_accuracy - test_accuracy
    se = math.sqrt(val_accuracy * (1 - val_accuracy) / max(n_val, 1) + test_accuracy * (1 - test_accuracy) / max(n_test, 1))
    score = gap / se if se > 0 else (math.inf if gap > 0 else 0.0)
    if 100 * gap < min_points or score < z:
        return None
    return {"validation": val_accuracy, "test": test_accuracy, "z": round(score, 1)}


HOLDOUTS = ("test", "training")
TRIALS_DIR = "trials"  # a search's files, beside trials.csv; the build folder keeps selected.tflite and the front
FINISH_RESERVE_S = 90  # of a build's budget, kept for measuring every file again and writing the report
MIN_JUDGED = 100  # below it one image moves top-1 by more than a point: a 1-point limit cannot be judged


def judging_split(dataset, space: SearchSpace, seed: int = 0, holdout: str = "test"):
    """(judge, report, how): what a search holds its limit against, and what it reports on.

    `holdout="test"` (a model that learned from all its training images: a user's, or build-edge's own
    teacher): the data's validation split (`val/`), or else a stratified, seeded half of the test split,
    judges, and the test split (or its other half) reports (`data.Dataset.held_out`). `"training"` (a
    teacher trained without them: `invoke benchmark`'s): `space.validation_fraction` of the training images
    judge, and trials train on the rest. Raises when fewer than `MIN_JUDGED` images would judge, naming their
    standard error.
    """
    from edgecompress.models.sanity import standard_error

    require(holdout in HOLDOUTS, f"Received an invalid value for `holdout`, expected one of {list(HOLDOUTS)}. "
                                  f"Received: holdout={holdout!r}")
    if holdout == "training":
        judge = dataset.validation_split(space.validation_fraction, seed)
        how = {"judge": f"{round(100 * space.validation_fraction)}% of the training images, held out of the "
                        "teacher's training", "judge_count": int(len(judge.y_test)), "report": "test split",
               "report_count": int(len(dataset.y_test))}
        report = dataset
    else:
        judge, report, how = dataset.held_out(seed)
    n = how["judge_count"]
    if n < MIN_JUDGED:
        se = 100 * standard_error(0.5, n)
        raise EdgeCompressError(
            f"Only {n} held-out images to judge the accuracy limit on ({how['judge']}): one image is "
            f"{100 / max(n, 1):.1f} points and the top-1's standard error up to {se:.1f} points, so a limit of "
            f"about one point cannot be judged. Add a `val/` folder (or `x_val`, `y_val`) or more test images "
            f"(at least {MIN_JUDGED} held out), or run a fixed recipe without a limit (`--recipe default`).")
    return judge, report, {**how, "holdout": holdout}


class Confirming:
    """Each file's `confirm.PairedDrop` against the model's float32 file on the confirmation split (the search's
    reporting split, which no trial was scored on), by group when the split has groups."""

    def __init__(self, baseline, dataset, cache, measure: MeasureSettings):
        from edgecompress.builder.measure import measure_file

        self.n, self.groups = len(dataset.y_test), dataset.groups_test
        self.base = measure_file(baseline.cache_path, dataset, cache, threads=measure.threads, runs=measure.runs,
                                 warmup=measure.warmup)

    def paired(self, measured: dict):
        from edgecompress.builder.confirm import PairedDrop
        from edgecompress.lite.evaluation import read_terms

        return PairedDrop.of(read_terms(self.base["terms"], self.n), read_terms(measured["terms"], self.n),
                             self.groups)


def fingerprint(teacher, dataset, space: SearchSpace, pixels, *, seed=0, max_accuracy_drop=None,
                max_latency_ms=None, margin_se=None) -> dict:
    """What a study is made of; a worker whose own differ may not join (`optimize.open_study`)."""
    import numpy as np

    from edgecompress.recipes.cache import versions

    h = hashlib.sha256()
    for w in teacher.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return {"teacher": h.hexdigest()[:16], "data": dataset.fingerprint()[:16], "space": space.fingerprint(),
            "calibration": hashlib.sha256(pixels.tobytes()).hexdigest()[:16], "seed": seed,
            "max_accuracy_drop": max_accuracy_drop,
            **({"max_latency_ms": max_latency_ms} if max_latency_ms is not None else {}),
            **({"margin_se": margin_se} if margin_se else {}),
            "versions": hashlib.sha256(json.dumps(versions(), sort_keys=True).encode()).hexdigest()[:16]}


def search(teacher, dataset, space: SearchSpace, pixels, cache, teacher_key, *, budget_minutes: float = 30,
           max_accuracy_drop=None, options=None, seed=0, verbose=1, out_dir=None, storage=None, workers: int = 1,
           artifacts=None, study_name=None, worker_command=None, holdout: str = "test", started_at=None,
           measure: MeasureSettings | None = None):
    """Runs (or resumes) the space's Optuna study within the budget; returns a `results.BuildResult`.

    Trials are judged on images the teacher never learned from
    (`judging_split`: with `holdout="test"`, the data's validation split or
    half of its test split; with `"training"`, a share of the training
    images the teacher was trained without); afterwards every trial's file
    is measured again, one at a time, on the reporting images (top-1, latency).
    With `started_at` (a build's `time.time()` at its start), the budget is
    the whole build's, less `FINISH_RESERVE_S` for that last measurement.
    Artifacts are the teacher's float32 file and one file per finished
    trial, named `<candidate>_<scheme>`, each with `val_accuracy` and
    `pareto` (size: the study's front on validation top-1 and gzip bytes;
    latency: on test top-1 and p50). `search` in the result logs every
    trial (`done`, `stopped early` and at which stage, `failed`,
    `duplicate`, `retried`), the sampler, storage and workers.

    With `workers` > 1, `worker_command` (the argv of `invoke search-worker`
    for this build) is started that many times, each with a share of the
    cores, and this process waits for them.

    `measure` (`MeasureSettings`) times every file; it defaults to the
    build's (`options.measure`). `options` (a `BuildOptions`) is kept in the
    study for the workers that join it.
    """
    from optuna.artifacts import FileSystemArtifactStore

    from edgecompress.builder.measure import measure_file, teacher_baseline
    from edgecompress.report.results import BuildResult
    from edgecompress.recipes.runner import teacher_entry

    require(isinstance(budget_minutes, (int, float)) and budget_minutes > 0,
             "Received an invalid value for `budget_minutes`, expected a number > 0. "
             f"Received: budget_minutes={budget_minutes!r}")
    require(isinstance(workers, int) and workers >= 1,
             f"Received an invalid value for `workers`, expected an integer >= 1. Received: workers={workers!r}")
    require(workers == 1 or worker_command, "`workers` > 1 needs the worker command (use `invoke build-edge`).")
    out_dir = Path(out_dir) if out_dir is not None else Path(cache.root).parent
    measure = measure or (options.measure if options is not None else MeasureSettings())
    threads, runs, warmup = measure.threads, measure.runs, measure.warmup
    started = time.time()
    max_latency_ms = getattr(options, "max_latency_ms", None)
    space = space.for_build(teacher, max_latency_ms)  # levers for speed join only when speed is asked
    if getattr(options, "patience", None):
        space = dataclasses.replace(space, patience=options.patience)
    val, dataset, how = judging_split(dataset, space, seed, holdout)
    store_dir = Path(artifacts) if artifacts else optimize.study_dir(out_dir) / "artifacts"
    store_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(store_dir))
    study_storage = optimize.open_storage(storage, out_dir)
    margin_se = getattr(options, "margin_se", 0.0) if max_accuracy_drop is not None else 0.0
    fp = fingerprint(teacher, val, space, pixels, seed=seed, max_accuracy_drop=max_accuracy_drop,
                     max_latency_ms=max_latency_ms, margin_se=margin_se)
    name = study_name or optimize.STUDY_NAME
    study = optimize.open_study(study_storage, space, fp, seed=seed, name=name, where=optimize.describe_url(storage))
    study.set_user_attr("ready", False)  # until the teacher is measured and the deadline set
    resumed = len(study.trials)
    study.set_user_attr("holdout", holdout)
    if not resumed and space.sampler != "grid" and not space.ladder:
        study.enqueue_trial(space.template_choice())  # the template recipe is measured first (a ladder: its rungs)

    teacher_log = [teacher_entry(teacher, dataset, cache, teacher_key)]
    base_arts, failed = teacher_baseline(teacher, pixels, dataset, cache, teacher_key, teacher_log[0],
                                         threads=threads, runs=runs, warmup=warmup)
    if not base_arts:
        raise EdgeCompressError("The teacher could not be converted: " + "; ".join(f["error"] for f in failed))
    baseline = base_arts[0]
    judged = measure_file(baseline.cache_path, val, cache, threads=threads, runs=1, warmup=0)
    baseline.extra["val_accuracy"] = judged["accuracy"]
    seen = holdout == "training" and teacher_saw_validation(baseline.extra["val_accuracy"], len(val.y_test),
                                                            baseline.accuracy, len(dataset.y_test))
    if seen:
        logger.warning("The teacher scores %.2f%% on the validation split but %.2f%% on the test split: it was "
                       "probably trained on those images (a model you bring learned from all its training images; "
                       "the search holds %d%% of them out for its trials), so --max-accuracy-drop is judged against "
                       "an inflated top-1 and few files will meet it. Train the model without them "
                       "(`Dataset.without_validation(%g, seed=%d)` holds out the same images), or raise the limit.",
                       100 * seen["validation"], 100 * seen["test"], round(100 * space.validation_fraction),
                       space.validation_fraction, seed)
    # The budget is the build's: it counts from `started_at` (the build's start) and leaves time to measure
    # every file again and write the report.
    deadline = (started_at + 60 * budget_minutes - FINISH_RESERVE_S if started_at is not None
                else time.time() + 60 * budget_minutes)
    study.set_user_attr("deadline", deadline)
    study.set_user_attr("stop", False)
    study.set_user_attr("artifacts", str(store_dir.resolve()))
    study.set_user_attr("baseline_accuracy", baseline.extra["val_accuracy"])
    study.set_user_attr("baseline_terms", judged.get("terms"))  # for each file's paired standard error
    if options is not None and hasattr(options, "to_dict"):  # what `invoke search-worker` rebuilds its side from
        study.set_user_attr("options", {**options.to_dict(), **{k: _absolute(getattr(options, k)) for k in
                                                               ("model", "data", "search", "calibration", "out_dir")}})
    study.set_user_attr("ready", True)  # workers wait for this
    from edgecompress.models.sanity import standard_error

    t, v = tasks.task(dataset.task), baseline.extra["val_accuracy"]
    logger.info("Search %r: sampler %s, %s, budget %g min, %d worker(s)%s; trials are judged on %d images (%s; "
                "teacher's float32 file: %s), reported on %d (%s)", space.name, space.sampler,
                optimize.describe_url(storage), budget_minutes, workers,
                f", resuming a study of {resumed} trial(s)" if resumed else "", how["judge_count"], how["judge"],
                f"{100 * v:.2f}% +/- {100 * standard_error(v, how['judge_count']):.2f}" if t.as_percent else t.says(v),
                how["report_count"], how["report"])
    if max_accuracy_drop is not None:
        from edgecompress.builder.confirm import DEFAULT_CONFIDENCE, certifiable_se
        from edgecompress.models.sanity import interval_counts

        g = how.get("report_groups")
        logger.info("The selected file will be certified on the %s (%s), which no trial is scored on: a file that "
                    "loses nothing is certified only when its paired standard error there is under %.2f points",
                    how["report"], interval_counts(how["report_count"], g),
                    certifiable_se(max_accuracy_drop, getattr(options, "confidence", DEFAULT_CONFIDENCE), g))
    if workers == 1:
        ctx = optimize.TrialContext(teacher, val, space, pixels, cache, teacher_key, baseline.extra["val_accuracy"],
                                    max_accuracy_drop, store, seed=seed, verbose=verbose,
                                    measure=MeasureSettings(threads, runs=20, warmup=5),
                                    max_latency_ms=max_latency_ms, baseline_terms=judged.get("terms"),
                                    margin_se=margin_se)
        optimize.run_worker(study, study_storage, ctx, deadline=deadline, trials=space.trials)
    else:
        optimize.run_local_workers(study, study_storage, worker_command, workers)
    optimize.wait_for_running(study, study_storage)  # workers on other machines finish their trial

    # Collect: every trial's file, measured again on the test split (the confirmation split), one at a time.
    confirming = Confirming(baseline, dataset, cache, MeasureSettings(threads, runs=runs, warmup=warmup))
    trials = study.get_trials(deepcopy=False)
    log, arts, names = [], [], set()
    retried = {t.user_attrs["retry_of"]: t.user_attrs.get("retry_reason", {}) for t in trials if "retry_of" in t.user_attrs}
    for t in trials:
        entry = trial_entry(t, retried)
        if entry["status"] == "done":
            a = _trial_file(t, store, cache)
            if a.name in names:
                a.name = f"{a.name}-t{t.number}"
            names.add(a.name)
            a.path = f"{TRIALS_DIR}/t{t.number:03d}.tflite"  # short names under trials/; trials.csv maps them
            m = measure_file(a.cache_path, dataset, cache, threads=threads, runs=runs, warmup=warmup)
            a.extra["val_accuracy"], a.accuracy = a.accuracy, m["accuracy"]
            a.latency_ms, a.init_ms, a.agreement = m["latency_ms"], m["init_ms"], None
            a.extra["confirm"] = confirming.paired(m).to_dict()
            arts.append(a)
            entry["artifacts"] = [a.name]
        log.append(entry)
    made = {trials[e["trial"]].user_attrs.get("config") for e in log if e["status"] == "done"}
    for e in log:  # a failure counts (exit 4) unless a later trial made the same file
        if e["status"] == "failed" and trials[e["trial"]].user_attrs.get("config") not in made:
            failed.append({"name": e["name"], "error": e["error"]})
    done = sum(e["status"] == "done" for e in log)
    if not done:
        raise EdgeCompressError(f"Search {space.name!r}: no trial finished:\n" + "\n".join(
            f"  trial {e['trial']} {e['name']}: {e['status']} {e.get('error') or e.get('reason') or ''}" for e in log))
    baseline.extra["confirm"] = confirming.paired(confirming.base).to_dict()
    artifacts = [baseline] + arts
    front, hv = mark_fronts(artifacts, max_accuracy_drop)
    logger.info("Search done: %d trial(s) finished of %d in %.0f s; front: %s; hypervolume %.4g KB x points", done,
                len(trials), time.time() - started, ", ".join(a.name for a in front), hv["value"])
    counts = {}
    for e in log:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    return BuildResult(artifacts, failed, teacher_log, baseline.name, search={
        "space": space.to_dict(), "budget_minutes": budget_minutes, "seconds": round(time.time() - started, 1),
        "sampler": space.sampler, "storage": optimize.describe_url(storage), "study": name, "workers": workers,
        "validation": {"count": int(len(val.y_test)), "fraction": space.validation_fraction, **how,
                       **({"teacher_saw_it": seen} if seen else {})},
        "ladder_skipped": study.user_attrs.get("ladder_skipped") or {},
        "stopped": study.user_attrs.get("stopped") or "the budget",
        "resumed_trials": resumed, "counts": counts, "candidates": log,
        "hypervolume": hv})
