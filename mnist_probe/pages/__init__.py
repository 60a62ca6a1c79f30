"""The pages: typed results in, markdown out. report.md, RESULTS.md and RESULTS-<data>.md are
rendered here from a results file (page.json) alone; the sentences they say (verdicts, trust,
changes) live with them. Nothing here runs a model or reads a config."""
