"""Typed results round-trip to report.json's schema, which gains schema_version."""

import json

from edgecompress.report.results import SCHEMA_VERSION, Artifact, BuildResult, StageResult

ARTIFACT = {"name": "int8", "path": "build/edge/int8.tflite", "quantization": "int8", "size_bytes": 113032,
            "gzip_bytes": 45012, "sha256": "ab" * 32, "accuracy": 0.889, "agreement": 0.995,
            "latency_ms": {"p50": 0.017, "p90": 0.018}, "init_ms": 1.2, "sparsity": 0.75, "layer_sparsity": [],
            "float_ops": [], "pareto": {"size": True, "latency": False}, "kernels": "XNNPACK",
            "recipe": {"recipe": {"name": "default"}, "stages": [{"stage": "teacher", "model": "t", "metrics": {}}]}}


def test_artifact_round_trips_every_key_including_ones_it_does_not_know():
    a = Artifact.from_dict(ARTIFACT)
    assert a.p50_ms == 0.017 and a.extra == {"pareto": {"size": True, "latency": False}, "kernels": "XNNPACK"}
    assert a.to_dict() == ARTIFACT
    assert Artifact.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_stage_result_round_trips():
    s = StageResult("prune", "m", {"accuracy": 0.9}, {"final_sparsity": 0.8}, 12.5, False)
    assert StageResult.from_dict(s.to_dict()) == s
    assert StageResult("teacher", "t", {}).to_dict() == {"stage": "teacher", "model": "t", "metrics": {}}


def test_build_result_fills_the_report_and_comes_back():
    r = BuildResult([Artifact.from_dict(ARTIFACT)], [{"name": "dynamic", "error": "x"}],
                    [StageResult("teacher", "t", {})], "int8", search={"candidates": []})
    fields = r.report_fields()
    assert fields["schema_version"] == SCHEMA_VERSION == 2
    assert fields["artifacts"] == [ARTIFACT] and fields["baseline"] == "int8"
    again = BuildResult.from_report(json.loads(json.dumps(fields)))
    assert again == r and again.artifact("int8").gzip_bytes == 45012
