import re


def test_readme_opens_with_two_commands_and_ci_runs_the_second(root):
    text = (root / "README.md").read_text()
    head = text.split("## ")[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", head, re.S)
    assert len(blocks) == 2, blocks
    build, tests = (b.strip() for b in blocks)
    assert build.endswith("invoke build-edge") and "pip install" in build
    assert tests in (root / ".ci" / "run").read_text()
