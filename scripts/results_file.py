"""What the scripts that write `docs/results/*.json` share: the commit they ran at, and writing the file.

    from results_file import git_commit, write   # a script in scripts/ runs with this folder on its path
"""

import json
import subprocess
from pathlib import Path


def git_commit(repo=".") -> str | None:
    """The short commit `repo` is checked out at, or None outside a git checkout."""
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def write(results: dict, path=None, *, indent: int = 1) -> None:
    """Prints `results` as JSON and, with `path`, writes it there too (its folder made as needed)."""
    text = json.dumps(results, indent=indent)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text)
