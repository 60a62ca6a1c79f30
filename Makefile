# mnist_probe: `make run` and `make test` do all set-up themselves. `make help` lists targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra Hydra overrides for run/train/reproduce, e.g. make run ARGS="data.download=true shift.digit=7"
ARGS ?=
# What `make sweep` runs with -m: the design card's sweep over shift range and interpreter.
SWEEP ?= +experiment=shift shift.dy=0,-1,-2,-3,-4,-5 interpreter=svm,rf
# MNIST: beside the project in ../shared/mnist where it is there, else in data/, where `make mnist`
# (which run and test call first) downloads it; MNIST_ROOT=FOLDER for another place.
ifneq ($(wildcard ../shared/mnist/MNIST/raw),)
export MNIST_ROOT ?= $(abspath ../shared/mnist)
else
export MNIST_ROOT ?= $(abspath data)
endif

.PHONY: help install mnist run sweep seeds train test test-slow lint tensorboard clean bench bench-run bench-reports bench-long reproduce screenshot chromium fashion-mnist fashion-page pages

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## make .venv and install the package with its dev extras

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

mnist: install ## MNIST in MNIST_ROOT, downloaded where missing (torchvision's mirrors, md5 checked)
	@$(PY) -m mnist_probe.fetch "$(MNIST_ROOT)"

run: install mnist ## the main job: train (or load) the CNN, then the study's shift test
	$(PY) -m mnist_probe.run +experiment=shift $(ARGS)

sweep: install mnist ## a Hydra multirun (SWEEP="..." to change it) -> outputs/multirun/<time>_shift/summary.md
	$(PY) -m mnist_probe.run -m $(SWEEP) $(ARGS)

# What `make seeds` runs: the seeds (SEEDS=42,43 for fewer) and the launcher (LAUNCHER=basic: one at a time).
SEEDS ?= 42,43,44,45,46
LAUNCHER ?= joblib
seeds: install mnist ## every headline number as mean ± std over SEEDS -> outputs/multirun/<time>_seeds/seeds.md
	$(PY) -m mnist_probe.run +experiment=seeds seed=$(SEEDS) hydra/launcher=$(LAUNCHER) $(ARGS)

train: install mnist ## train (or load) the CNN with the recipe a run trains (train=fast; ARGS="train=NAME")
	$(PY) -m mnist_probe.run +experiment=train $(ARGS)

test: install mnist ## the fast test suite, one worker per core (pytest's "no tests ran" counts as failure)
	$(PY) -m pytest -m "not slow" -q -n auto --dist worksteal; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

fashion-mnist: ## Fashion-MNIST from Debian's package (then make run ARGS="data=fashion_mnist")
	@if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "error: no apt-get here: put Fashion-MNIST's four IDX files in a folder, then data=fashion_mnist data.root=FOLDER" >&2; exit 1; fi; \
	  apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist); fi
	@echo "Fashion-MNIST is in /usr/share/datasets/fashion-mnist/ (data=fashion_mnist reads it there)"

# Where fashion-page keeps the MNIST report it compares Fashion-MNIST's with (the same recipe, train=fashion).
MNIST_REPORT ?= outputs/runs/report_mnist_fashion_recipe
pages: install ## every docs/NAME.md rendered again from its results file docs/NAME.json (seconds)
	for f in docs/*.json; do [ -e "$$f" ] || continue; $(PY) -m mnist_probe.pages.render "$$f" || exit 1; done

fashion-page: install fashion-mnist ## Fashion-MNIST's report beside MNIST's (same recipe) -> docs/RESULTS-fashion-mnist.md
	$(PY) -m mnist_probe.run +experiment=report train=fashion hydra.run.dir=$(MNIST_REPORT) $(ARGS)
	$(PY) -m mnist_probe.run +experiment=report data=fashion_mnist report.page=docs/RESULTS-fashion-mnist.md \
	  report.compare=$(MNIST_REPORT) $(ARGS)

chromium: ## Debian's headless Chromium, for the browser test (make test-slow, make screenshot)
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

$(VENV)/.quantus: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,quantus]'
	touch $@

test-slow: install chromium $(VENV)/.quantus $(VENV)/.bench ## the slow tests only (installs their references: the quantus and bench extras)
	$(PY) -m pytest -m slow -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install ## ruff: the checks, and the layout ruff format gives
	$(VENV)/bin/ruff check mnist_probe tests conf
	$(VENV)/bin/ruff format --check mnist_probe tests conf README.md

tensorboard: install ## browse training curves and activations at http://127.0.0.1:6006
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

clean: ## remove run dirs and caches (keeps .venv)
	rm -rf outputs/runs outputs/multirun outputs/cache .pytest_cache .ruff_cache build

$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

bench: install $(VENV)/.bench ## training, hooks, streaming, shift, fits, and beside TorchLens, FX, pytorch-grad-cam -> docs/PERFORMANCE.md
	$(PY) -m mnist_probe.bench --page docs/PERFORMANCE.md

bench-run: install ## make run's job from a fresh clone (empty caches), timed -> docs/PERFORMANCE.md
	$(PY) -m mnist_probe.bench --make-run --page docs/PERFORMANCE.md

bench-reports: install mnist ## +experiment=report on the study's CNN, ResNet-18 and timm models, timed -> docs/PERFORMANCE.md
	$(PY) -m mnist_probe.bench --reports --page docs/PERFORMANCE.md

bench-long: install ## train=fast and train=default from scratch: seconds to 99.3% -> docs/PERFORMANCE.md
	$(PY) -m mnist_probe.bench --long --page docs/PERFORMANCE.md

reproduce: install mnist ## the study end to end (train=study, every stage) -> docs/RESULTS.md (CPU: hours)
	$(PY) -m mnist_probe.run +experiment=reproduce $(ARGS)

screenshot: install chromium ## TensorBoard's images dashboard in headless Chromium -> docs/ (slow test)
	MNIST_PROBE_SCREENSHOT=$(abspath docs/tensorboard_feature_maps.png) $(PY) -m pytest -q -m slow tests/test_browser.py
