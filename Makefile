# Interlock — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test drills lint bench bench-resilience bench-cache bench-jobs bench-simulate bench-scaling install clean
.PHONY: browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: create the venv, install, start the gateway on its embedded default (127.0.0.1:8080)
run: $(STAMP)
	$(BIN)/interlock serve

## test: install and run every test (lint and types included) except the long fault drills
test: $(STAMP) browser
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not drill and not long"

## drills: the long fault drills (`@pytest.mark.drill`, ~25 min at most: replicas killed,
## plus the `long` variants of make-test checks that would push make test past 15 min;
## Redis frozen, the database cut, slow clients); each prints its figures and appends them
## to test-output/drills.json (docs/reliability.md). Needs Redis and PostgreSQL. A drill's
## default pytest timeout is 600 s here (120 s in make test); a drill may set its own.
drills: $(STAMP)
	$(BIN)/python -m pytest -q -m "drill or long" -rA --timeout=600; status=$$?; \
	  $(BIN)/python -m tests.drills.report; exit $$status

## browser: what some tests need from Debian: Chromium + ChromeDriver (the dashboard's
## browser test), wrk and nginx (the scaling test). Installed here only when CI=true; on a
## laptop without them those tests are skipped with the reason.
browser:
	@if [ "$$CI" = "true" ] && ! { command -v chromium && command -v chromedriver && command -v wrk && command -v nginx; } >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver wrk nginx-light) \
	    || echo "warning: could not install chromium/chromium-driver/wrk/nginx; tests that need them will fail"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: the core benchmark (pinned with taskset); figures go to docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python bench/core.py

## bench-resilience: success rate and p50/p99 under a scripted fault schedule (~80 s)
bench-resilience: $(STAMP)
	$(BIN)/python bench/resilience.py
	$(BIN)/python bench/report.py

## bench-jobs: jobs/s end to end per queue backend (SQLite, PostgreSQL, Redis) and a 10x burst (~2 min)
bench-jobs: $(STAMP)
	$(BIN)/python bench/jobs.py

## bench-cache: cache hits vs misses, the 1M-entry semantic index, embedding micro-batching,
## and the semantic matcher's evaluation (~10 minutes)
bench-cache: $(STAMP)
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/semantic_cache_eval.py
	$(BIN)/python bench/report.py

## bench-simulate: `interlock simulate` at 1x vs a real load test (cost and p95 error, ~40 s)
bench-simulate: $(STAMP)
	$(BIN)/python bench/simulate_validation.py

## bench-scaling: 3 gateways + 2 workers on Redis/PostgreSQL behind nginx, one SIGKILLed (~45 s)
bench-scaling: $(STAMP)
	$(BIN)/python bench/scaling.py

clean:
	rm -rf $(VENV) .interlock .pytest_cache .mypy_cache .ruff_cache
