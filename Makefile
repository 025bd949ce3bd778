# Two commands on a fresh machine with python3, git and make:
#   make serve   local GraphQL server with GraphiQL on an embedded DynamoDB engine
#   make test    lint, types, template checks and the whole test suite
PYTHON ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
BIN := $(VENV)/bin
MINISTACK_VERSION := 1.5.33

.PHONY: serve test lint typecheck cfn pytest schema seed bench sim fuzz clean deps \
	build-GraphQLFunction build-PayoutsFunction

$(BIN)/livecoins: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# ministack pins graphql-core 3.2, strawberry needs 3.3: the engine gets its own venv and
# runs as a child process of the local server.
$(ENGINE_VENV)/bin/ministack:
	$(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install --quiet ministack==$(MINISTACK_VERSION)
	@touch $@

deps: $(BIN)/livecoins $(ENGINE_VENV)/bin/ministack

serve: deps
	$(BIN)/livecoins serve

seed: deps
	$(BIN)/livecoins seed

test: deps lint typecheck cfn pytest

lint: $(BIN)/livecoins
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/livecoins
	$(BIN)/mypy

cfn: $(BIN)/livecoins
	$(BIN)/cfn-lint template.yaml

pytest: deps
	$(BIN)/pytest -q

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

# The fuzz suite (tests/fuzz/) at length; make test runs 1,000 examples per entrypoint.
FUZZ_EXAMPLES ?= 20000
FUZZ_SECONDS ?= 3600
fuzz: $(BIN)/livecoins
	LIVECOINS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LIVECOINS_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		$(BIN)/pytest -q -s tests/fuzz

bench: deps
	$(BIN)/pytest -q -m benchmark -s tests/benchmarks

# `sam build` calls these (BuildMethod: makefile): the four packages and requirements.txt only,
# with wheels for the functions' runtime (python3.12 on arm64), not this machine's.
build-GraphQLFunction build-PayoutsFunction:
	cp -r schema resolvers infra handlers "$(ARTIFACTS_DIR)/"
	rm -rf "$(ARTIFACTS_DIR)/handlers/static" "$(ARTIFACTS_DIR)/handlers/engine_launcher.py" \
		"$(ARTIFACTS_DIR)"/*/__pycache__
	$(PYTHON) -m pip install --quiet --target "$(ARTIFACTS_DIR)" --requirement requirements.txt \
		--platform manylinux2014_aarch64 --implementation cp --python-version 3.12 \
		--only-binary=:all: --no-warn-conflicts --root-user-action=ignore

clean:
	rm -rf $(VENV) $(ENGINE_VENV) .pytest_cache .mypy_cache .ruff_cache
