# rdp-controller build tooling. `make run` and `make test` work on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv run session token test test-unit test-integration test-e2e test-faults lint openapi bench clean

help:
	@echo "make run               - the service on :8092 with the embedded MongoDB-compatible server, Redis, xrdp"
	@echo "                         (as root) and the RDP relay on 127.0.0.1:13389"
	@echo "make session           - with make run up: a desktop session, its session.rdp and its status changes"
	@echo "make token             - a development token (operator + service) for the API at /docs"
	@echo "make test              - lint, then the whole test suite (unit, integration, e2e)"
	@echo "make lint              - ruff and mypy"
	@echo "make openapi           - write openapi.yaml and the JSON schemas from the models (a test checks them)"
	@echo "make test-unit | test-integration | test-e2e - one tier"
	@echo "make test-faults       - the fault tier: MongoDB, Redis and a replica killed, flushed, hung under load"
	@echo "make bench             - benchmark scripts (print figures)"
	@echo "make image | up | down | logs | host-dirs - container image and compose deployment (needs Docker)"
	@echo "make test-containers   - the integration tier against MongoDB and Redis containers (needs Docker)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 not found (python3.11 or python3 on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "make: cannot create $(VENV): on Debian install the venv module: apt-get install python3-venv"; exit 1; }
	@echo "make: installing the project and its dev dependencies into $(VENV) (first run: a minute or two)"
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	@# setuptools' note that every editable install with a package-dir mapping gets is not a problem: hidden.
	@PYTHONWARNINGS='ignore:Editable installation:UserWarning' \
		$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@echo "make: $(VENV) is ready"
	@touch $(STAMP)

DEV_SECRET := .devstack/jwt-secret

$(DEV_SECRET):
	@mkdir -p .devstack
	@$(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))' > $@
	@chmod 600 $@

# The RDP relay of development: clients connect to 127.0.0.1:13389, and the .rdp files name it.
DEV_RELAY := RDP_CONTROLLER_RELAY_PORT=13389 RDP_CONTROLLER_RELAY_BIND=127.0.0.1 \
	RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS=127.0.0.1:13389

run: $(STAMP) $(DEV_SECRET)
	@echo "make: development JWT secret in $(DEV_SECRET); 'make token' mints an operator+service token"
	@JWT_SECRET_KEY=$${JWT_SECRET_KEY:-$$(cat $(DEV_SECRET))} $(DEV_RELAY) \
		$(BIN)/python -m common.devstack --service-port 8092 -- \
		$(BIN)/python -m uvicorn rdp_controller.main:create_app --factory --host 127.0.0.1 --port 8092

session: $(STAMP)
	@$(BIN)/python -m common.devsession --url http://127.0.0.1:8092 --secret-file $(DEV_SECRET)

token: $(STAMP) $(DEV_SECRET)
	@JWT_SECRET_KEY=$${JWT_SECRET_KEY:-$$(cat $(DEV_SECRET))} $(BIN)/python -m security.tokens mint \
		--sub dev-operator --roles operator --roles service --ttl 86400

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p .build/typecheck && ln -sfn ../../rdp-controller .build/typecheck/rdp_controller
	MYPYPATH=.build/typecheck $(BIN)/mypy -p rdp_controller -p common -p security -p protocol

test: lint
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

test-e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

test-faults: $(STAMP)
	$(BIN)/pytest tests/faults

openapi: $(STAMP)
	$(BIN)/python -m rdp_controller.api_document

bench: $(STAMP)
	@for script in tests/performance/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .build .pytest_cache .mypy_cache .ruff_cache *.egg-info

# --- container image and compose deployment (issue 7) ---
# image/up/down/logs need Docker with the buildx and compose plugins; test-containers also runs on
# podman. See docs/operations.md and docs/testing.md.
.PHONY: image up down logs host-dirs test-containers

# Image: `make image` builds both platforms and keeps the result in the build cache (a check);
# IMAGE_OUTPUT=--push publishes it, and on the Pi
# `make image IMAGE_PLATFORMS=linux/arm64 IMAGE_OUTPUT=--load` puts it in the local engine.
IMAGE ?= pickme/lucid-rdp-controller:latest-arm64
IMAGE_PLATFORMS ?= linux/arm64,linux/amd64
IMAGE_OUTPUT ?=
IMAGE_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

# Compose: host paths and env files live under LUCID_ROOT (the template's default below).
# PROFILE=demo adds the demo RDP host; SERVICES= (empty) means every service.
LUCID_ROOT ?= /mnt/myssd/Lucid/Lucid
ENV_DIR ?= $(LUCID_ROOT)/configs/environment
ENV_FILES := secrets foundation core application rdp-controller
PROFILE ?=
SERVICES ?= rdp-controller
COMPOSE = LUCID_ROOT=$(LUCID_ROOT) docker compose $(foreach f,$(ENV_FILES),--env-file $(ENV_DIR)/.env.$(f)) \
	$(if $(PROFILE),--profile $(PROFILE))
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)

image:
	docker buildx build \
		--platform $(IMAGE_PLATFORMS) \
		-f Dockerfile.rdp-controller \
		-t $(IMAGE) \
		--build-arg BUILD_DATE=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		--build-arg VCS_REF=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
		--build-arg VERSION=$(IMAGE_VERSION) \
		$(IMAGE_OUTPUT) .

up:
	$(COMPOSE) up -d $(SERVICES)

down:
	$(COMPOSE) down

logs:
	$(COMPOSE) logs -f --tail=200 $(SERVICES)

# The bind-mounted data and log directories, owned by the container user 65532:65532.
host-dirs:
	$(SUDO) mkdir -p $(LUCID_ROOT)/data/rdp-controller $(LUCID_ROOT)/logs/rdp-controller
	$(SUDO) chown -R 65532:65532 $(LUCID_ROOT)/data/rdp-controller $(LUCID_ROOT)/logs/rdp-controller
	$(SUDO) chmod 755 $(LUCID_ROOT)/data/rdp-controller $(LUCID_ROOT)/logs/rdp-controller

# The container tier (tests/containers/): builds the image with Docker, else podman (root; settings in
# tests/containers/containers.conf), runs it hardened against MongoDB and Redis containers, brings
# docker-compose.yml up (podman-compose without Docker) and runs the integration suite through
# testcontainers (RDP_TEST_BACKEND=testcontainers). Base and backend images no registry serves are
# built as stand-ins once and cached. Skips without an engine; fails instead under CI=true.
test-containers: $(STAMP)
	$(BIN)/pytest tests/containers
