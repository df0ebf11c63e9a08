"""Groups: which examples share a source (a person, a speaker, a device, a recording).

Examples of one group are not independent: a model that fails on one person fails on most of that person's
windows. So a split that must hold out *new* data holds out whole groups, and an error bar counts groups, not
examples (`builder.confirm`).

Where groups come from, in order:

- **Given, in an .npz** (or a folder of .npy): `groups_train`, `groups_test` and `groups_val` beside `x_train`,
  `x_test` and `x_val` (or `groups` beside `x` and `y`): one id per example, ints or strings.
- **Given, in an image folder's file names**: `<group>__<rest>.png` (two underscores), e.g.
  `train/cat/alice__0001.png`. Every image of a split has the prefix, or none does.
- **Found, in an .npz of windows**: consecutive rows that overlap, one row's tail being the next row's head
  along the first (time) axis as the windows of one recording are, are chained into one group each
  (`chain_windows`). The log and the report say how many chains were found.
- Otherwise, none: each example stands alone, and the report says that its intervals assume independent examples.
"""

from __future__ import annotations

import logging

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

GIVEN = "given"
PREFIX = "file-name prefix"
CHAINED = "chained overlapping windows"
PREFIX_SEPARATOR = "__"
MIN_CHAIN_SHARE = 0.5  # chains are kept only when at least this share of consecutive rows overlap


def check(groups, n: int, where: str, split: str) -> np.ndarray:
    """`groups` as a 1-D array of `n` ids, or a clear `EdgeCompressError` (exit 2): a length other than the
    examples', or a single group in a split (nothing would be held out of it)."""
    g = np.asarray(groups)
    key, x = ("groups", "x") if split == "all" else (f"groups_{split}", f"x_{split}")
    if g.ndim != 1 or len(g) != n:
        raise EdgeCompressError(
            f"Received an invalid value for `{key}` in {where}: {len(g) if g.ndim else 'a scalar'} group "
            f"id(s) of shape {g.shape} for {n} examples in `{x}`. Give one group id per example, in the "
            "examples' order.")
    if n and len(np.unique(g)) < 2:
        raise EdgeCompressError(
            f"Received an invalid value for `{key}` in {where}: every one of its {n} examples is in one "
            f"group ({g[0].item()!r}), so no group can be held out of it and no interval can count groups. Give each "
            "source (person, speaker, device, recording) its own id, or leave groups out.")
    return g


def check_disjoint(train, test, where: str) -> None:
    """Refuses groups that appear in both the training and the test split (for `--disjoint-groups`)."""
    if train is None or test is None:
        raise EdgeCompressError(
            f"Received --disjoint-groups, but {where} has no groups for both `x_train` and `x_test`. Add "
            "`groups_train` and `groups_test` (or file-name prefixes `<group>__`), or drop --disjoint-groups.")
    both = np.intersect1d(np.asarray(train), np.asarray(test))
    if len(both):
        raise EdgeCompressError(
            f"Received --disjoint-groups, but {len(both)} group(s) of {where} are in both the training and the "
            f"test split (e.g. {both[0].item()!r}): the test split would not measure new groups. Move each group's "
            "examples to one split, or drop --disjoint-groups.")


def chain_windows(x, min_share: float = MIN_CHAIN_SHARE) -> np.ndarray | None:
    """Group ids that chain consecutive overlapping windows, or None when too few rows overlap.

    Row i+1 continues row i when, for some shift k in 1..T-1 along the first axis, `x[i][k:] == x[i+1][:T-k]`:
    the windows of one recording taken with a stride of k. Each maximal run of such rows is one group.

    >>> t = np.arange(12.0)
    >>> chain_windows(np.stack([t[0:4], t[2:6], t[4:8], t[6:10] + 100, t[8:12] + 100]))
    array([0, 0, 0, 1, 1])
    """
    x = np.asarray(x)
    if x.ndim < 2 or len(x) < 3 or x.shape[1] < 2:
        return None
    n, t = len(x), x.shape[1]
    rows = x.reshape(n, t, -1)
    links = np.zeros(n - 1, bool)
    for i in range(n - 1):
        a, b = rows[i], rows[i + 1]
        # candidate shifts: where the next window's first step appears in this one
        for k in np.flatnonzero((a[1:] == b[0]).all(axis=1)) + 1:
            if np.array_equal(a[k:], b[:t - k]):
                links[i] = True
                break
    if links.mean() < min_share:
        return None
    return np.concatenate([[0], np.cumsum(~links)]).astype(np.int64)


def from_prefixes(files, where) -> np.ndarray | None:
    """Group ids from `<group>__<rest>` file names, or None when no file has the prefix; mixed is an error."""
    ids = [f.name.split(PREFIX_SEPARATOR, 1)[0] if PREFIX_SEPARATOR in f.name else None for f in files]
    have = sum(i is not None for i in ids)
    if have == 0:
        return None
    if have < len(ids):
        bad = next(f for f, i in zip(files, ids) if i is None)
        raise EdgeCompressError(
            f"Received an invalid value for `data`: {have} of the {len(ids)} images under {where} name a group "
            f"with a `<group>{PREFIX_SEPARATOR}` prefix but {bad} does not. Prefix every image of the split, or none.")
    return np.asarray(ids)


def split(groups, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) example indices with whole groups held out: groups in a seeded order, each to `held` while
    it holds fewer than `fraction` of the examples. At least one group on each side."""
    g = np.asarray(groups)
    names, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1)
    if len(names) < 2:
        raise EdgeCompressError(f"Cannot hold out whole groups: the split has {len(names)} group(s).")
    sizes = np.bincount(codes, minlength=len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    held, count = [], 0
    for k in order:
        if count >= fraction * len(g) or len(held) == len(names) - 1:
            break
        held.append(k)
        count += sizes[k]
    mask = np.isin(codes, held)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def describe(groups) -> int | None:
    """How many groups (None without groups)."""
    return None if groups is None else int(len(np.unique(np.asarray(groups))))
