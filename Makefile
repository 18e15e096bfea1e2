# Two commands do all set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run demo test lint format clean

# Re-install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The console on http://127.0.0.1:$(PORT) with a real Celery worker on the embedded broker.
PORT ?= 8000
run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --noinput
	CONSOLE_PORT=$(PORT) $(BIN)/honcho --procfile Procfile.dev start

# The test OpenID Provider (node oidc-provider); skipped when npm is missing (its tests then
# skip outside CI and fail under CI=true).
OP_MODULES := tests/op/node_modules/.installed
$(OP_MODULES): tests/op/package.json tests/op/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/op --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: tests that need the node OpenID Provider will be skipped"; fi

# A trial without AWS or Diffgram: stand-ins for both on this machine (demo/__main__.py).
demo: $(VENV)/.installed $(OP_MODULES)
	$(BIN)/python -m demo --port $(PORT)

PYTEST_ARGS ?= -n auto
test: $(VENV)/.installed $(OP_MODULES)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
