# Two commands: `make demo` and `make test`. Both create (or reuse) .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv weights clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
	  echo "error: emotion-gan needs Python 3.11 (the pinned torch, mediapipe 0.10.21 and numpy<2 wheels are"; \
	  echo "       built for it); '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)."; \
	  echo "       Install 3.11 and run: make demo PYTHON=python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Pretrained weights and the synthetic people's source photographs, part of set-up like the
# packages: each pinned file is fetched once and re-verified (sha256) on every run, which takes
# a fraction of a second when it is there (docs/DATASET.md: the photographs' credits and licences).
weights: $(STAMP)
	$(VENV)/bin/emogan weights fetch fer2013
	$(VENV)/bin/emogan weights fetch photos

# The main job on the synthetic default: the DVC stage graph.
demo: $(STAMP) weights
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro
	@# DVC copies a stage's outputs into its cache; relinking makes them one copy on disk (.dvc/config cache.type)
	$(VENV)/bin/dvc checkout --relink --quiet
	@echo "demo done: the report is docs/results/cv/REPORT.md (data/, models/, metrics/ hold the rest)"

test: $(STAMP) weights
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
