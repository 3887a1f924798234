"""Reports: comparisons, rankings, memory estimates, benchmarks and figures."""
