"""When a search stops before its budget: its space is used up, or its judged front has stopped moving.

A search that runs on after its front has settled only adds candidates, and every added candidate makes the
smallest one that looks within the limit more likely to look so by luck (`builder.confirm`). So the loop ends
when `patience` proposals in a row, duplicates included, have not moved the judged front (size against
judged accuracy, among files within the limit as judged), and says so.

"Moved" is by epsilon-dominance (Laumanns, Thiele, Deb & Zitzler 2002): judged scores are noisy, so on an exact
front almost every lucky file is a new point and the front never settles. A file moves the front only when no
file on it is within `SIZE_EPSILON` of its size (or smaller) and within `METRIC_EPSILON` of its judged metric (or
better).
"""

from __future__ import annotations

from edgecompress.search import records

SIZE_EPSILON = 0.05  # a file must be 5% smaller than a front file as good as it, to count as progress
METRIC_EPSILON = 0.0025  # or a quarter of a point of judged top-1 (0.0025 of ROC-AUC, R²) better than one as small


def _point(t):
    """(size, the search's second objective; judged metric; within the limit as judged) of a finished trial, duplicates included, or None."""
    from optuna.trial import TrialState

    if t.state != TrialState.COMPLETE or not t.values:
        return None
    over = records.read(t).over_limit
    feasible = over is None or over <= 0
    return float(t.values[1]), float(t.values[0]), feasible


def proposals_since_front_moved(trials) -> tuple[int, int]:
    """(proposals since the last one that moved the judged front by more than its epsilons, proposals in all).
    A proposal is a finished, stopped-early or duplicate trial; failed and running ones are not counted."""
    from optuna.trial import TrialState

    front: list[tuple[float, float]] = []
    since = total = 0
    for t in sorted(trials, key=lambda t: t.number):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        total += 1
        since += 1
        p = _point(t)
        if p is None or not p[2] or records.read(t).duplicate_of is not None:
            continue
        size, metric = p[0], p[1]
        if any(s <= (1 + SIZE_EPSILON) * size and m >= metric - METRIC_EPSILON for s, m in front):
            continue  # epsilon-dominated: no smaller or better by enough to count
        front = [(s, m) for s, m in front if not (size <= s and metric >= m)] + [(size, metric)]
        since = 0
    return since, total


def stalled(study, patience: int | None) -> str | None:
    """Why the search should stop now (its judged front unmoved for `patience` proposals), or None."""
    if not patience:
        return None
    since, total = proposals_since_front_moved(study.get_trials(deepcopy=False))
    if since >= patience:
        return (f"the judged front has not moved for {since} proposals (patience {patience}; {total} proposals in "
                "all, duplicates included)")
    return None
