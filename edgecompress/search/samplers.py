"""The samplers by name: Optuna's TPE, NSGA-II, grid and random, each with settings for a search of tens of
trials (`make_sampler`); a search space names one (`SearchSpace.sampler`)."""

from __future__ import annotations

import warnings


def _tpe(space, seed):
    import optuna

    # Multivariate and grouped (dropped stages do not blur it); constant liar, so parallel workers do not
    # propose the point another is running.
    return optuna.samplers.TPESampler(n_startup_trials=space.startup_trials, multivariate=True, group=True,
                                      constant_liar=True, seed=seed)


def _nsga2(space, seed):
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=space.startup_trials, seed=seed)


def _grid(space, seed):
    import optuna

    return optuna.samplers.GridSampler(space.grid_space(), seed=seed)


def _random(space, seed):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


# name -> (factory(space, seed), whether every worker must share the seed)
SAMPLERS = {"tpe": (_tpe, False), "nsga2": (_nsga2, False), "grid": (_grid, True), "random": (_random, False)}


def make_sampler(space, seed: int, worker: int = 0):
    """The space's sampler (`SAMPLERS`), with settings for 20-40 trials.

    - `tpe` (default): `startup_trials` (8) random trials, then multivariate
      TPE.
    - `nsga2`: population `startup_trials` (Optuna's default 50 would never
      leave the first generation in 40 trials).
    - `grid`: every listed combination, in a random order.
    - `random`: a baseline.

    Each worker seeds its own sampler (`seed + worker`), but the grid's,
    whose seed orders the grid that all workers index into.
    """

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # TPE's `group`
    factory, shared = SAMPLERS[space.sampler]
    return factory(space, seed if shared else seed + worker)
