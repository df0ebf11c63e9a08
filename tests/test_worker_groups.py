"""The suite's two xdist workers never build one shared thing twice at once (`tests/support/worker_groups.py`)."""

from pathlib import Path

from support.worker_groups import GROUPS, LONGEST_FIRST, group_of

TESTS = Path(__file__).resolve().parent
# What a test file uses -> the group that must hold it, because one worker builds it alone.
SHARED = {"default_build": "test_pipeline", "device_envs": "devices", "device-sim": "devices",
          "emulated_pi": "devices", "DEMO_DIR": "android", "check_app": "android"}


def test_every_file_that_uses_a_shared_build_is_in_its_group():
    for path in sorted(TESTS.glob("test_*.py")):
        text = path.read_text()
        for needle, group in SHARED.items():
            if needle in text and path.name != Path(__file__).name:
                assert group_of(f"tests/{path.name}::test_x") == group, (path.name, needle, group)


def test_groups_name_files_that_exist():
    assert all((TESTS / f"{name}.py").exists() for name in GROUPS)
    files = {group_of(p.name) for p in TESTS.glob("test_*.py")}
    assert set(LONGEST_FIRST) <= files, set(LONGEST_FIRST) - files
