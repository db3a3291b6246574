# The whole set-up: `make run` serves the demo, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
ARGS   ?=

.PHONY: run test test-fast system-deps screenshots clean bench

# Installed markers: pip runs again only when a requirements file changes.
$(VENV)/.run-deps: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.test-deps: $(VENV)/.run-deps requirements-test.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

run: $(VENV)/.run-deps  ## serve on http://127.0.0.1:8888/ (flags: make run ARGS="--port=9000")
	$(PY) app.py $(ARGS)

system-deps:  ## chromium, chromium-driver, nginx and redis-server, from Debian, when missing
	bash scripts/system-deps.sh

# axe-core, which the browser tests inject into each page (package.json,
# pinned by package-lock.json); npm writes this marker when it installs.
node_modules/.package-lock.json: package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund

# The browser modules' pure logic (tests/js) runs under Node's own test
# runner first: a second, no browser needed.
test: $(VENV)/.test-deps system-deps node_modules/.package-lock.json  ## every test, the browser ones included
	node --test --test-reporter=spec tests/js/*.test.mjs
	$(PY) -m pytest $(ARGS)

test-fast: $(VENV)/.test-deps  ## everything but the browser tests
	NO_BROWSER=1 bash scripts/system-deps.sh
	node --test --test-reporter=spec tests/js/*.test.mjs
	$(PY) -m pytest --ignore=tests/e2e $(ARGS)

screenshots: $(VENV)/.test-deps system-deps  ## docs/*.png, from a real browser
	$(PY) -m tests.e2e.screenshots

clean:
	rm -rf $(VENV) .pytest_cache

# The benchmark has its own venv (the peers and the plot stay out of .venv);
# nothing in bench/ runs in `make test`. See bench/README.md.
BENCH_VENV ?= bench/.venv

$(BENCH_VENV)/.bench-deps: requirements.txt bench/requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements-bench.txt
	touch $@

bench: $(BENCH_VENV)/.bench-deps  ## docs/bench.md and docs/bench.png, ~10 min (quick: make bench ARGS="--n 1000 --events 5")
	$(BENCH_VENV)/bin/python bench/run.py $(ARGS)
