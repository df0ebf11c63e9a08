"""Pareto fronts: plain geometry on (cost, accuracy) points, no TensorFlow, no I/O.

A point is dominated when another is at least as cheap and as accurate, and
strictly better in one. Used by the search (which files are worth keeping),
the HTML report's plots and the benchmark table.

Example:

>>> pareto([(10, 0.9), (5, 0.8), (12, 0.85)])
[0, 1]
"""

from __future__ import annotations

from edgecompress.report import sizes


def pareto(points) -> list[int]:
    """Indices of (cost, accuracy) points not dominated: none other is at least as cheap and as accurate, and better in one."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def non_dominated(points) -> list[int]:
    """Indices of `points` (tuples of costs, each to minimize) that no other point matches or beats in every
    cost while beating in one: the front in any number of axes."""
    return [i for i, p in enumerate(points)
            if not any(all(q_k <= p_k for q_k, p_k in zip(q, p)) and q != p for j, q in enumerate(points) if j != i)]


def mark_pareto(artifacts, size=None) -> None:
    """Sets `pareto = {"size": ..., "latency": ..., "size+latency": ...}` in each `results.Artifact`'s extra:
    on the front of top-1 against `size` (a `sizes.Size`; file bytes by default), against p50 latency, and of
    all three axes at once (a file there is worth shipping for some balance of size, speed and accuracy)."""
    size = size or sizes.size(sizes.DEFAULT_SIZE)
    for a in artifacts:
        a.extra["pareto"] = {"size": False, "latency": False, "size+latency": False}
    for axis, cost in (("size", size.of), ("latency", lambda a: a.p50_ms)):
        for i in pareto([(cost(a), a.accuracy) for a in artifacts]):
            artifacts[i].extra["pareto"][axis] = True
    if all(a.p50_ms is not None for a in artifacts):
        for i in non_dominated([(size.of(a), a.p50_ms, -a.accuracy) for a in artifacts]):
            artifacts[i].extra["pareto"]["size+latency"] = True


def hypervolume(points, reference) -> float:
    """Area dominated by (cost, accuracy) `points` and bounded by `reference` (cost, accuracy): cheaper and
    more accurate than the reference counts. Larger is better; in cost units x accuracy units.

    >>> hypervolume([(1, 0.9), (2, 0.95)], (4, 0.5))
    1.3
    """
    ref_cost, ref_acc = reference
    pts = [(c, a) for c, a in points if c < ref_cost and a > ref_acc]
    front = sorted(pts[i] for i in pareto(pts))
    area, below = 0.0, ref_acc
    for c, a in front:  # sorted by cost, so accuracy rises along the front
        if a > below:
            area += (ref_cost - c) * (a - below)
            below = a
    return round(area, 10)


def front_hypervolume(files, reference_file, max_accuracy_drop=None) -> dict:
    """The one hypervolume the project reports: of `files` ((gzip bytes, top-1 as a fraction) pairs), in KB x
    points, against the reference point every report uses: the reference file's (the teacher's float32
    file) gzip KB, and its top-1 in points less `max_accuracy_drop` (points; none: 0). A file counts only
    where it is smaller than the teacher's and within the limit."""
    ref = (reference_file[0] / 1024, 100 * reference_file[1] - (max_accuracy_drop or 0.0))
    value = hypervolume([(b / 1024, 100 * a) for b, a in files], ref)
    return {"value": round(value, 1), "unit": "KB x points", "reference": [round(ref[0], 3), round(ref[1], 4)]}
