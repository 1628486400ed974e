# The two entry points of the README. Each creates (or reuses) .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
PYTEST_ARGS ?=

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv || true
	if $(PY) -m uv --version >/dev/null 2>&1; then \
		$(PY) -m uv pip install --python $(PY) --compile-bytecode -e '.[dev]'; \
	else \
		$(PY) -m pip install -e '.[dev]'; \
	fi
	touch $(STAMP)

install: $(STAMP)

# Bytecode is compiled at install (as pip does by default), so no process pays for
# compiling its imports, also where PYTHONDONTWRITEBYTECODE is set.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	if $(PY) -m uv --version >/dev/null 2>&1; then \
		$(PY) -m uv pip install --python $(PY) --compile-bytecode -e '.[dev,bench]'; \
	else \
		$(PY) -m pip install -e '.[dev,bench]'; \
	fi
	touch $(BENCH_STAMP)

demo: $(STAMP)
	$(PY) -m airflow_provider_orchestra.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark, then bench/RESULTS.md and bench/results.json (not part of `make test`).
bench: $(BENCH_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .orchestra output .pytest_cache
