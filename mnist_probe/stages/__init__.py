"""The stages: each reads the Hydra config, composes the library and writes a run dir.

One module per stage (names.STAGES), each with `run(cfg, out_dir)` returning its typed result
(results.py); run.py picks one by cfg.stage and writes that result as results.json. adapters.py
turns the config into the library's arguments; sweep.py is the multirun summary (a Hydra
callback). The pages they write are rendered by mnist_probe.pages.
"""
