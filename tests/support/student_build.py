"""One build the tests of models of several inputs and outputs share: a half-width student distilled, pruned to
50% and converted to float32 and int8, through `build_edge` as a user's `--model --data --recipe` build."""

import json


def build_student(model, data, out, *, distill_epochs: int, **options) -> dict:
    """The report of `build_edge` on `model` and `data` with that recipe, written under `out`; `options` are
    more `BuildOptions` (`output="box"`)."""
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge

    out.mkdir(parents=True, exist_ok=True)
    recipe = out / "recipe.json"
    recipe.write_text(json.dumps({"name": "student", "stages": [
        {"stage": "distill", "width": 0.5, "epochs": distill_epochs, "baseline": False},
        {"stage": "prune", "final_sparsity": 0.5, "epochs": 2}], "quantize": ["float32", "int8"]}))
    return build_edge(BuildOptions(model=str(model), data=str(data), recipe=str(recipe), out_dir=str(out / "out"),
                                   verbose=0, runs=20, warmup=2, **options))
