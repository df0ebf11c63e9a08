#!/usr/bin/env python
"""A tiny Keras 3 ConvNeXt through every stage: the README's ConvNeXt numbers.

    python scripts/convnext_example.py build/convnext          # data, model, then the build (about 5 min)

Writes OUT/data.npz (the bundled Fashion-MNIST subset padded to 32x32 and made RGB: the image, it shifted by
a row, its negative), OUT/model.keras (`tests/support/architectures.py::convnext` in a transfer model,
logits, 6 epochs, seeded), OUT/every-stage.json (distill at 0.5 width, factorize, prune 50%, cluster 16, one
epoch each; float32, int8 and int8_per_tensor) and runs `invoke build-edge --model --data --recipe` into
OUT/out, whose report.md says how each file was delegated.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

RECIPE = {
    "name": "every-stage",
    "description": "Each training stage once, one epoch each: for a model we did not make, not for its numbers.",
    "stages": [
        {"stage": "distill", "width": 0.5, "temperature": 2.0, "alpha": 0.5, "init": "auto", "epochs": 1,
         "baseline": False},
        {"stage": "factorize", "ratio": 0.3, "min_params": 2000, "finetune_epochs": 1, "distill": True},
        {"stage": "prune", "final_sparsity": 0.5, "initial_sparsity": 0.2, "epochs": 1, "distill": True},
        {"stage": "cluster", "number_of_clusters": 16, "init": "kmeans++", "epochs": 1, "preserve_sparsity": "auto"},
    ],
    "quantize": ["float32", "int8", "int8_per_tensor"],
}


def _rgb(x):
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.stack([x, np.roll(x, 1, axis=1), 255 - x], -1).astype(np.uint8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=6)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import keras

    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge
    from tests.support.architectures import transfer_model

    z = np.load(root / "edgecompress/_data/fashion_mnist_subset.npz")
    data = {"x_train": _rgb(z["x_train"]), "y_train": z["y_train"], "x_test": _rgb(z["x_test"]), "y_test": z["y_test"]}
    np.savez(out / "data.npz", **data)
    model = transfer_model(keras, "convnext", logits=True)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(data["x_train"].astype("float32"), data["y_train"], epochs=args.epochs, batch_size=64, verbose=2)
    _, top1 = model.evaluate(data["x_test"].astype("float32"), data["y_test"], verbose=0)
    print(f"ConvNeXt: {model.count_params():,} parameters, Keras top-1 {100 * top1:.2f}%")
    model.save(out / "model.keras")
    (out / "every-stage.json").write_text(json.dumps(RECIPE, indent=2))
    build_edge(BuildOptions(model=str(out / "model.keras"), data=str(out / "data.npz"),
                            recipe=str(out / "every-stage.json"), out_dir=str(out / "out")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
