import re


def test_readme_opens_with_two_commands_and_ci_runs_the_second(root):
    text = (root / "README.md").read_text()
    head = text.split("## ")[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", head, re.S)
    assert len(blocks) == 2, blocks
    build, tests = (b.strip() for b in blocks)
    assert build.endswith("invoke build-edge") and "pip install" in build
    assert tests in (root / ".ci" / "run").read_text()


def test_every_repository_path_the_readme_names_exists(root):
    text = (root / "README.md").read_text()
    # Paths on a device or in a build folder, and column labels, are not repository files.
    not_files = {"bench/int8.tflite.json", "host/runtime"}
    named = set(re.findall(r"`([A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+/?)`", text))
    missing = [p for p in sorted(named - not_files)
               if not p.startswith(("build/", "~", "/")) and not (root / p).exists()]
    assert not missing, missing


def test_layout_lists_every_module_and_tasks_lists_every_task(root):
    import tasks

    text = (root / "README.md").read_text()
    layout = text.split("## Layout", 1)[1].split("## ", 1)[0]
    modules = sorted(p.name for p in (root / "edgecompress").glob("*.py") if p.name != "__init__.py"
                     and not p.name.startswith("_"))
    assert [m for m in modules if f"  {m} " not in layout] == []
    table = text.split("## Tasks", 1)[1].split("## ", 1)[0]
    names = sorted(tasks.ns.task_names)
    assert [n for n in names if f"`invoke {n}" not in table] == []
