# The two commands a newcomer needs:
#   make demo   export the tiny model, start Triton, generate a video through gRPC (outputs/demo.mp4)
#   make test   lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
# The CPU build; on a GPU host use e.g. `make TORCH=torch==2.13.0 ...` from PyTorch's CUDA index.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test test-tools lint install clean

demo: $(VENV)/.installed
	$(BIN)/i2v demo

test: $(VENV)/.installed lint test-tools
	$(BIN)/pytest

# System tools some tests use (they skip, saying why, where these are missing): promtool checks the
# Prometheus config and alert rules; chromium runs the UI in a real browser. Installed with apt where we are
# root on Debian, as in CI.
test-tools:
	@command -v promtool >/dev/null && command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null) || \
	  echo "note: promtool or chromium not installed; their tests will be skipped"; }

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) models outputs model_repository/*/
