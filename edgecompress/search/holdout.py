"""What a search holds out: the judging split its trials are scored on, and the confirmation split (the
reporting one) that certifies the selected file (`builder.confirm`), both split by group when there are groups.
"""

from __future__ import annotations

import logging
import math

from edgecompress.builder.measure import MeasureSettings
from edgecompress.configs import require
from edgecompress.errors import EdgeCompressError
from edgecompress.search.space import SearchSpace

logger = logging.getLogger(__name__)


HOLDOUTS = ("test", "training")


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


class Confirming:
    """Each file's `confirm.PairedDrop` against the model's float32 file on the confirmation split (the search's
    reporting split, which no trial was scored on), by group when the split has groups."""

    def __init__(self, baseline, dataset, cache, measure: MeasureSettings):
        from edgecompress.lite.evaluation import read_terms

        self.n, self.groups = len(dataset.y_test), dataset.groups_test
        terms = baseline.terms  # measured on this split when the baseline was (`measure.artifact_record`)
        if terms is None:  # a baseline cached before its terms were kept: measured again (cached by content)
            from edgecompress.builder.measure import measure_file

            terms = measure_file(baseline.cache_path, dataset, cache, threads=measure.threads, runs=measure.runs,
                                 warmup=measure.warmup)["terms"]
        self.base_terms = read_terms(terms, self.n)

    def paired(self, terms: str):
        """The `PairedDrop` of a file whose packed per-example terms (`evaluation.pack_terms`) are `terms`."""
        from edgecompress.builder.confirm import PairedDrop
        from edgecompress.lite.evaluation import read_terms

        return PairedDrop.of(self.base_terms, read_terms(terms, self.n), self.groups)

    def reference(self):
        """The model's own file against itself: no drop, no error, on the same examples and groups."""
        from edgecompress.builder.confirm import PairedDrop

        return PairedDrop.of(self.base_terms, self.base_terms, self.groups)
