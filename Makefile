# Two commands do everything on a fresh Debian machine (as root for the apt step):
#   make demo   a throwaway Prosody + CVS repository, a real watch notification, delivered then withheld
#   make test   install everything and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: all deps venv test lint demo bench bench-spool bench-guarantee man clean
all: test

deps:
	@bash scripts/install-deps.sh

$(BIN)/cvsmsg: pyproject.toml bin/cvsmsg-drop  # pip copies the sh script: reinstall when it changes
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/cvsmsg

lint: venv
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/mypy

# Two workers, a test file each at a time: the suite mostly waits (servers, CVS's
# one-second timestamps), so two halves the wall time on two cores.
test: deps venv lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

demo: deps venv
	$(BIN)/python scripts/demo.py

# issue 11's five targets, cvsmsg beside go-sendxmpp and sendxmpp, one run, same server
# (installs the peers); BENCH_ARGS=--quick for a smoke test, e.g. --runs 30 --only 1,3
BENCH_ARGS ?=
bench: deps venv
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

# kill -9 the background deliverer mid-drain, trial after trial: lost and doubled notifications
bench-guarantee: deps venv
	$(BIN)/python bench/guarantee_bench.py

# direct vs background vs cvsmsg-drop: one notify, and a real 300-notification cvs commit
bench-spool: deps venv
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/spool_bench.py

# man/cvsmsg.1 from the click help and README.md's key tables, and src/cvsmsg/helptexts.py,
# the click help `cvsmsg --help` prints without importing click (committed; tests check both)
man: venv
	$(BIN)/python scripts/make_manpage.py
	$(BIN)/python scripts/make_help.py

clean:
	rm -rf $(VENV) demo-run build src/*.egg-info
