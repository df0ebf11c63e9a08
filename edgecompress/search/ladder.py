"""The ladder: the rungs a search tries first, in order, each climbing from the one before only when that one
met the accuracy limit (`SearchSpace.ladder`).
"""

from __future__ import annotations

import logging

from edgecompress.search import records

logger = logging.getLogger(__name__)


def rung_outcome(t) -> str | None:
    """Why a ladder rung's trial does not let the next rung climb from it, or None when it may: it met the
    limit, or it has not finished (another worker's)."""
    from optuna.trial import TrialState

    if t is None or t.state in (TrialState.RUNNING, TrialState.WAITING):
        return None
    if t.state == TrialState.COMPLETE:
        # As measured, without the selection's margin: a rung that met the limit but not by its margin is
        # still worth climbing from (the margin decides what is selected, not what is tried).
        r = records.read(t)
        over = (r.over_limit or 0.0) - r.margin
        return None if over <= 0 else f"missed the accuracy limit by {over:.2f} points"
    if t.state == TrialState.PRUNED:
        ended = records.read(t).ended
        return "ended: " + ended if ended else (
            "was stopped early: it could not recover")
    return "failed"


def too_slow_for_its_levers(space, rung: dict, by_rung: dict) -> str | None:
    """Why a ladder rung cannot meet the build's --max-latency-ms, or None when it may: its stages pull only
    unstructured levers (zeros, shared values: the model's dense work on a CPU), and every finished rung of
    the model's dense work under quantization alone (`model`, `model-dynamic`) was over the limit. Such a
    rung makes a smaller file no faster than those; the budget goes to the rungs that remove work. A
    trial has `over_latency` (ms over the limit, `records.TrialRecord`) only in a build with --max-latency-ms."""
    if space.recipe(space.rung_choice(rung)).lever_kinds() != {"unstructured"}:
        return None
    rungs = {r["name"]: r for r in space.ladder}
    dense = [(records.read(t).over_latency, name) for name, t in by_rung.items()
             if records.read(t).over_latency is not None and name in rungs
             and not space.recipe(space.rung_choice(rungs[name])).lever_kinds()]
    if not dense or min(dense)[0] <= 0:
        return None
    over, name = min(dense)
    return (f"pulls only unstructured levers (the model's dense work, no faster on a CPU), and {name}, the "
            f"fastest file of that work, was {over:.3f} ms over --max-latency-ms")


def enqueue_next_rung(study, space) -> str | None:
    """Queues the space's next ladder rung (`SearchSpace.ladder`), skipping, with the reason, each rung
    whose `after` rung missed the limit, or that cannot meet --max-latency-ms (`too_slow_for_its_levers`);
    returns its name, or None when the ladder is done or a trial is
    already waiting."""
    from optuna.trial import TrialState

    if not space.ladder:
        return None
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    by_rung = {records.read(t).rung: t for t in trials if records.read(t).rung}  # the latest try of each
    skipped = dict(study.user_attrs.get(records.LADDER_SKIPPED) or {})
    for rung in space.ladder:
        name, parent = rung["name"], rung.get("after")
        if name in by_rung or name in skipped:
            continue
        why = f"climbs from {parent}, which was skipped" if parent in skipped else (
            rung_outcome(by_rung.get(parent)) if parent else None)
        slow = None if why is not None else too_slow_for_its_levers(space, rung, by_rung)
        if why is not None or slow is not None:
            skipped[name] = slow or (why if parent in skipped else f"climbs from {parent}, which {why}")
            study.set_user_attr(records.LADDER_SKIPPED, skipped)
            logger.info("[ladder] %s: skipped, it %s", name, skipped[name])
            continue
        study.enqueue_trial(space.rung_params(rung), user_attrs=records.queued(records.TrialRecord(rung=name)))
        return name
    return None


def enqueued_rungs_left(study) -> bool:
    """Whether ladder rungs are still waiting to run (the stall rule waits for the ladder)."""
    from optuna.trial import TrialState

    return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
