"""`make bench`: throughput and memory of the hot paths, as JSON and a markdown table in outputs/bench/,
and docs/PERFORMANCE.md from them. Not a test: it measures and reports; nothing here asserts a time.
Medians of several repeats. `python -m mnist_probe.bench --help` lists what it runs."""
