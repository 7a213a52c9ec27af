# The README's two commands: `make run` (the main job) and `make test` (the tests).
# Both create the virtual environment .venv on first use and install mmemu into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench check-real-modules clean

$(STAMP): pyproject.toml plugins/riscv64/pyproject.toml plugins/arm64/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e plugins/riscv64 -e plugins/arm64
	touch $(STAMP)

## run: the UI on the built-in tour in a terminal; the headless tour (mmemu run) where there is none
run: $(STAMP)
	$(BIN)/mmemu

## test: every test
test: $(STAMP)
	$(BIN)/python -m pytest

## bench: every benchmark; the last line is one JSON object of figures
bench: $(STAMP)
	$(BIN)/python bench/run.py

## check-real-modules: load every module of Debian's 6.1 kernels (cloud-amd64, 686, 686-pae; fetched with
## apt-get download into .cache/real-modules) without running init; opt-in, not part of `make test`
check-real-modules: $(STAMP)
	$(BIN)/python tools/check_real_modules.py --force-vermagic $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
