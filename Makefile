# The two commands a newcomer needs:
#   make demo   export the tiny model, start Triton, generate a video through gRPC (outputs/demo.mp4)
#   make test   lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
# The CPU build; on a GPU host use e.g. `make TORCH=torch==2.13.0 ...` from PyTorch's CUDA index.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test test-tools lint install clean wheelhouse gpu-proof

demo: $(VENV)/.installed
	$(BIN)/i2v demo

test: $(VENV)/.installed lint test-tools
	$(BIN)/pytest

# System tools some tests use (they skip, saying why, where these are missing): promtool checks the
# Prometheus config and alert rules; amtool (package prometheus-alertmanager) the Alertmanager config and its
# routes; chromium runs the UI in a real browser; nginx with its JavaScript module (njs) is the gateway in front of
# Triton, and mtail counts its access log per tenant. Installed with apt where we are root on Debian, as in CI.
test-tools:
	@command -v promtool >/dev/null && command -v amtool >/dev/null && command -v chromium >/dev/null && \
	  command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_http_js_module.so ] && \
	  command -v mtail >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	  prometheus-alertmanager chromium nginx libnginx-mod-http-js mtail >/dev/null) || \
	  echo "note: promtool, amtool, chromium, nginx or mtail not installed; their tests will be skipped"; }

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

# The GPU proof (benchmarks/README.md). On a networked machine, `make wheelhouse` collects what a bare GPU host
# (Python 3.12 with PyTorch + CUDA, no network) lacks (SERVED=1 adds the embedded server, its client and PyAV);
# on the GPU host, `make gpu-proof` installs them into its Python, runs the GPU tests (with the served wheels)
# and `i2v bench --suite gpu`, writing benchmarks/results/<gpu>-full-size-<date>/ to commit. A read-only
# system Python: PIP_TARGET=/tmp/site PYTHONPATH=/tmp/site make gpu-proof.
WHEELHOUSE ?= wheelhouse
GPU_PYTHON ?= python3
GPU_TESTS := tests/test_gpu_serving.py tests/test_torch_runtime.py tests/test_tensorrt_engines.py
GPU_GRID ?= 512x512x16 768x768x16 704x1280x16  # one call per size, each under 10 minutes, into one results folder

wheelhouse: $(VENV)/.installed
	$(BIN)/python -m i2v.benchmarks.wheelhouse $(WHEELHOUSE) $(if $(SERVED),--served)

# numpy<2, which the embedded server's Python backend needs, goes into a folder of its own for the models'
# processes (I2V_STUB_SITE): the host's Python keeps its numpy 2, which its scipy and scikit-learn need.
STUB_SITE ?= /tmp/i2v-stub-site
gpu-proof: export I2V_STUB_SITE = $(STUB_SITE)
gpu-proof:
	$(GPU_PYTHON) -m pip install -q --no-index --no-deps --upgrade --force-reinstall $(filter-out $(WHEELHOUSE)/numpy-%,$(wildcard $(WHEELHOUSE)/*.whl))
	@if ls $(WHEELHOUSE)/numpy-*.whl >/dev/null 2>&1; then \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --upgrade --target $(STUB_SITE) $(WHEELHOUSE)/numpy-*.whl; fi
	@# the server is only located (`import pytriton` itself wants gevent, which the launcher does not need)
	@# the benchmark runs even where a test fails (GPU time is scarce); the recipe fails at the end if either did
	@tests=0; if $(GPU_PYTHON) -c "import importlib.util as u, tritonclient.grpc, av; assert u.find_spec('pytriton')" 2>/dev/null; then \
	  $(GPU_PYTHON) -P -m pytest -ra -m gpu $(GPU_TESTS) || tests=$$?; \
	else echo "note: GPU serving tests skipped: the wheelhouse has no served part (make wheelhouse SERVED=1)"; fi; \
	for grid in $(GPU_GRID); do echo "i2v bench --suite gpu --grid $$grid"; \
	  $(GPU_PYTHON) -P -m i2v.cli bench --suite gpu --grid $$grid || exit 1; done; \
	[ $$tests = 0 ] || { echo "make gpu-proof: the GPU tests failed (pytest exit $$tests)"; exit 1; }

clean:
	rm -rf $(VENV) models outputs model_repository/*/ $(WHEELHOUSE)
