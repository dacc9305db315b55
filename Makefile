# Two commands for users: `make lab` and `make test`. `make install` puts the runtime set
# into .venv (what `make lab` needs); `make install-test` adds the test extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test lab test lint bench clean notebooks labs export k8s-bin fidelity

install: $(STAMP)

# Re-installs only when the package metadata changed. An editable install leaves the
# sources uncompiled, and with PYTHONDONTWRITEBYTECODE set nothing caches their bytecode
# later, so compileall writes it once (as `pip install .` does for a wheel).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info < (3, 14)))' || \
	  { echo "irsa-lab needs Python 3.11, 3.12 or 3.13 (found: $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	$(BIN)/python -m compileall -q irsa_lab
	touch $(STAMP)

# The test extras (pytest, Hypothesis, nbval, ruff, mypy, Playwright) on top.
install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(TEST_STAMP)

lab: install
	$(BIN)/irsa-lab lab

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Unit and integration tests (the lab notebooks run there on both backends), then every
# guided notebook: against its stored outputs on the embedded backend (strict), and on the
# real kube-apiserver and upstream webhook of the k8s backend, where uids, times and token
# claims cannot be fixed, for errors only (lax). No k8s run without `make k8s-bin`.
test: lint
	$(BIN)/pytest
	$(BIN)/pytest --nbval notebooks --nbval-sanitize-with notebooks/nbval-sanitize.cfg -p no:randomly
	if $(BIN)/python -m irsa_lab.backends.binaries check; then \
	  IRSA_LAB_BACKEND=k8s $(BIN)/pytest --nbval-lax notebooks -p no:randomly; \
	else echo "skipped: the notebooks on the k8s backend (run make k8s-bin first)"; fi

# Re-run every notebook and store its outputs (after changing a notebook or what it prints).
notebooks: install
	for nb in notebooks/[0-9]*.ipynb; do \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; \
	done

# Regenerate the lab notebooks from the exercise catalogue, outputs from a clean run.
labs: install
	$(BIN)/python labs/make_notebooks.py

# A static HTML copy of the notebooks with their widgets, readable offline.
export: install
	$(BIN)/python -m irsa_lab.export build/site

# The real etcd, kube-apiserver, controller manager, scheduler, kubectl and upstream pod
# identity webhook, built from pinned sources (k8s-bin/*/go.sum) with Go into
# $$IRSA_LAB_BIN_DIR (default ~/.cache/irsa-lab/bin); a second run does nothing.
k8s-bin: install
	$(BIN)/python -m irsa_lab.backends.binaries build

# The stand-ins measured against the real programs; writes docs/fidelity.md.
fidelity: k8s-bin
	$(BIN)/python -m irsa_lab.fidelity docs/fidelity.md

bench: install-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
