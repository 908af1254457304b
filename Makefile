# make run  : build .venv from the pinned requirements if needed, then serve the dashboard on 127.0.0.1
#            (make run CONFIG=examples/example.toml: with the models a config file names, beside the zoo)
# make test : the same plus the dev requirements, then the whole test suite (browser tests need chromium)
PYTHON ?= python3
VENV   := .venv
PORT   ?= 8501
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed

.PHONY: run test lint bench zoo clean-cache

$(RUNTIME_STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(RUNTIME_STAMP)
ifdef CONFIG
	$(VENV)/bin/python -m calibviz serve --config $(CONFIG) --port $(PORT)
else
	@echo "calibviz: serving the dashboard at http://127.0.0.1:$(PORT)  (Ctrl-C to stop)"
	$(VENV)/bin/python -m streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)
endif

test: $(DEV_STAMP)
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m pytest -ra

lint: $(DEV_STAMP)
	$(VENV)/bin/python -m ruff check .

bench: $(DEV_STAMP)
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

zoo: $(RUNTIME_STAMP)
	$(VENV)/bin/python -m calibviz zoo build

# remove the content-keyed disk caches (predictions, augmented batches, UMAP); they refill on the next use
clean-cache:
	rm -rf "$${CALIBVIZ_CACHE:-$$HOME/.cache/calibviz}"
