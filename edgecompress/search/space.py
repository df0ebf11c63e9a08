"""A search space: the template recipe, the parameters to vary, the ladder of rungs tried first, as data.

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
data. The study has two objectives, validation top-1 (maximized) and size
(minimized: file bytes, or gzip bytes with `--size gzip`); `--max-accuracy-drop` is its constraint. `sampler` picks
Optuna's sampler (see `SAMPLERS`); how trials run is `search.objective`,
the study and its storage `search.study`, its workers `search.worker`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
from pathlib import Path

from edgecompress.builder import targets
from edgecompress.report import sizes
from edgecompress.configs import Config, require
from edgecompress.errors import EdgeCompressError
from edgecompress.recipes.recipe import Recipe
from edgecompress.recipes.registry import STAGES
from edgecompress.search import samplers
from edgecompress.search.params import Param, encode, parse_param

logger = logging.getLogger(__name__)


SPACES_DIR = Path(__file__).parent / "spaces"


# Optuna's samplers by name, with settings for 20-40 trials (see `make_sampler`).
SAMPLERS = tuple(samplers.SAMPLERS)


def _has_hard_swish(model) -> bool:
    from edgecompress.quantize.rewrites import hard_swish_multiplies

    return bool(hard_swish_multiplies(model))


# A `latency_grid` key joins a build's grid only when the model has what it changes (`SearchSpace.for_build`):
# a ReLU student of a model without hard-swish is the same student under another name.
LEVER_APPLIES = {"distill.hard_swish": _has_hard_swish}
# When a ladder rung with `"when"` runs, as its error messages say it.
_WHEN = {"latency": "with --max-latency-ms", "gzip": "with --size gzip"}


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
            run only when the build has `--max-latency-ms` (see `for_build`); one with `"when": "gzip"`
            (pruning alone) only when the build chooses by gzip bytes (`--size gzip`).
        latency_grid: Grid keys that are levers for speed, not size or
            accuracy (`{"distill.hard_swish": ["keep", "relu"]}`): they join
            the grid only when the build has `--max-latency-ms` and the model
            has what the lever changes (`LEVER_APPLIES`; see `for_build`).
            Each list's first value is the template's. Defaults to `{}`.
        patience: Stop when this many proposals in a row (duplicates included) have not put a new file on the
            judged front (`search.stop`). Defaults to None: the budget, `trials` or the space's end alone.
        gzip_stages: Stages that shrink the download and not the file (`["prune", "cluster"]`: zeros and
            repeated values compress, a dense file holds as many bytes). A build that chooses by file bytes drops
            them from the template, the grid and the rungs (`for_build`): a lever the objective cannot see only
            adds look-alikes of one file to choose among, and the luckiest of them on the judging split is the
            one the confirmation then tests. Defaults to `()`.
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
    gzip_stages: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(dict(s) for s in self.stages))
        object.__setattr__(self, "ladder", tuple(dict(r) for r in self.ladder))
        object.__setattr__(self, "quantize", tuple(self.quantize))
        object.__setattr__(self, "gzip_stages", tuple(self.gzip_stages))
        require(set(self.gzip_stages) <= set(STAGES), f"Search space {self.name!r}: `gzip_stages` names stages, "
                                                       f"one of {sorted(STAGES)}. Received: {list(self.gzip_stages)}")
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
        self._check_grid()
        if self.sampler == "grid":
            for p in self.parameters().values():
                require(p.values() is not None, f"Search space {self.name!r}: the grid sampler lists every value, "
                                                 f"but grid key {p.key!r} is a range without a `step`. Add a step "
                                                 f"or pick sampler 'tpe'.")
        # The template, each listed value and both ends of each range must make valid recipes.
        for p in self.parameters().values():
            for v in (p.values() if p.choices is not None else [p.low, p.high]):
                self.recipe({p.key: v})
        self._check_ladder()

    def _check_grid(self) -> None:
        """Each grid key names a stage of the space and a parameter of its config, with values it takes."""
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
            parse_param(self.name, key, values)

    def _check_ladder(self) -> None:
        """Each ladder rung is well formed, named once, climbs from an earlier rung, and makes a valid recipe."""
        names, speed = [], {}  # speed: a conditional rung's name -> its `when`
        full = self.for_build(None, 1.0, "gzip")  # a `when` rung is checked against the space it runs in
        for rung in self.ladder:
            where = f"Search space {self.name!r}: ladder rung {rung.get('name')!r}"
            require(set(rung) <= {"name", "choice", "after", "when"} and isinstance(rung.get("name"), str)
                     and isinstance(rung.get("choice", {}), dict) and rung.get("when") in (None, "latency", "gzip"),
                     f"{where}: a rung is {{\"name\": N, \"choice\": {{KEY: VALUE}}, \"after\": NAME or null, "
                     f"\"when\": \"latency\" or \"gzip\" (optional)}}. Received: {rung!r}")
            require(rung.get("when") == speed.get(rung.get("after"), rung.get("when")),
                     f"{where}: it climbs from {rung.get('after')!r}, a rung run only "
                     f"{_WHEN.get(speed.get(rung.get('after')))}; give it \"when\": "
                     f"\"{speed.get(rung.get('after'))}\" too.")
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
                speed[rung["name"]] = rung["when"]

    @classmethod
    def json_schema(cls) -> dict:
        """A search-space file's JSON Schema: the template's stages (`registry.stage_schema`), the grid (a list of
        values, a range, or a stage's `[true, false]`), the sampler, the ladder's rungs."""
        from edgecompress.quantize.schemes import VARIANTS
        from edgecompress.recipes.registry import stage_schema

        schema = super().json_schema()
        p = schema["properties"]
        p["description"] = {"type": "string", "description": "What the space is for."}
        p["stages"] = {"type": "array", "items": stage_schema(), "description": "The template recipe's stages."}
        values = {"anyOf": [{"type": "array", "minItems": 1},
                            {"type": "object", "required": ["low", "high"], "additionalProperties": False,
                             "properties": {"low": {"type": "number"}, "high": {"type": "number"},
                                            "step": {"type": "number"}, "log": {"type": "boolean"}}}]}
        key = "^[a-z_]+(\\.[a-z_]+)?$"
        p["grid"] = {**p["grid"], "type": "object", "propertyNames": {"pattern": key}, "additionalProperties": values}
        p["latency_grid"] = {**p["latency_grid"], "type": "object", "propertyNames": {"pattern": key},
                             "additionalProperties": {"type": "array", "minItems": 1}}
        p["quantize"] = {**p["quantize"], "type": "array", "minItems": 1, "items": {"enum": sorted(VARIANTS)}}
        p["sampler"] = {**p["sampler"], "enum": list(SAMPLERS)}
        p["gzip_stages"] = {**p["gzip_stages"], "type": "array", "items": {"enum": sorted(STAGES)}}
        p["ladder"] = {**p["ladder"], "type": "array", "items": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "choice": {"type": "object"},
                           "after": {"type": ["string", "null"]}, "when": {"enum": ["latency", "gzip"]}}}}
        return schema

    def for_build(self, model, max_latency_ms, size: str = sizes.DEFAULT_SIZE,
                  target: str | None = None) -> "SearchSpace":
        """The space one build searches: with `max_latency_ms`, the `latency_grid` keys whose lever `model`
        has (`LEVER_APPLIES`; any lever when `model` is None) join the grid and the `when: latency` rungs that
        use only those join the ladder; without it, neither. The `when: gzip` rungs (pruning alone, which
        shrinks the download and not the file) join only when `size` is "gzip", and without it the `gzip_stages`
        leave the template, the grid and the rungs (`without_stages`). For a `target`
        (`builder.targets`) with its own schemes, only the variants of those stay, and the rungs that name
        another go; for one that ships no float layer, no selective-int8 recovery is offered. The
        build and every worker call this, so their fingerprints agree; a space without any of these is
        returned as it is."""
        space = self._for_target(targets.target(target)) if target is not None else self
        if size != "gzip" and space.gzip_stages:
            space = space.without_stages(space.gzip_stages)
        if not space.latency_grid and not any(r.get("when") for r in space.ladder):
            return space
        latency = max_latency_ms is not None
        extra = {k: v for k, v in space.latency_grid.items()
                 if latency and (model is None or LEVER_APPLIES.get(k, lambda m: True)(model))}
        keys = set(space.grid) | set(extra) | {"quantize"}
        runs = {None: lambda r: True, "gzip": lambda r: size == "gzip",
                "latency": lambda r: bool(extra) and set(r.get("choice", {})) <= keys}
        ladder = tuple({k: v for k, v in r.items() if k != "when"} for r in space.ladder
                       if runs.get(r.get("when"), lambda r: False)(r))  # an unknown `when`: `_check_ladder` says so
        # The template holds each added key's first value ("keep"), so a rung that does not name it keeps it
        # rather than leaving it to the sampler.
        stages = tuple({**st, **{k.partition(".")[2]: parse_param(space.name, k, v).values()[0] for k, v in extra.items()
                                 if k.partition(".")[0] == st.get("stage") and k.partition(".")[2] not in st}}
                       for st in space.stages)
        return space.replace(stages=stages, grid={**space.grid, **extra}, latency_grid={}, ladder=ladder)

    def without_stages(self, names) -> "SearchSpace":
        """This space without stages `names`: out of the template, the grids and every rung's choice. A rung
        that becomes another's twin goes, and the rungs that climbed from it climb from the twin."""
        def kept(key):
            return key.partition(".")[0] not in names

        ladder, seen, twin = [], {}, {}
        for rung in self.ladder:
            choice = {k: v for k, v in rung.get("choice", {}).items() if kept(k)}
            same = json.dumps([choice, rung.get("when")], sort_keys=True)
            if same in seen:
                twin[rung["name"]] = seen[same]
                continue
            seen[same] = rung["name"]
            after = twin.get(rung.get("after"), rung.get("after"))
            ladder.append({**rung, "choice": choice, **({"after": after} if after is not None else {})})
        return self.replace(stages=tuple(s for s in self.stages if s["stage"] not in names),
                            grid={k: v for k, v in self.grid.items() if kept(k)},
                            latency_grid={k: v for k, v in self.latency_grid.items() if kept(k)},
                            ladder=tuple(ladder), gzip_stages=())

    def _for_target(self, t) -> "SearchSpace":
        """This space with only the variants of target `t`'s schemes and the rungs that use them."""
        from edgecompress.quantize.schemes import conversion

        space = self if t.selective else self.replace(selective_int8=False)
        if t.schemes is None:
            return space
        kept = tuple(v for v in self.quantize if conversion(v).quantization.value in t.schemes)
        if not kept:
            raise EdgeCompressError(f"Search space {self.name!r} has no variant of the schemes {list(t.schemes)} "
                                    f"--target {t.name} needs (it has {list(self.quantize)}); add one to its "
                                    "`quantize`.")
        ladder = tuple(r for r in self.ladder if r.get("choice", {}).get("quantize", kept[0]) in kept)
        # A rung that climbed from one that went cannot climb: it starts from the ladder's root instead.
        names = {r["name"] for r in ladder}
        ladder = tuple(r if r.get("after") in (None, *names) else {k: v for k, v in r.items() if k != "after"}
                       for r in ladder)
        return space.replace(quantize=kept, ladder=ladder)

    def parameters(self) -> dict:
        """`{key: Param}`: the grid's, plus `quantize` when it lists several schemes."""
        out = {k: parse_param(self.name, k, v) for k, v in self.grid.items()}
        if len(self.quantize) > 1:
            out["quantize"] = Param("quantize", choices=self.quantize)
        return out

    def suggest(self, trial) -> dict:
        """One trial's choice `{key: value}`, every parameter asked of the Optuna `trial` (all, always, so
        every sampler sees one fixed space; `recipe` ignores the parameters of a dropped stage)."""
        choice = {}
        for key, p in self.parameters().items():
            if p.choices is not None:
                enc = [encode(v) for v in p.choices]
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
                out[key] = encode(value)
        return out

    def rung_choice(self, rung: dict) -> dict:
        """A ladder rung's full choice (decoded): the template's values, then the rung's."""
        params = self.parameters()
        decoded = {}
        for key, enc in self.template_choice().items():
            p = params[key]
            decoded[key] = p.choices[[encode(v) for v in p.choices].index(enc)] if p.choices is not None else enc
        return {**decoded, **rung.get("choice", {})}

    def rung_params(self, rung: dict) -> dict:
        """A ladder rung as Optuna's `enqueue_trial` takes it: every parameter the template or rung fixes."""
        return {k: encode(v) for k, v in self.rung_choice(rung).items()}

    def grid_space(self) -> dict:
        """The grid sampler's `{key: [encoded values]}`."""
        return {k: [encode(v) for v in p.values()] for k, p in self.parameters().items()}

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
    data.pop("$schema", None)  # an editor's pointer to edgecompress/_schemas/
    try:
        return SearchSpace.from_dict(data)
    except EdgeCompressError as e:
        raise EdgeCompressError(f"Search space {path}: {e}") from None
