# Two commands do everything on a fresh Debian machine (as root for the apt step):
#   make demo   a throwaway Prosody + CVS repository, a real watch notification, delivered then withheld
#   make test   install everything and run the whole test suite (what CI runs)
# The interpreter the README installs cvsmsg with: Debian's /usr/bin/python3 when there is
# one (a pyenv or conda python3 earlier in PATH is another build, often unoptimised, and
# would make the tests and the bench measure something users do not run).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
export PYTHON
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: all deps venv test lint demo bench bench-spool bench-guarantee man clean
all: test

deps:
	@bash scripts/install-deps.sh

# pip copies the sh script: reinstall when it changes; a new venv when the Makefile
# (the interpreter) changes
$(BIN)/cvsmsg: pyproject.toml bin/cvsmsg-drop Makefile
	$(PYTHON) -m venv --clear $(VENV)
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
