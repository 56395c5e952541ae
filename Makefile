# The single source of bulkstream's commands. `make help` lists them.
#
# KAFKA_BOOTSTRAP_SERVERS and REDIS_URL point everything at the services; when
# neither is set, `make test` and `make demo` start the local stack (`make up`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SERVICES := deploy/local/services.sh
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
# The image `make image` builds; docker-compose.yml and deploy/kubernetes/ name it.
IMAGE ?= bulkstream:$(VERSION)
CLUSTER := deploy/local/cluster.sh

ifeq ($(strip $(KAFKA_BOOTSTRAP_SERVERS)$(REDIS_URL)),)
LOCAL_STACK := up
LOCAL_REDIS := redis-up
export KAFKA_BOOTSTRAP_SERVERS := 127.0.0.1:9092
export REDIS_URL := redis://127.0.0.1:6379/0
endif

.DEFAULT_GOAL := help
.PHONY: help venv native up down status test lint fmt schemas demo bench chaos image image-name image-test clean \
	redis-up cluster-up cluster-down cluster-status chaos-cluster

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create the virtualenv and install bulkstream with its dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The native module in Rust (native/, PyO3): the fan-out's page expansion, the
# ingest's reads, the delivery fold and the feeds' Kafka reader; without it each
# runs in Python, the same results slower. Needs cargo (rustup), a C compiler and
# make: librdkafka is built from the sources the rdkafka crate bundles.
NATIVE_WHEELS := native/target/wheels

native: $(VENV)/.native ## build the native module (Rust, maturin; librdkafka from source) into the virtualenv

$(VENV)/.native: $(VENV)/.installed native/Cargo.toml native/pyproject.toml \
		native/bulkstream_native.pyi $(wildcard native/src/*.rs)
	@command -v cargo >/dev/null || { echo "make native: cargo is missing (install Rust with rustup)" >&2; exit 1; }
	rm -rf $(NATIVE_WHEELS)
	$(BIN)/maturin build --quiet --release -m native/Cargo.toml \
		--interpreter $(BIN)/python --out $(NATIVE_WHEELS)
	$(BIN)/pip install --quiet --force-reinstall --no-deps $(NATIVE_WHEELS)/bulkstream_native-*.whl
	touch $@

up: venv ## start local Kafka (KRaft) and Redis in the background; harmless if running
	PYTHON=$(BIN)/python $(SERVICES) up

down: ## stop the local Kafka and Redis that `make up` started
	$(SERVICES) down

status: ## say whether the local Kafka and Redis are running
	$(SERVICES) status

test: venv native $(LOCAL_STACK) ## install, start the services and run the whole suite
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure here" >&2; exit 1; fi; \
	exit $$rc

lint: venv ## ruff, mypy (strict on streams and schemas), the layer contracts (import-linter), rustfmt
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	cargo fmt --manifest-path native/Cargo.toml --check

fmt: venv ## format the code with ruff and rustfmt
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	cargo fmt --manifest-path native/Cargo.toml

schemas: venv ## export the JSON Schemas of the wire contracts to schemas/json/
	$(BIN)/python -m schemas.export

DEMO_USERS ?= 100000
# DEMO_RATE=5000: run the job at most that many sends a second (its ETA follows the limit)
DEMO_RATE ?=

demo: venv native $(LOCAL_STACK) ## the main job: 2 workers + API, a job of DEMO_USERS (100000) users over HTTP, live progress
	$(BIN)/bulkstream demo --users $(DEMO_USERS) $(if $(DEMO_RATE),--rate $(DEMO_RATE))

BENCH_ARGS ?=

bench: venv native $(LOCAL_STACK) ## the benchmark suite against the local stack; writes docs/benchmarks.md (BENCH_ARGS="--users 200000")
	$(BIN)/python -m bench $(BENCH_ARGS)

CHAOS_ARGS ?=

chaos: venv native $(LOCAL_STACK) ## the reliability suite: faults on 200k-user jobs; writes docs/reliability.md (CHAOS_ARGS="--users 50000")
	$(BIN)/python -m chaos $(CHAOS_ARGS)

image: venv native ## build the container image bulkstream:<version> with docker or podman (no registry: a Debian base, wheels from .venv)
	IMAGE=$(IMAGE) PYTHON=$(BIN)/python deploy/image/build.sh

image-name: ## print the image's name and tag
	@echo $(IMAGE)

IMAGE_TEST_ARGS ?=

image-test: venv $(LOCAL_STACK) image ## build the image; 2 worker + 1 API containers: SDK flow, 100k job, a worker SIGKILLed
	$(BIN)/python -m tests.image --image $(IMAGE) $(IMAGE_TEST_ARGS)


redis-up: ## start only the local Redis (harmless if running)
	$(SERVICES) redis-up

cluster-up: venv ## three local KRaft brokers (127.0.0.1:19092,19192,19292; state in .local/cluster/)
	PYTHON=$(BIN)/python $(CLUSTER) up

cluster-down: ## stop the three brokers that `make cluster-up` started
	$(CLUSTER) down

cluster-status: ## say whether each of the three brokers is running
	$(CLUSTER) status

chaos-cluster: venv native cluster-up $(LOCAL_REDIS) ## broker faults on the 3-broker cluster (replication 3, min ISR 2); writes its section of docs/reliability.md
	KAFKA_BOOTSTRAP_SERVERS=$$($(CLUSTER) bootstrap) \
	BULKSTREAM_REPLICATION_FACTOR=$${BULKSTREAM_REPLICATION_FACTOR:-3} \
	BULKSTREAM_MIN_INSYNC_REPLICAS=$${BULKSTREAM_MIN_INSYNC_REPLICAS:-2} \
	$(BIN)/python -m chaos --cluster $(CHAOS_ARGS)

clean: down cluster-down ## stop services and remove all local state (.local/)
	rm -rf .local
