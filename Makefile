# django-motp: `make test` and `make demo` are the two set-up commands (see README.rst).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
SANDBOX_PORT ?= 8765
DEMO_PORT ?= 8000
# e.g. make demo SANDBOX_ARGS="--fault-rate 0.2" to try the shop against a flaky gateway
SANDBOX_ARGS ?=
# Other Pythons and Djangos than `make test`'s (PYTHON, Django 5.2 LTS), each in a venv of its
# own; CI runs both. `make test-newest`: the newest Django on the newest Python.
NEWEST_PYTHON ?= python3.13
NEWEST_DJANGO ?= Django>=6
# `make test-django60`: Django 6.0 on Python 3.12, the other versions the classifiers name.
DJANGO60_PYTHON ?= python3.12

.PHONY: test test-sqlite test-postgres test-newest test-django60 test-other coverage demo lint \
	type check-migrations dist bench campaign docs messages compilemessages clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

## The whole suite on SQLite, then the whole suite again on PostgreSQL. The PostgreSQL pass is
## skipped with a message when it is not reachable, and fails then under MOTP_REQUIRE_SERVICES=1.
test: test-sqlite test-postgres

# The tests marked postgres need real row locks: they run in the PostgreSQL pass only.
test-sqlite: $(VENV)/.installed-test
	$(PY) -m pytest -m "not postgres" $(PYTEST_ARGS)

test-postgres: $(VENV)/.installed-test
	DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest $(PYTEST_ARGS)

test-newest:
	$(MAKE) test-other OTHER_PYTHON='$(NEWEST_PYTHON)' OTHER_DJANGO='$(NEWEST_DJANGO)' \
		OTHER_VENV=.venv-newest

test-django60:
	$(MAKE) test-other OTHER_PYTHON='$(DJANGO60_PYTHON)' OTHER_DJANGO='Django>=6.0,<6.1' \
		OTHER_VENV=.venv-django60

# The SQLite pass in OTHER_VENV, made with OTHER_PYTHON and the newest OTHER_DJANGO.
test-other: $(OTHER_VENV)/.installed
	$(OTHER_VENV)/bin/python -m pytest -m "not postgres" $(PYTEST_ARGS)

.venv-%/.installed: setup.cfg pyproject.toml
	$(OTHER_PYTHON) -m venv $(@D)
	$(@D)/bin/python -m pip install --quiet --upgrade pip
	$(@D)/bin/python -m pip install --quiet --upgrade -e '.[test]' '$(OTHER_DJANGO)'
	$(@D)/bin/python -c "import sys, django; \
		print('Django', django.get_version(), 'on Python', sys.version.split()[0])"
	touch $@

## The SQLite pass under coverage, with the lines of django_motp that no test runs.
coverage: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not postgres" --cov=django_motp --cov-report=term-missing:skip-covered \
		$(PYTEST_ARGS)

## The example shop: the sandbox gateway, a Celery worker with beat, and the shop's web server,
## started by example_project/demo.py (which migrates, creates admin/admin, prints the addresses,
## prefixes each process's log lines and stops all three on Ctrl-C).
## DATABASE_URL=postgres://... and CELERY_BROKER_URL=redis://... or amqp://... switch servers.
demo: $(VENV)/.installed-demo
	cd example_project && ../$(PY) demo.py --shop-port $(DEMO_PORT) \
		--sandbox-port $(SANDBOX_PORT) --sandbox-args "$(SANDBOX_ARGS)"

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check django_motp tests example_project bench docs
	$(VENV)/bin/ruff format --check django_motp tests example_project bench docs

type: $(VENV)/.installed-dev
	$(VENV)/bin/mypy django_motp

check-migrations: $(VENV)/.installed-test
	$(PY) -m django makemigrations django_motp --check --dry-run --settings=tests.settings

dist: $(VENV)/.installed-dev
	rm -rf dist build
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	$(PY) .ci/check_wheel.py dist

## The documentation site into docs/_build/html, read afresh (-E), warnings as errors; then its
## code examples run (sphinx doctest against the sandbox, and the testing guide's pytest file).
SPHINXOPTS ?= -W --keep-going -q -E
docs: $(VENV)/.installed-docs
	$(VENV)/bin/sphinx-build $(SPHINXOPTS) -b html docs docs/_build/html
	$(VENV)/bin/sphinx-build $(SPHINXOPTS) -b doctest docs docs/_build/doctest
	$(PY) -m pytest -p django_motp.testing docs/examples -q $(PYTEST_ARGS)
	@echo "The docs are in docs/_build/html/index.html"

## The translations (Khmer, Chinese) of django_motp and of the example shop: `make messages`
## brings their .po files up to date with the code (then translate what is new), `make
## compilemessages` compiles them into the .mo files that ship. Both need GNU gettext.
DJANGO_ADMIN = DJANGO_SETTINGS_MODULE=tests.settings $(CURDIR)/$(VENV)/bin/django-admin
MESSAGES = -l km -l zh_Hans --add-location=file --no-obsolete
messages: $(VENV)/.installed-dev
	cd django_motp && PYTHONPATH=$(CURDIR) $(DJANGO_ADMIN) makemessages $(MESSAGES) --ignore 'sandbox/*'
	cd example_project/shop && PYTHONPATH=$(CURDIR):$(CURDIR)/example_project \
		$(DJANGO_ADMIN) makemessages $(MESSAGES)

compilemessages: $(VENV)/.installed-dev
	cd django_motp && PYTHONPATH=$(CURDIR) $(DJANGO_ADMIN) compilemessages
	cd example_project/shop && PYTHONPATH=$(CURDIR):$(CURDIR)/example_project \
		$(DJANGO_ADMIN) compilemessages

## The benchmarks, each figure beside its baseline (docs/performance.rst); the polling section
## needs PostgreSQL and Redis (skipped with the reason without them). BENCH_ARGS=--quick: fewer
## rounds and N = 100 only.
bench: $(VENV)/.installed-test
	$(PY) -m bench $(BENCH_ARGS)

## The fault campaign and the secrets test alone, on PostgreSQL, at the size docs/reliability.rst
## reports (the PostgreSQL pass of `make test` runs them at 150 payments and 45 refunds):
## make campaign CAMPAIGN_PAYMENTS=1000 CAMPAIGN_REFUNDS=300
CAMPAIGN_PAYMENTS ?= 1000
CAMPAIGN_REFUNDS ?= 300
campaign: $(VENV)/.installed-test
	DATABASE_URL=$(POSTGRES_URL) MOTP_CAMPAIGN_PAYMENTS=$(CAMPAIGN_PAYMENTS) \
		MOTP_CAMPAIGN_REFUNDS=$(CAMPAIGN_REFUNDS) $(PY) -m pytest -m campaign $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .venv-newest .venv-django60 docs/_build docs/_generated dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
