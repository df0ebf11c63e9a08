"""Typed results: what a stage, a file and a build produced, as dataclasses.

They round-trip to the `report.json` schema (`to_dict` / `from_dict`), which
stays what it was and gains `schema_version`. The flows (`pipeline`,
`search`, `study`) pass these; the report, the gate and the devices read the
JSON they serialize to, so a report written by an older build still loads.

Example:

>>> a = Artifact.from_dict(report["artifacts"][0])
>>> a.gzip_bytes, a.accuracy
(45012, 0.889)
>>> Artifact.from_dict(a.to_dict()) == a
True
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from edgecompress.report.sizes import SIZES

SCHEMA_VERSION = 2  # 1: report.json before it was typed (no schema_version key); 2 adds the key


@dataclasses.dataclass
class StageResult:
    """One entry of the stage log: the teacher, then each recipe stage."""

    stage: str
    model: str
    metrics: dict
    config: dict | None = None
    seconds: float | None = None
    cached: bool | None = None

    def to_dict(self) -> dict:
        out = {"stage": self.stage, "model": self.model}
        if self.config is not None:
            out["config"] = self.config
        out["metrics"] = self.metrics
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.cached is not None:
            out["cached"] = self.cached
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "StageResult":
        return cls(d["stage"], d.get("model", ""), d.get("metrics", {}), d.get("config"), d.get("seconds"),
                   d.get("cached"))


# Fields every artifact has, in report.json's order; anything else (pareto, float_layers,
# kernels, unique_weights, ...) is kept in `extra` and written back as it came.
_ARTIFACT_FIELDS = ("name", "path", "quantization", "size_bytes", "gzip_bytes", "sha256", "accuracy", "agreement",
                    "latency_ms", "init_ms", "sparsity", "layer_sparsity", "float_ops", "tflm", "planned_arena_bytes")


@dataclasses.dataclass
class Artifact:
    """One `.tflite` file and how it measured."""

    name: str
    path: str
    quantization: str
    size_bytes: int
    gzip_bytes: int
    sha256: str
    accuracy: float
    agreement: float | None = None
    latency_ms: dict = dataclasses.field(default_factory=dict)
    init_ms: float | None = None
    sparsity: float | None = None
    layer_sparsity: list | None = None
    float_ops: list | None = None
    # TensorFlow Lite Micro's view (`lite.micro.MicroFit`): whether it runs the file, its tensor arena in bytes,
    # or the first node it refuses. None where it was not measured (tflite-micro not installed, an older report).
    tflm: dict | None = None
    # Its runtime tensors packed greedy by size into one arena (`lite.arena`): the RAM figure where TFLM does not
    # run the file, without the kernels' scratch. None in a report from before it.
    planned_arena_bytes: int | None = None
    recipe: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    cache_path: str | None = dataclasses.field(default=None, compare=False)  # where the file waits to be published
    # Its per-example metric terms on the test split (`evaluation.pack_terms`: for a classifier which images it
    # got right), for a paired comparison; never serialized.
    terms: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def p50_ms(self) -> float | None:
        return (self.latency_ms or {}).get("p50")

    def to_dict(self) -> dict:
        out: dict[str, Any] = {k: getattr(self, k) for k in _ARTIFACT_FIELDS  # a report from before them stays as it was
                               if k not in ("tflm", "planned_arena_bytes") or getattr(self, k) is not None}
        out.update(self.extra)
        out["recipe"] = self.recipe
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Artifact":
        known = {k: d[k] for k in _ARTIFACT_FIELDS if k in d}
        extra = {k: v for k, v in d.items() if k not in _ARTIFACT_FIELDS and k not in ("recipe", "cache_path")}
        return cls(**known, recipe=d.get("recipe", {}), extra=extra, cache_path=d.get("cache_path"))


@dataclasses.dataclass
class BuildResult:
    """What a flow made before it is written: files, failures, the stage log, the baseline's name.

    `final_model` (the Keras model after the last stage) is for the caller
    and is never serialized. `search` holds a search's log, `recovery` the
    int8 recovery's summary.
    """

    artifacts: list[Artifact]
    failed: list[dict] = dataclasses.field(default_factory=list)
    stages: list[StageResult] = dataclasses.field(default_factory=list)
    baseline: str = ""
    final_model: Any = dataclasses.field(default=None, compare=False, repr=False)
    search: dict | None = None
    recovery: dict | None = None

    def artifact(self, name: str) -> Artifact:
        return next(a for a in self.artifacts if a.name == name)

    def report_fields(self) -> dict:
        """The part of `report.json` this result fills in."""
        out = {"schema_version": SCHEMA_VERSION, "baseline": self.baseline,
               "artifacts": [a.to_dict() for a in self.artifacts], "stages": [s.to_dict() for s in self.stages],
               "failed": self.failed}
        if self.search is not None:
            out["search"] = self.search
        if self.recovery is not None:
            out["int8_recovery"] = self.recovery
        return out

    @classmethod
    def from_report(cls, report: dict) -> "BuildResult":
        return cls([Artifact.from_dict(a) for a in report.get("artifacts", [])], report.get("failed", []),
                   [StageResult.from_dict(s) for s in report.get("stages") or []], report.get("baseline", ""),
                   search=report.get("search"), recovery=report.get("int8_recovery"))


# report.json's keys besides the result's (`BuildResult.report_fields`): what `builder.steps.finish` and the
# flows add. A build's other facts (dataset, host, options) are kept as they come.
_REPORT_KEYS = {
    "selected": ({"type": ["string", "null"]}, "The selected file's artifact name, when a limit was given."),
    "devices": ({"type": "object"}, "Per device (`invoke bench-device`), its results by artifact name."),
    "confirmation": ({"type": "object"}, "How the selected file was certified (`builder.confirm.Confirmation`)."),
    "size_measure": ({"enum": sorted(SIZES)}, "What 'smallest' meant (`report.sizes`): file bytes, what a device "
                                                 "holds, or gzip bytes, the download. A report without it chose by gzip."),
}


def _dataclass_schema(cls, *, skip=(), required=(), extra: bool = False) -> dict:
    """A JSON Schema of `cls`'s fields as `to_dict` writes them (`configs.type_schema` per annotation)."""
    from edgecompress.configs import type_schema

    hints = typing.get_type_hints(cls)
    props = {f.name: type_schema(hints[f.name]) for f in dataclasses.fields(cls) if f.name not in skip}
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": extra}


def report_schema() -> dict:
    """The JSON Schema of `report.json` (`SCHEMA_VERSION`), generated from `Artifact`, `StageResult` and
    `BuildResult`: what `bench-device`, `select`, the HTML page and users' scripts may rely on. An artifact's
    measures beyond its fields (`pareto`, `val_accuracy`, `confirm`...) and a build's facts are allowed."""
    from edgecompress.lite.micro import MicroFit

    artifact = _dataclass_schema(Artifact, skip=("extra", "cache_path", "terms"), extra=True,
                                 required=("name", "path", "quantization", "size_bytes", "gzip_bytes", "sha256",
                                           "accuracy"))
    artifact["properties"]["accuracy"]["description"] = (
        "The task's metric on the reporting split, a fraction: top-1, or ROC-AUC, R² (`lite.tasks`; the key is "
        "`accuracy` for every task).")
    artifact["properties"]["size_bytes"]["description"] = "File bytes: what flash, mmap and an APK's asset hold."
    artifact["properties"]["gzip_bytes"]["description"] = "gzip -9 bytes of the file: the download."
    artifact["properties"]["tflm"] = {"anyOf": [{"type": "null"}, _dataclass_schema(MicroFit, required=("runs",))],
                                      "description": (
        "TensorFlow Lite Micro's view of the file: whether it runs it, the tensor arena (the RAM a microcontroller "
        "sets aside), or the first node it refuses.")}
    stage = _dataclass_schema(StageResult, required=("stage", "metrics"))
    stage["properties"]["config"] = {"type": ["object", "null"]}
    props = {"schema_version": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION,
                                "description": "The report format's version (`report.results.SCHEMA_VERSION`)."},
             "baseline": {"type": "string", "description": "The artifact every other is compared against."},
             "artifacts": {"type": "array", "items": artifact, "minItems": 1,
                           "description": "Every .tflite file the build made, and how it measured."},
             "stages": {"type": "array", "items": stage, "description": "The model, then each recipe stage."},
             "failed": {"type": "array", "items": {"type": "object", "required": ["name", "error"],
                                                    "properties": {"name": {"type": "string"},
                                                                   "error": {"type": "string"}}},
                        "description": "Files that could not be made, and why."},
             "search": {"type": "object", "required": ["space", "candidates"],
                        "properties": {"candidates": {"type": "array", "items": {
                            "type": "object", "required": ["trial", "name", "status"],
                            "properties": {"trial": {"type": "integer"}, "name": {"type": "string"},
                                           "status": {"type": "string"}}}}},
                        "description": "A search's log: its space, its trials and why it stopped."},
             "int8_recovery": {"type": "object", "description": "The selective-int8 recovery's summary."}}
    for key, (schema, text) in _REPORT_KEYS.items():
        props[key] = {**schema, "description": text}
    return {"title": "report.json", "description": "What one build made and measured (`invoke build-edge`).",
            "type": "object", "properties": props,
            "required": ["schema_version", "baseline", "artifacts", "stages", "failed"],
            "additionalProperties": True}
