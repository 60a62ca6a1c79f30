"""The stages: each reads the Hydra config, composes the library and writes a run dir.

One module per stage (names.STAGES), each with `run(cfg, out_dir) -> dict`; run.py picks one by
cfg.stage.
common.py turns config nodes into the library's plain arguments; report.py writes tables and
docs/RESULTS.md.
"""
