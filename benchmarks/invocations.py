"""A checkout's tasks, not the installed package's: the benchmarks (`invoke benchmark`, `benchmark-byo`,
`benchmark-tiny`, `benchmark-stream`), which make the examples and measurements the docs quote, and `invoke docs`,
which builds the documentation site; `tasks.py` adds them to the package's tasks.
"""

from invoke import Exit

from edgecompress.cli.glue import setup_logging, task, user_errors


def _num(v):
    return None if v is None else float(v)


@task(optional=["search"],
      help={"data": "Dataset (default: fashion-mnist, Debian's full 60,000/10,000 copy).",
            "recipes": "Comma-separated recipe names or files (default: default,tfmot-guide).",
            "out": "Output folder (default: build/benchmark).", "teacher_epochs": "Teacher epochs (default: 15).",
            "teacher": "Use this trained teacher instead of training one.", "seed": "Random seed (default: 0).",
            "search": "Also search on the same teacher: --search (the shipped space) or --search=FILE.json.",
            "budget_minutes": "Time budget of --search in minutes (default: 30).",
            "max_accuracy_drop": "Select the search's smallest file within this many top-1 points of the teacher.",
            "max_file_kb": "Selection: largest .tflite in KiB.", "max_latency_ms": "Selection: slowest host p50 in ms.",
            "compare": "With --search: also search these spaces, comma-separated, side by side with the same budget "
                       "(default: grid, the search before Optuna; '' for none)."})
def benchmark(c, data="fashion-mnist", recipes="default,tfmot-guide", out="build/benchmark", teacher_epochs=15,
              teacher=None, seed=0, search=None, budget_minutes=30.0, max_accuracy_drop=None, max_file_kb=None,
              max_latency_ms=None, compare="grid"):
    """Compare recipes (and optionally a search) on one teacher over a full dataset and write a table."""
    import json
    from pathlib import Path

    from edgecompress.report.write import format_text_table

    setup_logging()
    with user_errors():
        from edgecompress.builder.selection import GateError
        from benchmarks.recipes import compare_recipes

        try:
            comparison = compare_recipes(data=data, recipes=recipes.split(","), out_dir=out, teacher_epochs=int(teacher_epochs),
                              teacher=teacher, seed=int(seed), verbose=2,
                              search=("default" if search is True else search) or None,
                              budget_minutes=float(budget_minutes), max_accuracy_drop=_num(max_accuracy_drop),
                              max_file_kb=_num(max_file_kb), max_latency_ms=_num(max_latency_ms),
                              compare=[x for x in compare.split(",") if x])
        except GateError:
            print(format_text_table(json.loads((Path(out) / "benchmark.json").read_text())["table"]))
            raise
    print(format_text_table(comparison["table"]))
    for line in comparison.get("comparison", []):
        print(line)
    print(f"\nTable: {out}/benchmark.md")


@task(name="benchmark-byo",
      help={"out": "Folder for the example and the builds (default: build/byo, or build/byo-NAME).",
            "example": "Which example: mnv2 (MobileNetV2, Keras 3 and tf-keras files), mnv3-shapes, resnet-letters "
                       "(benchmarks/examples.py), or all (default: mnv2).",
            "search": "mnv2 only: run --search with the 'default' space instead of the closed loop.",
            "max_accuracy_drop": "With --search: select within this many top-1 points (default: 1.0).",
            "budget_minutes": "With --search: time budget per file (default: 30).",
            "results": "One example other than mnv2: also judge the build on the fresh groups its maker wrote "
                       "(benchmarks/fresh.py) and write a results file for the docs (docs/results/NAME.json)."})
def benchmark_byo(c, out=None, example="mnv2", search=False, max_accuracy_drop=1.0, budget_minutes=30.0,
                  results=None):
    """Make an example model we did not tune on (once) and run build-edge on it with no other flag."""
    from edgecompress.report.write import format_text_table

    setup_logging()
    with user_errors():
        from benchmarks.examples import EXAMPLES, benchmark as run_example

        if results and example in ("all", "mnv2"):
            raise Exit(f"Received --results with --example {example}: a results file is one example's, judged on "
                       f"the fresh groups its maker writes; name one of {sorted(EXAMPLES)}.", code=2)
        names = sorted(EXAMPLES) if example == "all" else [example]
        rows = []
        for name in names:
            if name == "mnv2":
                from benchmarks.byo_example import benchmark as run

                rows += [{"example": "mnv2", **r} for r in run(
                    out or "build/byo", search=search, max_accuracy_drop=float(max_accuracy_drop) if search else None,
                    budget_minutes=float(budget_minutes))]
            else:
                rows.append(run_example(name, out if len(names) == 1 else None))
    table = [["example", "model file", "selected", "gzip KB", "x smaller (gzip)", "judged top-1 % (model's file)",
              "top-1 %", "Keras top-1 %", "delta pts", "seconds"]]
    for r in rows:
        judged = (f"{100 * r['judged_top1']:.2f} ({100 * r['baseline_judged_top1']:.2f})"
                  if r.get("judged_top1") is not None else "-")
        table.append([r["example"], r["format"], r["artifact"], f"{r['gzip_bytes'] / 1024:.1f}",
                      f"{r['x_smaller_gzip']:.2f}", judged, f"{100 * r['top1']:.2f}", f"{100 * r['keras_top1']:.2f}",
                      f"{r['delta_points']:+.2f}", f"{r['seconds']:.0f}"])
    print(format_text_table(table))
    if results:
        from benchmarks.fresh import check, fresh_data_of, say
        from benchmarks.results import stamp, write

        folder = rows[0]["folder"]
        judged = check(f"{folder}/out", fresh_data_of(folder), all_files=True)
        print("\n".join(say(judged)))
        write({**stamp(cpu=judged.pop("cpu")), **judged}, results, indent=2)


@task(name="benchmark-tiny",
      help={"task": "Which MLPerf Tiny task: kws, ad, ic, vww, or all (default: all). Each is made once under "
                    "build/tiny-TASK (benchmarks/tiny.py).",
            "out": "Folder for one task (default: build/tiny-TASK).",
            "budget_minutes": "Time budget of each build's closed loop (default: 30).",
            "target": "cpu, or mcu: full-integer files TensorFlow Lite Micro runs (default: cpu).",
            "results": "Also write the rows into a results file for the docs (docs/results/NAME.json), each with "
                       "the command, commit and CPU that made it; tasks already in the file are kept."})
def benchmark_tiny(c, task="all", out=None, budget_minutes=30.0, target="cpu", results=None):
    """MLPerf Tiny's architectures on offline stand-ins: build-edge on each with no other flag, beside the
    reference int8 files."""
    from edgecompress.report.write import format_text_table

    setup_logging()
    with user_errors():
        from benchmarks.tiny import MLPERF_TINY, benchmark as run

        names = list(MLPERF_TINY) if task == "all" else [task]
        rows = [run(name, out if len(names) == 1 else None, float(budget_minutes), target) for name in names]
    table = [["task", "metric", "Keras model", "selected", "judged (model's file)", "reported", "file bytes",
              "gzip bytes", "TFLM arena", "MLPerf Tiny int8: file (gzip), arena", "<= 1/4 file",
              "<= 1/4 without names", "arena <= its", "seconds"]]
    for r in rows:
        f = (lambda v: "-" if v is None else f"{v:.4f}")
        yes = (lambda v: "-" if v is None else "yes" if v else "no")
        table.append([r["task"], r["metric"], f(r["keras_metric"]), r["selected"] or "-",
                      f"{f(r['judged'])} ({f(r['baseline_judged'])})", f(r["selected_metric"]),
                      str(r["bytes"]), str(r["gzip_bytes"]), str(r["arena_bytes"]),
                      f"{r['reference_bytes']} ({r['reference_gzip_bytes']}), {r['reference_arena_bytes']}",
                      yes(r["quarter_of_reference_file"]), yes(r["quarter_of_reference_stripped"]),
                      yes(r["arena_within_reference"]), f"{r['seconds']:.0f}"])
    print(format_text_table(table))
    import json
    from pathlib import Path

    from benchmarks.results import stamp, write

    merged_rows = Path("build/tiny-results.json")  # every task's last row, whichever run made it (and its target)
    merged = {**(json.loads(merged_rows.read_text()) if merged_rows.exists() else {}), **{r["task"]: r for r in rows}}
    merged_rows.parent.mkdir(exist_ok=True)
    merged_rows.write_text(json.dumps(merged, indent=2))
    if results:
        before = json.loads(Path(results).read_text()) if Path(results).exists() else {}
        kept = before.get("tasks", {})
        ran = stamp()  # each row keeps the command, commit and CPU of the run that made it
        write({**ran, "tasks": {**kept, **{r["task"]: {**r, **ran} for r in rows}}}, results)


@task(name="benchmark-stream",
      help={"count": "Images in the folder, comma-separated for several runs (default: 50000).",
            "size": "Image side in pixels (default: 224).",
            "in_memory": "Hold the decoded images in memory as below the threshold, to compare (default: off).",
            "out": "Folder of one run (default: build/stream-COUNT)."})
def benchmark_stream(c, count="50000", size=224, in_memory=False, out=None):
    """Peak resident memory of build-edge on a folder of COUNT JPEGs (benchmarks/streaming.py),
    one child process per count; rows in build/stream-results.json."""
    import json
    from pathlib import Path

    from edgecompress.report.write import format_text_table

    setup_logging()
    with user_errors():
        from benchmarks.streaming import measure

        counts = [int(n) for n in str(count).split(",")]
        rows = [measure(n, out if len(counts) == 1 else None, size=int(size),
                        stream_bytes=1 << 50 if in_memory else None) for n in counts]
    table = [["images", "size", "decoded GB", "on disk", "exit", "peak RSS GB", "seconds", "top-1 int8"]]
    for r in rows:
        table.append([str(r["count"]), str(r["size"]), f"{r['decoded_bytes'] / 1e9:.2f}", "yes" if r["streamed"] else "no",
                      str(r["returncode"]), f"{r['peak_rss_bytes'] / 1e9:.2f}", f"{r['seconds']:.0f}",
                      "-" if r["top1"].get("int8") is None else f"{100 * r['top1']['int8']:.2f}"])
    print(format_text_table(table))
    results = Path("build/stream-results.json")
    key = (lambda r: f"{r['count']}x{r['size']}{'' if r['streamed'] else '-in-memory'}")
    merged = {**(json.loads(results.read_text()) if results.exists() else {}), **{key(r): r for r in rows}}
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(merged, indent=2))
    if any(r["returncode"] for r in rows):
        raise Exit("A build failed; its log is named in build/stream-results.json.", code=1)


@task(help={"out": "Folder for the site (default: build/docs).",
            "serve": "Serve it on 127.0.0.1:8000 instead, rebuilding on change."})
def docs(c, out="build/docs", serve=False):
    """Build the documentation site offline (Material for MkDocs, warnings as errors) from docs/ and the
    docstrings; the results page is generated first from docs/results/."""
    import os
    import subprocess
    import sys

    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")  # Material's notice about its successor, on every build
    with user_errors():
        subprocess.run([sys.executable, "scripts/write_results_page.py"], check=True)
        cmd = ["serve", "-a", "127.0.0.1:8000"] if serve else ["build", "--strict", "--site-dir", out]
        done = subprocess.run([sys.executable, "-m", "mkdocs", *cmd])
    if done.returncode:
        raise Exit(f"mkdocs failed (exit {done.returncode}); its warnings above name the page and the link.",
                   code=done.returncode)
    if not serve:
        print(f"Site: {out}/index.html")


CHECKOUT_TASKS = (benchmark, benchmark_byo, benchmark_tiny, benchmark_stream, docs)  # what tasks.py adds
