"""The planned arena (`lite.arena`): a file's runtime tensors packed greedy by size, the RAM figure a report gives
where TensorFlow Lite Micro does not run the file."""

import numpy as np
import pytest

from edgecompress.lite import arena
from edgecompress.report import sizes


def _peak_live(tensors) -> int:
    """What any plan needs at least: the most bytes alive at one op."""
    ends = max(stop for _, _, stop in tensors.values())
    return max(sum(-(-s // arena.ALIGNMENT) * arena.ALIGNMENT for s, a, b in tensors.values() if a <= t <= b)
               for t in range(ends + 1))


def test_tensors_alive_at_different_times_share_the_arena_and_tensors_alive_together_do_not():
    # A chain: input (0) -> a (1) -> b (2) -> output. a and the output never live together with the input.
    chain = {0: (1024, 0, 0), 1: (512, 0, 1), 2: (1024, 1, 2), 3: (256, 2, 3)}
    assert arena.plan(chain) == 1024 + 512  # the largest pair alive at once
    together = {0: (1024, 0, 3), 1: (1024, 0, 3)}
    assert arena.plan(together) == 2048
    assert arena.plan({0: (10, 0, 0)}) == arena.ALIGNMENT  # offsets and sizes are aligned


def test_the_plan_is_between_the_peak_of_live_bytes_and_their_sum_on_random_graphs():
    """A seeded simulation: 300 random sets of lifetimes. A plan never overlaps two tensors alive together (so it
    is at least the peak of live bytes) and never needs more than every tensor side by side."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, ops = int(rng.integers(1, 30)), int(rng.integers(1, 20))
        tensors = {}
        for i in range(n):
            a = int(rng.integers(0, ops))
            tensors[i] = (int(rng.integers(1, 5000)), a, int(rng.integers(a, ops + 1)))
        total = sum(-(-s // arena.ALIGNMENT) * arena.ALIGNMENT for s, _, _ in tensors.values())
        got = arena.plan(tensors)
        assert _peak_live(tensors) <= got <= total, tensors


def test_the_cell_says_the_plan_where_tflm_refuses_the_file():
    refused = {"tflm": {"runs": False, "refused": "CONV_2D (node 2): Hybrid models are not supported"},
               "planned_arena_bytes": 62720}
    assert sizes.tflm_cell(refused) == "refuses CONV_2D (~61.2 planned)"
    assert sizes.tflm_cell({"tflm": {"runs": True, "arena_bytes": 19040}, "planned_arena_bytes": 15680}) == "18.6"
    assert sizes.tflm_cell({"planned_arena_bytes": 2048}) == "- (~2.0 planned)"
    assert sizes.tflm_cell({}) == "-"


@pytest.mark.slow
def test_on_files_tflm_runs_the_plan_is_at_most_its_arena_and_close_to_it(tiny_tflites):
    """TFLM's arena holds the runtime tensors and its kernels' scratch and bookkeeping, so the plan of the runtime
    tensors is at most it; on the tiny CNN's files it is most of it."""
    from edgecompress.lite.micro import micro_fit

    for path in tiny_tflites.values():
        fit, planned = micro_fit(path), arena.planned_arena_bytes(path.read_bytes())
        assert fit.runs, (path, fit)
        assert 0.5 * fit.arena_bytes <= planned <= fit.arena_bytes, (path.name, planned, fit.arena_bytes)


def test_a_tensor_of_no_fixed_size_is_left_out_and_an_unknown_dimension_counts_as_one():
    assert arena._nbytes("resource", [1]) == 0 and arena._nbytes("string", [3]) == 0
    assert arena._nbytes("float32", [1, -1, 4]) == 16 and arena._nbytes("int4", [3]) == 2
