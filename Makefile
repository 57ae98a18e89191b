# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench gpu-check install clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fewshot demo

# The report's browser test (tests/report/test_browser.py) needs headless Chromium, Debian's `chromium`:
# installed here where it is missing and apt is usable (root, or sudo without a password); elsewhere that
# one test skips, saying so.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
		if [ "$$SUDO" = none ]; then echo "chromium missing and apt needs root: the report's browser test will skip"; \
		else echo "installing chromium (apt) for the report's browser test"; \
			($$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
				>/dev/null 2>&1 || echo "chromium could not be installed: the report's browser test will skip"; fi; \
	fi

test: $(STAMP) browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The CUDA checks (benchmarks/gpu_check.py): with the venv where it exists, else the machine's python3 (a GPU
# machine's own torch); runs the project from this tree, installs nothing. Without a GPU: one line, exit 0.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf demo-output .pytest_cache test-artefacts
