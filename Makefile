# deepworks developer commands. Every target creates .venv if it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test test-all bench lint format clean docs docs-serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	# reference attacks for the tests; --no-deps keeps torchvision (which breaks CPU torch) out
	$(BIN)/pip install -q --disable-pip-version-check --no-deps torchattacks==3.5.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepworks train examples/digits_mlp.yaml --out runs

# Tests run many tiny models side by side with CLI subprocesses; one OpenMP thread each keeps
# small convolutions from spin-waiting on a busy core (tens of times slower on 2 cores). The
# suite runs on WORKERS pytest-xdist processes, each taking whole test files (--dist loadfile,
# so a module's shared fixtures are built once).
WORKERS ?= 2
test: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	OMP_NUM_THREADS=1 $(BIN)/pytest -x -q -m "not slow" -n $(WORKERS) --dist loadfile
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d build/site

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/pytest -x -q -n $(WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/time_to_accuracy.py
	$(BIN)/python bench/attacks.py
	$(BIN)/python bench/gpu.py
	$(BIN)/python bench/startup.py

# The documentation site (docs/, mkdocs.yml); its reference pages are generated from the code
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

format: $(STAMP)
	$(BIN)/ruff format src tests $(wildcard bench)
	$(BIN)/ruff check --fix src tests $(wildcard bench)

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
