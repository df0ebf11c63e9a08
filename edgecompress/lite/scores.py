"""The metrics' arithmetic, in numpy alone (the device runs it too): top-1, ROC-AUC (of an anomaly score, or
the mean over several labels), R², and each one's per-example terms whose mean is the metric (`tasks.Task.terms`).
Each takes `(x, outputs, y)` as a `tasks.Task` calls it.
"""

from __future__ import annotations

import numpy as np

from edgecompress.errors import EdgeCompressError
from edgecompress.lite.numerics import labels


def roc_auc(scores, truth) -> float:
    """The area under the ROC curve of `scores` for binary `truth` (1 = positive): the chance that a positive
    scores above a negative, ties counting half (the Mann-Whitney U statistic, with average ranks)."""
    s = np.asarray(scores, np.float64).ravel()
    t = np.asarray(truth).ravel().astype(bool)
    pos, neg = int(t.sum()), int((~t).sum())
    if pos == 0 or neg == 0:
        raise EdgeCompressError(f"ROC-AUC needs normal (0) and anomalous (1) examples; the labels hold {pos} "
                                f"anomalous and {neg} normal. Put both in the test split.")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[t].sum() - pos * (pos + 1) / 2) / (pos * neg))


def auc_terms(scores, truth) -> np.ndarray:
    """One term per example whose mean is the ROC-AUC of `scores` for binary `truth` (DeLong's structural
    components as pseudo-values): a positive's share of negatives it outscores, a negative's share of positives
    that outscore it (ties half), each centred and scaled by its class's count, so the spread of two files'
    term differences is DeLong's paired variance of their AUC difference.

    >>> float(auc_terms([0.9, 0.1, 0.8, 0.2], [1, 0, 1, 0]).mean())
    1.0
    """
    s = np.asarray(scores, np.float64).ravel()
    t = np.asarray(truth).ravel().astype(bool)
    pos, neg = np.sort(s[t]), np.sort(s[~t])
    auc = roc_auc(s, t)
    n, m, k = len(s), len(pos), len(neg)
    lo, hi = np.searchsorted(neg, s[t], "left"), np.searchsorted(neg, s[t], "right")
    v10 = (lo + 0.5 * (hi - lo)) / k  # each positive: the share of negatives below it
    lo, hi = np.searchsorted(pos, s[~t], "left"), np.searchsorted(pos, s[~t], "right")
    v01 = (m - hi + 0.5 * (hi - lo)) / m  # each negative: the share of positives above it
    terms = np.empty(n, np.float64)
    terms[t] = auc + n * (v10 - auc) / m
    terms[~t] = auc + n * (v01 - auc) / k
    return terms


def anomaly_scores(x, outputs) -> np.ndarray:
    """Per example: the mean squared reconstruction error when `outputs` has `x`'s size, else the one output."""
    out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if out.shape[1] == x.shape[1]:
        return ((out - x) ** 2).mean(axis=1)
    if out.shape[1] == 1:
        return out[:, 0]
    raise EdgeCompressError(f"An anomaly model outputs a reconstruction of its input ({x.shape[1]} values) or one "
                            f"score; this one outputs {out.shape[1]} values. Pass `--task classification` if it "
                            "is a classifier.")


def regression_parts(outputs, y):
    """(outputs, labels) as (N, k) float64 arrays and the labels' SST, checked: what R² and its terms share."""
    out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    if out.shape != y.shape:
        raise EdgeCompressError(f"A regression model's outputs have {out.shape[1]} values per example and its labels "
                                f"{y.shape[1]}; they must match (one label column per output unit).")
    sst = float(((y - y.mean(axis=0)) ** 2).sum())
    if sst == 0:
        raise EdgeCompressError("R² needs labels that vary; every test label is the same value.")
    return out, y, sst


def r2_score(outputs, y) -> float:
    """R² of `outputs` against targets `y` (both (N,) or (N, k)), pooled over the targets: 1 - SSE / SST."""
    out, y, sst = regression_parts(outputs, y)
    return 1.0 - float(((y - out) ** 2).sum()) / sst


def r2(x, outputs, y) -> float:
    return r2_score(outputs, y)


def r2_terms(x, outputs, y) -> np.ndarray:
    """1 - N * (an example's squared error) / SST: their mean is R² (SST, the labels', is the same for any
    file judged on these examples)."""
    out, y, sst = regression_parts(outputs, y)
    return 1.0 - len(y) * ((y - out) ** 2).sum(axis=1) / sst


def top1(x, outputs, y) -> float:
    return float((labels(outputs) == np.asarray(y)).mean())


def top1_terms(x, outputs, y) -> np.ndarray:
    return (labels(outputs) == np.asarray(y).reshape(-1)).astype(np.float64)


def anomaly_auc(x, outputs, y) -> float:
    return roc_auc(anomaly_scores(x, outputs), y)


def anomaly_auc_terms(x, outputs, y) -> np.ndarray:
    return auc_terms(anomaly_scores(x, outputs), y)


def ranked_labels(outputs, y):
    """(outputs, labels) as (N, k) arrays and the labels that have both values in `y`, checked: what the mean
    ROC-AUC and its terms share."""
    out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    y = np.asarray(y).reshape(len(y), -1)
    if out.shape != y.shape:
        raise EdgeCompressError(f"A multi-label model's outputs have {out.shape[1]} units per example and its labels "
                                f"{y.shape[1]} columns; they must match (one 0/1 column per sigmoid unit).")
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    if not both:
        raise EdgeCompressError("Mean ROC-AUC needs, for at least one label, test examples with it (1) and without "
                                "it (0); every label column of the test split holds one value.")
    return out, y, both


def mean_roc_auc(outputs, y) -> float:
    """The mean over labels (columns of `y`, 0/1) of the ROC-AUC of each output unit against its label; a label
    whose test examples are all 0 or all 1 ranks nothing and is left out."""
    out, y, both = ranked_labels(outputs, y)
    return float(np.mean([roc_auc(out[:, j], y[:, j]) for j in both]))


def multilabel_auc(x, outputs, y) -> float:
    return mean_roc_auc(outputs, y)


def multilabel_auc_terms(x, outputs, y) -> np.ndarray:
    """The mean over the ranked labels of each label's `auc_terms`: their mean is the mean ROC-AUC, and the
    examples' shared labels stay in one term (the labels' covariance is counted)."""
    out, y, both = ranked_labels(outputs, y)
    return np.mean([auc_terms(out[:, j], y[:, j]) for j in both], axis=0)
