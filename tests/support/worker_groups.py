"""How the suite shares two pytest-xdist workers (`python -m pytest -q -n 2`, the README's test command).

A group of tests runs whole on one worker, so a module's fixtures are built once. A group is a test file,
except where files share a costly session fixture or a cache on disk, which one worker must build alone: the
default build (`test_pipeline`, `test_readme`), the device virtualenvs and the emulated Pi root
(`build/device-envs`, `~/.cache/edgecompress/device-sim`), the Android toolchain (`android_demo/.build`).
The longest groups go first (measured: `--durations`), so neither worker is left with one at the end.

xdist's own `--dist loadgroup` cannot do this under pytest 9 (it renames test ids through `item._nodeid`, which
pytest 9 no longer reads), so the grouping is a scheduler of xdist's `loadscope` kind with a group per scope.
"""

import pytest

GROUPS = {"test_readme": "test_pipeline", "test_cli": "devices", "test_remote": "devices",
          "test_device_sim": "devices", "test_device_columns": "devices", "test_android": "android",
          "test_android_apk": "android"}
# Longest first, by a full run's worker-minutes (`--junitxml` of `bash .ci/run`, 2-core AMD EPYC, two workers):
# test_pipeline 14.4, test_byo 7.7, test_translate 6.2, test_reliability 5.3, devices 5.0, test_pruning 4.1,
# test_closed_loop 3.7, test_optimize 3.1, test_streaming 2.7, test_tasks 2.7, android 2.6, test_distribute 2.4.
LONGEST_FIRST = ("test_pipeline", "test_byo", "test_translate", "test_reliability", "devices", "test_pruning",
                 "test_closed_loop", "test_optimize", "test_streaming", "test_tasks", "android", "test_distribute")


def group_of(path: str) -> str:
    """The group of a test file (a path or a node id)."""
    name = path.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    return GROUPS.get(name, name)


def _rank(item) -> int:
    group = group_of(item.nodeid)
    return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
    # Stable: the files keep their order within a rank, the tests theirs within a file.
    items.sort(key=_rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST, not xdist's order by test count
    return GroupScheduling(config, log)
