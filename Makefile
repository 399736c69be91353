# The two commands of the README: `make demo` and `make test`. Both create the
# virtual environment with Python 3.12 (zarr >= 3.4 needs it) on a fresh machine.
PYTHON312 ?= $(shell (command -v pyenv >/dev/null && ls -d "$$(pyenv root)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1) || command -v python3.12)
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DIR := demo-data

.PHONY: demo test test-torch bench install clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found (pyenv install 3.12.1, or set PYTHON312=/path/to/python3.12)"; exit 1; }
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The PyTorch datasets' tests need torch, a multi-GB CUDA build for Python 3.12
# on PyPI: kept out of `make test`, run by `make test-torch`.
test: $(VENV)/.installed
	$(PY) -m pytest -q --ignore=tests/torch

test-torch: $(VENV)/.installed
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,torch]"
	$(PY) -m pytest -q tests/torch

demo: $(VENV)/.installed
	$(PY) examples/demo.py --workdir $(DEMO_DIR)

# The read benchmark (not part of the tests): writes docs/BENCHMARKS.md. The
# Hugging Face anchors need an older fsspec, so they get their own venv.
ANCHORS := .venv-anchors
BENCH_ARGS ?=

$(ANCHORS)/.installed: benchmarks/anchors-requirements.txt
	test -x $(ANCHORS)/bin/python || $(PYTHON312) -m venv $(ANCHORS)
	$(ANCHORS)/bin/python -m pip install --quiet -r benchmarks/anchors-requirements.txt
	touch $@

bench: $(VENV)/.installed $(ANCHORS)/.installed
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(PY) benchmarks/read_benchmark.py --anchor-python $(ANCHORS)/bin/python --rclone $(VENV)/bin/rclone $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(ANCHORS) $(DEMO_DIR)
