"""A results file of `docs/results/`: what ran (the command), at which commit, on which CPU, and its numbers.

The benchmark tasks (`invoke benchmark-tiny --results FILE`, `invoke benchmark-byo --results FILE`) and the
scripts that read finished builds
(`scripts/fresh_check.py`, `scripts/int4_results.py`, `scripts/mlperf_tiny_reference.py`) write their files
through `write`; `scripts/write_results_page.py` renders every file into the docs' results page.

    from benchmarks.results import stamp, write
    write({**stamp("invoke benchmark-tiny --task kws"), "tasks": rows}, "docs/results/x.json")
"""

import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path


def git_commit(repo=".") -> str | None:
    """The short commit `repo` is checked out at, or None outside a git checkout."""
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def cpu_name() -> str:
    """This machine's CPU model as /proc/cpuinfo names it (the platform's processor field elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_line(argv=None) -> str:
    """The command as typed: `invoke TASK ...` for a task run by invoke, `python SCRIPT ...` for a script."""
    argv = list(sys.argv if argv is None else argv)
    name = Path(argv[0]).name if argv else ""
    head = "invoke" if name in ("invoke", "inv") else f"python {argv[0]}" if argv else "python"
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def stamp(command: str | None = None, cpu: str | None = None) -> dict:
    """The provenance every results file opens with: command, commit and CPU."""
    return {"command": command or command_line(), "commit": git_commit(), "cpu": cpu or cpu_name()}


def write(results: dict, path=None, *, indent: int = 1) -> None:
    """Prints `results` as JSON and, with `path`, writes it there too (its folder made as needed)."""
    text = json.dumps(results, indent=indent)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    print(text)
