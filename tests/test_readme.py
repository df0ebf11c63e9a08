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
    # Every module under its folder's line, every folder of the package on a line of its own.
    pkg = root / "edgecompress"
    modules = sorted(p.relative_to(pkg) for p in pkg.rglob("*.py") if p.name != "__init__.py"
                     and "__pycache__" not in p.parts and not p.name.startswith("_"))
    lines = layout.splitlines()
    missing = []
    for m in modules:
        if len(m.parts) == 1:
            found = any(line.startswith(f"  {m.name} ") for line in lines)
        else:
            folder = next((i for i, line in enumerate(lines) if (line + " ").startswith(f"  {m.parts[0]}/ ")), None)
            found = folder is not None and any(line.startswith(f"    {m.name} ") for line in _block(lines, folder))
        if not found:
            missing.append(str(m))
    assert missing == []
    table = text.split("## Tasks", 1)[1].split("## ", 1)[0]
    names = sorted(tasks.ns.task_names)
    assert [n for n in names if f"`invoke {n}" not in table] == []


def _block(lines, start):
    """The lines under a folder's line of the Layout, until the next folder or module of the package root."""
    out = []
    for line in lines[start + 1:]:
        if line.startswith("  ") and not line.startswith("    ") and line.strip():
            break
        out.append(line)
    return out
