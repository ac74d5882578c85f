# tickcore: the two commands of the README quick start are `make demo` and `make test`.
# Both build .venv from pyproject.toml on first use (and again when it changes).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
PYTEST_WORKERS ?= 2

.PHONY: demo test lint tshark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m tickcore.host.fast.warmup
	touch $@

demo: $(STAMP)
	$(BIN)/tickcore demo

# tshark decodes our pcaps in the interoperability tests; install it when missing.
tshark:
	@command -v tshark >/dev/null 2>&1 || { \
	  echo "installing tshark (Debian package) for the interoperability tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tshark >/dev/null; }

test: $(STAMP) tshark
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache
