# Commands on a fresh machine with python3, git and make:
#   make serve        local GraphQL server with GraphiQL and the app on an embedded DynamoDB engine
#   make test         lint, types, template checks and the whole test suite (cloud and browser too)
#   make cloud        the local AWS cloud with template.yaml deployed into it
#   make screenshots  the app's pages at desktop and phone widths into docs/screenshots/
PYTHON ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
MINISTACK_VERSION := 1.5.33

# First installs take minutes: say what is installing, that it still is, and how long it took.
STEP := sh tools/step.sh

.PHONY: serve test lint typecheck cfn checkov pytest schema seed bench sim mutants fuzz clean deps \
	cloud \
	screenshots \
	build-GraphQLFunction build-PayoutsFunction build-GiftFeedSocketFunction \
	build-GiftFeedFanOutFunction build-GiftFeedPostFunction build-StoreCatchUpFunction

$(BIN)/livecoins: pyproject.toml
	@$(STEP) "$(VENV): LiveCoins with its tests and tools (first time: about 2 minutes)" \
		sh -c "$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip && \
		$(BIN)/pip install --quiet -e '.[dev]'"
	@touch $@

# ministack pins graphql-core 3.2, strawberry needs 3.3: the engine gets its own venv and
# runs as a child process of the local server. As the local cloud (make cloud, the cloud
# suite) it also needs the SAM transform and cryptography (the JWT authorizer's RS256).
$(ENGINE_VENV)/bin/ministack:
	@$(STEP) "$(ENGINE_VENV): the local DynamoDB engine (first time: about 20 seconds)" \
		sh -c "$(PYTHON) -m venv $(ENGINE_VENV) && \
		$(ENGINE_VENV)/bin/pip install --quiet ministack==$(MINISTACK_VERSION)"
	@touch $@

$(ENGINE_VENV)/cloud.stamp: $(ENGINE_VENV)/bin/ministack
	@$(STEP) "$(ENGINE_VENV): the local AWS cloud's extras (first time: about 20 seconds)" \
		$(ENGINE_VENV)/bin/pip install --quiet ministack==$(MINISTACK_VERSION) \
		aws-sam-translator==1.115.0 'cryptography>=44,<51'
	@touch $@

# checkov depends on a PyPI package named `schema`, which our top-level schema/ would shadow.
$(CHECKOV_VENV)/bin/checkov:
	@$(STEP) "$(CHECKOV_VENV): checkov (first time: about a minute)" \
		sh -c "$(PYTHON) -m venv $(CHECKOV_VENV) && \
		$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30"
	@touch $@

deps: $(BIN)/livecoins $(ENGINE_VENV)/bin/ministack $(ENGINE_VENV)/cloud.stamp

# Only what the server needs (not the local cloud's extras): the first start is shorter.
serve: $(BIN)/livecoins $(ENGINE_VENV)/bin/ministack
	$(BIN)/livecoins serve

seed: deps
	$(BIN)/livecoins seed

# Starts the local cloud, deploys template.yaml, warms the functions, prints the URLs and pool
# ids; Ctrl-C stops it within seconds (infra/local_cloud.py, STOP_GRACE_SECONDS).
cloud: deps
	$(BIN)/livecoins cloud

test: deps lint typecheck cfn checkov pytest

lint: $(BIN)/livecoins
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/livecoins
	$(BIN)/mypy

# Informational findings too (the default hides them).
cfn: $(BIN)/livecoins
	$(BIN)/cfn-lint --include-checks I -- template.yaml

# Checks skipped for one resource are in template.yaml with their reason; these two are
# skipped for every table and log group (docs/aws.md):
# CKV_AWS_119: tables are encrypted at rest with the AWS-owned key; a customer key adds cost
#   per request and a key that can lock the data out, with no access gain in one account.
# CKV_AWS_158: CloudWatch Logs are encrypted at rest by default; the logs hold no secrets.
CHECKOV_SKIPS := CKV_AWS_119,CKV_AWS_158
checkov: $(CHECKOV_VENV)/bin/checkov
	cd /tmp && $(CURDIR)/$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download \
		--framework cloudformation --skip-check $(CHECKOV_SKIPS) --file $(CURDIR)/template.yaml

# -rs lists skips with their reason; the browser test is skipped without Chromium. Test files
# run in parallel, each whole in one worker (its module fixtures, a deployed stack, built once).
pytest: deps
	$(BIN)/pytest -q -rs -n auto --maxprocesses 4 --dist loadfile
	@test -x /usr/bin/chromium || echo "make test: SKIPPED the browser test" \
		"(tests/test_browser.py): no /usr/bin/chromium; install it with: apt-get install chromium"

# The app's pages at desktop and phone widths (tools/screenshots.py; needs /usr/bin/chromium).
screenshots: deps
	$(BIN)/python tools/screenshots.py

schema: $(BIN)/livecoins
	$(BIN)/livecoins export-schema > schema/schema.graphql

# The fault simulator's long run (tests/sim/run.py); make test runs short ones.
SEED ?= 1
SEEDS ?= 1
CLIENTS ?= 64
OPS ?= 100000
FAULTS ?= 0.2
ENTRYPOINT ?= lambda
sim: $(BIN)/livecoins
	$(BIN)/python -m tests.sim.run --seed $(SEED) --seeds $(SEEDS) --clients $(CLIENTS) \
		--ops $(OPS) --faults $(FAULTS) --entrypoint $(ENTRYPOINT)

# The simulator's reach: every planted money bug of tests/sim/mutants.py must be killed by short
# simulator seeds alone (make test runs the quick ones; .ci/run runs them all after make test).
mutants: $(BIN)/livecoins
	$(BIN)/python -m tests.sim.mutants

# The fuzz suite (tests/fuzz/) at length; make test runs 1,000 examples per entrypoint.
FUZZ_EXAMPLES ?= 20000
FUZZ_SECONDS ?= 3600
fuzz: $(BIN)/livecoins
	LIVECOINS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LIVECOINS_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		$(BIN)/pytest -q -s --timeout=0 tests/fuzz

bench: deps
	$(BIN)/pytest -q --timeout=0 -m benchmark -s tests/benchmarks

# --- Lambda bundles ----------------------------------------------------------------------
# The functions run python3.11 (template.yaml) and Lambda cannot write bytecode, so the build
# ships __pycache__ compiled by that exact version (unchecked-hash: valid whatever the mtimes
# the zip keeps) and refuses any other interpreter.
LAMBDA_PYTHON := 3.11
LAMBDA_CODE := schema resolvers infra handlers
AWS_WHEELS := --platform manylinux2014_aarch64 --implementation cp \
	--python-version $(LAMBDA_PYTHON) --only-binary=:all:
PIP_TARGET := -m pip install --quiet --no-warn-conflicts --disable-pip-version-check \
	--root-user-action=ignore --requirement requirements.txt --target

define check_lambda_python
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(None if v == "$(LAMBDA_PYTHON)" else "the functions run python$(LAMBDA_PYTHON) (template.yaml); $(PYTHON) is " + v + ": build with PYTHON=python$(LAMBDA_PYTHON)")'
endef

# The four packages without the checkout's bytecode and the local-only code and assets.
define copy_code
	mkdir -p "$(1)"
	cp -r $(LAMBDA_CODE) "$(1)/"
	rm -rf "$(1)/handlers/static" "$(1)/handlers/engine_launcher.py" "$(1)/handlers/dev_tokens.py" \
		"$(1)/infra/dynamo_http.py" "$(1)"/*/__pycache__
endef

define compile
	$(PYTHON) -m compileall -q -f -j 0 --invalidation-mode unchecked-hash $(1)
endef

# `sam build` calls these (BuildMethod: makefile): the code and requirements.txt only, with
# wheels for the functions' platform (arm64), compiled by python3.11.
build-GraphQLFunction build-PayoutsFunction build-GiftFeedSocketFunction build-GiftFeedFanOutFunction \
build-GiftFeedPostFunction build-StoreCatchUpFunction:
	$(check_lambda_python)
	$(call copy_code,$(ARTIFACTS_DIR))
	$(PYTHON) $(PIP_TARGET) "$(ARTIFACTS_DIR)" $(AWS_WHEELS)
	$(call compile,"$(ARTIFACTS_DIR)")

# The same bundle for the local cloud, whose functions run on this machine (x86_64 or not):
# dependencies are rebuilt only when requirements.txt changes.
CLOUD_BUILD := build/local-cloud
$(CLOUD_BUILD)/deps.stamp: requirements.txt
	$(check_lambda_python)
	rm -rf $(CLOUD_BUILD)/deps
	$(PYTHON) $(PIP_TARGET) $(CLOUD_BUILD)/deps --only-binary=:all:
	$(call compile,$(CLOUD_BUILD)/deps)
	@touch $@

$(CLOUD_BUILD)/bundle.zip: $(CLOUD_BUILD)/deps.stamp $(shell find $(LAMBDA_CODE) -name '*.py')
	$(check_lambda_python)
	rm -rf $(CLOUD_BUILD)/stage $@
	cp -r $(CLOUD_BUILD)/deps $(CLOUD_BUILD)/stage
	$(call copy_code,$(CLOUD_BUILD)/stage)
	$(call compile,$(CLOUD_BUILD)/stage/schema $(CLOUD_BUILD)/stage/resolvers $(CLOUD_BUILD)/stage/infra $(CLOUD_BUILD)/stage/handlers)
	cd $(CLOUD_BUILD)/stage && zip -qr -1 ../bundle.zip .
	rm -rf $(CLOUD_BUILD)/stage

clean:
	rm -rf $(VENV) $(ENGINE_VENV) $(CHECKOV_VENV) build .pytest_cache .mypy_cache .ruff_cache
