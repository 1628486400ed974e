# The two entry points of the README. Each creates (or reuses) .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv || true
	if $(PY) -m uv --version >/dev/null 2>&1; then \
		$(PY) -m uv pip install --python $(PY) -e '.[dev]'; \
	else \
		$(PY) -m pip install -e '.[dev]'; \
	fi
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m airflow_provider_orchestra.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .orchestra output .pytest_cache
