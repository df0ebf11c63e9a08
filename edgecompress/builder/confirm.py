"""Confirmation: a search's choice certified on examples that the choosing never read.

A search scores hundreds of files on one judging split and keeps the smallest that looks within the limit; that
file is the one most likely to have looked so by luck (the winner's curse), and no margin on the judging split
fixes it for every search size. So the judging split only *proposes*, and a second split that the search never
scored *certifies* (the held-out confirmation of Dwork et al. 2015, "The reusable holdout", and of Kaggle's
private leaderboard).

The method, by name: **fixed-sequence testing** (Maurer, Hothorn & Lehmacher 1995; Westfall & Krishen 2001) of the
one-sided hypotheses "file i's true drop exceeds the limit":

1. The order is fixed by the judging split alone (`judged_sequence`): the model's own float32 file first (when it
   is eligible; certified by construction, its drop is 0 with no error), then the files on the judged front of
   size against the judged *upper bound* (judged drop plus the same one-sided quantile of its judged standard
   error) that is within the limit, largest first. The upper bound, not the drop, orders them because it is
   what the confirmation will test: a student that was lucky on the judging split has a wide interval and
   falls behind a file that agrees closely with the model.
2. Each file in turn is certified when the upper end of a one-sided `confidence` interval of its paired drop on the
   confirmation split lies inside the limit (`PairedDrop.upper`). The walk stops at the first file that is not.
3. The smallest certified file is selected.

Because the order and the set come from the judging split, the chance that any certified file's true drop exceeds
the limit is at most `1 - confidence`, however many files the search tried and in whatever way its sampler
chose them; `tests/test_confirm.py` measures it in a seeded simulation.

The interval: `d` is the per-example difference of the model's and the file's metric terms (`lite.tasks.Task.terms`:
for top-1, which examples each got right) on the confirmation split. With groups (people, speakers, devices,
chained windows), its standard error is cluster-robust (the CR1 sandwich of Liang & Zeger 1986; Cameron & Miller
2015) and its quantile Student's t with G - 1 degrees of freedom, so it counts groups, not examples. Without groups
it is the example standard error with a normal quantile, and the report says that it assumes independent examples.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from edgecompress.configs import Config, require
from edgecompress.models.sanity import clustered_se, interval_counts

DEFAULT_CONFIDENCE = 0.95
SELECTIONS = ("confirmed", "judged")  # `Constraints.selection`: this module's rule, or the judged margin alone
METHOD = ("fixed-sequence testing on a confirmation split that the search never scored: the judged front within "
          "the limit, largest first; each file certified while the one-sided upper bound of its paired drop is "
          "inside the limit")


@functools.lru_cache(maxsize=None)
def critical_value(confidence: float, dof: int | None = None) -> float:
    """The one-sided quantile: normal, or Student's t on `dof` degrees of freedom (groups - 1)."""
    from scipy.stats import norm, t

    return float(norm.ppf(confidence) if dof is None else t.ppf(confidence, dof))


def degrees_of_freedom(groups: int | None) -> int | None:
    """Student's t degrees of freedom of a cluster-robust interval over `groups` (G - 1, at least 1); None
    without groups (the normal quantile)."""
    return None if groups is None else max(groups - 1, 1)


@dataclasses.dataclass(frozen=True)
class PairedDrop(Config):
    """A file's drop from the model's file on the same examples, in points (positive is worse).

    Args:
        drop: The model's metric minus the file's, in points.
        se: Its standard error, in points: over examples, or cluster-robust over `groups`.
        count: Examples measured.
        groups: How many groups the standard error counts; None when the examples are taken as independent.
    """

    drop: float
    se: float
    count: int
    groups: int | None = None

    @property
    def dof(self) -> int | None:
        return degrees_of_freedom(self.groups)

    def upper(self, confidence: float = DEFAULT_CONFIDENCE) -> float:
        """The upper end of the one-sided `confidence` interval of the true drop, in points."""
        if self.se == 0:
            return self.drop
        return self.drop + critical_value(confidence, self.dof) * self.se

    @classmethod
    def of(cls, base_terms, file_terms, groups=None) -> "PairedDrop":
        """From the two files' per-example terms on the same examples (and their groups, if any)."""
        a, b = np.asarray(base_terms, np.float64), np.asarray(file_terms, np.float64)
        require(a.shape == b.shape, f"Paired terms differ in length: {a.shape} and {b.shape}.")
        d = a - b
        if groups is not None:
            require(len(groups) == len(d), f"Received {len(groups)} groups for {len(d)} examples.")
            g = len(np.unique(np.asarray(groups)))
        return cls(drop=100 * float(d.mean()) if len(d) else 0.0, se=100 * clustered_se(d, groups),
                   count=int(len(d)), groups=None if groups is None else g)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A file as the confirmation walk sees it: its size, its judged drop and that drop's standard error
    (points, on the judging split), its `PairedDrop` on the confirmation split (None: never measured there),
    and whether it is the reference (the model's own file, which the walk tests first)."""

    name: str
    size: int
    judged_drop: float
    paired: PairedDrop | None
    judged_se: float = 0.0
    reference: bool = False

    def judged_upper(self, confidence: float) -> float:
        return self.judged_drop + critical_value(confidence) * self.judged_se


@dataclasses.dataclass(frozen=True)
class Step(Config):
    """One file of the walk: its judged drop, its confirmed drop and upper bound, and the verdict."""

    name: str
    size: int
    judged_drop: float
    judged_upper: float
    drop: float
    se: float
    upper: float
    certified: bool


@dataclasses.dataclass(frozen=True)
class Confirmation(Config):
    """What the walk did: its method, limit, confidence, the confirmation split's size in examples and
    groups, each file it tested in order, the selected (smallest certified) file, and why it stopped."""

    method: str
    confidence: float
    limit: float
    count: int
    groups: int | None
    steps: tuple
    selected: str | None
    stopped: str
    certifiable_se: float | None = None  # `certifiable_se` of this limit, confidence and groups, for the report

    @classmethod
    def from_dict(cls, config):
        config = dict(config)
        config["steps"] = tuple(Step.from_dict(s) for s in config.get("steps", ()))
        return super().from_dict(config)

    @property
    def counts(self) -> str:
        """What the interval counts, in words."""
        return interval_counts(self.count, self.groups)


def judged_sequence(candidates, limit: float, confidence: float = DEFAULT_CONFIDENCE) -> list[Candidate]:
    """The order of the walk, from the judging split alone: the reference first, then the files whose judged
    upper bound is within `limit` and that no smaller file beats on it (the judged front), largest first."""
    refs = [c for c in candidates if c.reference]
    ok = sorted((c for c in candidates if not c.reference and c.judged_upper(confidence) <= limit),
                key=lambda c: (c.size, c.judged_upper(confidence)))
    front, best = [], math.inf
    for c in ok:
        if c.judged_upper(confidence) < best:
            front.append(c)
            best = c.judged_upper(confidence)
    return refs + front[::-1]


def confirm(candidates, limit: float, confidence: float = DEFAULT_CONFIDENCE) -> Confirmation:
    """Walks `judged_sequence(candidates, limit)`; returns the `Confirmation` (its `selected` is the smallest
    certified file, or None when not even the first was)."""
    require(0.5 <= confidence < 1, "Received an invalid value for `confidence`, expected a number in [0.5, 1). "
                                   f"Received: confidence={confidence!r}")
    steps, selected, stopped = [], None, ""
    sequence = judged_sequence(candidates, limit, confidence)
    for c in sequence:
        p = c.paired
        if p is None:
            stopped = f"{c.name} was not measured on the confirmation split"
            break
        upper = p.upper(confidence)
        ok = upper <= limit
        steps.append(Step(c.name, int(c.size), round(c.judged_drop, 4), round(c.judged_upper(confidence), 4),
                          round(p.drop, 4), round(p.se, 4), round(upper, 4), ok))
        if not ok:
            stopped = (f"{c.name}: its drop on the confirmation split is {p.drop:+.2f} points with a standard error "
                       f"of {p.se:.2f}, so its {100 * confidence:g}% upper bound, {upper:.2f}, is over the limit of "
                       f"{limit:g}")
            break
        selected = c.name
    else:
        stopped = ("every file of the judged front was certified" if len(sequence) > 1
                   else "no file other than the model's own was within the limit on the judging split")
    count = max((c.paired.count for c in sequence if c.paired is not None), default=0)
    groups = next((c.paired.groups for c in sequence if c.paired is not None and c.paired.groups), None)
    return Confirmation(METHOD, confidence, float(limit), count, groups, tuple(steps), selected, stopped,
                        round(certifiable_se(limit, confidence, groups), 4))


def certifiable_se(limit: float, confidence: float, groups: int | None) -> float:
    """The largest standard error (points) with which a file that loses nothing could still be certified: a
    file whose paired error is larger can never be, whatever it scores."""
    return limit / critical_value(confidence, degrees_of_freedom(groups))
