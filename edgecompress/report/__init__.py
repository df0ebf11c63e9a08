"""What a build produced: typed results, Pareto fronts, report.json, report.md and report.html."""
