#!/usr/bin/env python
"""Distill one model into students under several settings and print each student's top-1 on held-out images.

    python scripts/distill_experiments.py build/byo-mnv3-shapes/model.keras build/byo-mnv3-shapes/images \\
        '{"fixed-10": {"epochs": 10}, "patience": {"epochs": 20, "patience": 3}}' [--teacher-bn-momentum 0.999]

`--teacher-bn-momentum` sets the model's BatchNormalization momentum first (its statistics unchanged), as
keras.applications builds it (0.999): a student inherits it unless `bn_momentum` says otherwise.

Each setting is a `DistillConfig` (width 0.75, no baseline, unless given). Students train on the training
images and are scored on the closed loop's judging images (`search.judging_split`): how the `auto` space's
distill settings were chosen (issue 19's note: `bn_momentum`; issue 22's: 30 epochs, `lr_schedule` cosine,
`mixup` 0.4, on the `mnv3-shapes` and `resnet-letters` examples).
"""

import json
import logging
import sys
import time


def main(argv=None):
    argv = list(argv if argv is not None else sys.argv[1:])
    momentum = None
    if "--teacher-bn-momentum" in argv:
        i = argv.index("--teacher-bn-momentum")
        momentum = float(argv[i + 1])
        del argv[i:i + 2]
    model_path, data, settings = argv[0], argv[1], json.loads(argv[2])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from edgecompress.models import training
    from edgecompress.techniques.distill import distill
    from edgecompress.search.holdout import judging_split
    from edgecompress.search.space import load_space
    from edgecompress.techniques.configs import DistillConfig
    from edgecompress.models.user import open_model

    user = open_model(model_path, data)
    if momentum is not None:
        for layer in user.model.layers:
            if hasattr(layer, "moving_mean"):
                layer.momentum = momentum
    judge, _, how = judging_split(user.dataset, load_space("auto"))
    print(f"model: {100 * training.keras_metric(user.model, judge):.2f}% on {how['judge_count']} judging images",
          flush=True)
    for name, kw in settings.items():
        t0 = time.time()
        student, m = distill(user.model, judge, DistillConfig(**{"width": 0.75, "baseline": False, **kw}), verbose=0)
        print(f"{name}: student {100 * m['accuracy']:.2f}% after {m['epochs']} epoch(s), {time.time() - t0:.0f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
