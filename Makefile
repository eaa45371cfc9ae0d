# resnet-job — one entry point per task; `make help` lists them. Targets that need Python set up
# the venv first. Every target has a `## name: text` line: that is what `make help` prints.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

.DEFAULT_GOAL := help
.PHONY: help venv run test test-gpu lint format bench reproduce gpu-data wheels gpu-campaign \
	soak search dashboard clean optuna-suite

## help: list the targets with one line each
help:
	@echo "usage: make TARGET [VAR=value ...]   (job variables such as DATA_URL or EPOCHS: see docs/contract.md)"
	@awk '/^## [A-Za-z0-9_.\/-]+: / { name = $$2; sub(/:$$/, "", name); text = $$0; \
	  sub(/^## [^:]+: /, "", text); printf "  %-20s %s\n", name, text }' $(MAKEFILE_LIST)

## venv: create .venv and install the project with its dev tools (again when pyproject.toml changes)
venv: $(VENV)/.installed

# pip takes torch 2.14.1 / torchvision 0.29.1 from this machine's disk when offered.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,examples]'
	touch $@

## run: one training run configured by environment variables (docs/contract.md); writes OUTPUT_DIR (output)
run: venv
	$(PY) -m job

# Tests marked gpu need CUDA: never part of `make test` (docs/development.md), run by `make test-gpu`.
PYTEST_ARGS ?=

# Two workers (pytest-xdist): most tests wait on processes, sleeps and services, so two
# workers fill the 2 cores CI has; a file's tests share a worker, so its module fixtures are
# made once. TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2

## test: make lint, then every test except those marked gpu (real HTTP, processes, signals, services)
test: lint
	$(PY) -m pytest -m "not gpu" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Optuna's own storage tests, from the installed Optuna's source distribution (its licence
# beside them); `make test` runs them against the project's storage (tests/search/optuna_suite).
OPTUNA_SUITE := .ci/cache/optuna-suite

## optuna-suite: fetch the installed Optuna's storage tests into .ci/cache (make test runs them)
optuna-suite: venv
	@set -e; \
	version="$$($(PY) -c 'import optuna; print(optuna.__version__)')"; \
	rm -rf $(OPTUNA_SUITE); mkdir -p $(OPTUNA_SUITE); \
	$(PY) -m pip download -q --no-binary :all: --no-deps -d $(OPTUNA_SUITE) "optuna==$$version"; \
	tar -xzf $(OPTUNA_SUITE)/optuna-$$version.tar.gz -C $(OPTUNA_SUITE) --strip-components=1 \
	  optuna-$$version/LICENSE optuna-$$version/tests/storages_tests; \
	rm $(OPTUNA_SUITE)/optuna-$$version.tar.gz; \
	echo "Optuna $$version's storage tests in $(OPTUNA_SUITE)"

## test-gpu: only the tests marked gpu, tests/gpu (they skip with a reason without CUDA); in .venv if there is one, else offline in $(PYTHON)
test-gpu:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m pytest -m gpu -p no:cacheprovider tests/gpu $(PYTEST_ARGS)

## lint: ruff check, ruff format --check, mypy (job/ search/ bench/) and hadolint Dockerfile
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

## format: apply ruff's fixes and formatting
format: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

## bench: side-by-side benchmark against the tutorial's own pipeline (DATA_URL: the archive, fetched once)
BENCH_ARGS ?=
bench: venv
	@archive="$$($(PY) -m bench.paths)" && $(PY) -m bench --archive "$$archive" $(BENCH_ARGS)

## reproduce: the full tutorial recipe on the real archive (DATA_URL); final val_acc beside the tutorial's
reproduce: venv
	$(PY) -m bench.reproduce

## gpu-data: a real, class-balanced CIFAR-10 subset (15,000/5,000) of DATA_URL's archive for an offline GPU machine, in .gl/
gpu-data: venv
	@archive="$$($(PY) -m bench.paths)" && \
	  $(PY) -m bench.subset --archive "$$archive" --train 15000 --test 5000 --out .gl/cifar10-subset.tgz

## wheels: optuna and its dependencies as wheels in .whl/, for an offline GPU machine (docs/benchmarks.md)
wheels:
	bash bench/wheels.sh .whl

## gpu-campaign: the GPU campaign on the GPU machine (its python3, offline), results in output/gpu-campaign (GPU_CAMPAIGN_ARGS)
GPU_CAMPAIGN_ARGS ?=
gpu-campaign:
	PIP_NO_INDEX=1 $(PYTHON) -m bench --gpu --out output/gpu-campaign $(GPU_CAMPAIGN_ARGS)

## soak: the long chaos soak of the search (60 trials, 3 drivers, real faults; not part of make test); report in output/soak-chaos
soak: venv
	$(PY) -m pytest -m soak -s -p no:cacheprovider tests/soak $(PYTEST_ARGS)

## search: tune with Optuna (TRIALS=20 STUDY=resnet-job SEARCH_ARGS='--launcher docker --job-env EPOCHS=4')
TRIALS      ?= 20
# The study's name, here and in the k8s targets: the search's default (--study-name).
STUDY       ?= resnet-job
SEARCH_ARGS ?=
SEARCH_OUTPUT ?= output/search
search: venv
	$(PY) -m search run --trials $(TRIALS) --study-name $(STUDY) --output $(SEARCH_OUTPUT) $(SEARCH_ARGS)

## dashboard: optuna-dashboard for the search at http://127.0.0.1:8080/dashboard (DASHBOARD_PORT)
DASHBOARD_PORT ?= 8080
dashboard: venv
	$(PY) -m search dashboard --output $(SEARCH_OUTPUT) --port $(DASHBOARD_PORT) $(DASHBOARD_ARGS)

# ---- container image and Kubernetes (docs/docker.md, docs/kubernetes.md) ----
IMAGE        ?= resnet-job
# Empty: the Dockerfile's default (the official PyTorch CUDA runtime image). CI passes a stand-in.
BASE_IMAGE   ?=
GIT_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Host networking lets the build reach the package index wherever the host can.
DOCKER_BUILD_FLAGS ?= --network host
REGISTRY     ?=
KUBECTL      ?= $(if $(wildcard $(VENV)/bin/kubectl),$(VENV)/bin/kubectl,kubectl)
K8S_NAMESPACE ?= resnet-job
# The image the cluster pulls: $(REGISTRY)/resnet-job:$(VERSION) once pushed there.
K8S_IMAGE    ?= $(if $(REGISTRY),$(REGISTRY)/)$(IMAGE):$(VERSION)
BEST_CONFIGMAP ?= resnet-job-best-params
# Where `k8s-best-configmap` writes best_params.json, best.env and configmap.yaml.
BEST_OUTPUT  ?= output/k8s-best
PG_LOCAL_PORT ?= 15432
# Render k8s manifests with the image the cluster pulls.
K8S_RENDER   := sed 's|resnet-job:$(VERSION)|$(K8S_IMAGE)|g'

.PHONY: image push k8s-validate k8s-apply k8s-train k8s-search k8s-results k8s-dashboard k8s-best-configmap

## image: build resnet-job:<version> and resnet-job:latest (BASE_IMAGE=... to override the base)
image:
	docker build $(DOCKER_BUILD_FLAGS) \
	  $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  --build-arg VERSION=$(VERSION) --build-arg GIT_REVISION=$(GIT_REVISION) \
	  -t $(IMAGE):$(VERSION) -t $(IMAGE):latest .

## push: tag and push the image to REGISTRY (e.g. make push REGISTRY=registry.example.com/ml)
push:
	@test -n "$(REGISTRY)" || { echo "usage: make push REGISTRY=registry.example.com/team" >&2; exit 2; }
	docker tag $(IMAGE):$(VERSION) $(REGISTRY)/$(IMAGE):$(VERSION)
	docker push $(REGISTRY)/$(IMAGE):$(VERSION)

## k8s/postgres.env: the cluster's PostgreSQL password: random, created once, git-ignored, never printed
k8s/postgres.env:
	@umask 077; printf 'POSTGRES_PASSWORD=%s\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(24))')" > $@
	@echo "wrote $@ (a random PostgreSQL password; keep it, the database is initialised with it)"

## k8s-validate: kustomize + strict schema validation (Kubernetes 1.31 and newest) + policy tests
k8s-validate: venv
	$(PY) -m pytest -q tests/k8s

## k8s-apply: apply the stack (namespace, PVCs, PostgreSQL, RBAC, dashboard, CronJob)
k8s-apply: k8s/postgres.env
	$(KUBECTL) kustomize k8s | $(K8S_RENDER) | $(KUBECTL) apply -f -

## k8s-train: one training run as a Kubernetes Job (a new Job each time)
k8s-train:
	$(K8S_RENDER) k8s/job.yaml | $(KUBECTL) -n $(K8S_NAMESPACE) create -f -

## k8s-search: run the search driver in the cluster (TRIALS=20, STUDY=resnet-job; trials become Jobs)
k8s-search:
	$(K8S_RENDER) k8s/search-job.yaml \
	  | sed -e 's|- --trials=[0-9]*$$|- --trials=$(TRIALS)|' -e 's|- --study-name=.*$$|- --study-name=$(STUDY)|' \
	  | $(KUBECTL) -n $(K8S_NAMESPACE) create -f -

## k8s-results: copy the cluster's /output/search and /output/champion into output/k8s-results (a helper pod)
K8S_RESULTS ?= output/k8s-results
k8s-results:
	@set -e; mkdir -p $(K8S_RESULTS); \
	$(K8S_RENDER) k8s/results-pod.yaml | $(KUBECTL) -n $(K8S_NAMESPACE) apply -f - >/dev/null; \
	trap '$(KUBECTL) -n $(K8S_NAMESPACE) delete pod resnet-job-results --wait=false >/dev/null' EXIT; \
	$(KUBECTL) -n $(K8S_NAMESPACE) wait --for=condition=Ready pod/resnet-job-results --timeout=300s >/dev/null; \
	$(KUBECTL) -n $(K8S_NAMESPACE) exec resnet-job-results -- sh -c \
	  'cd /output && tar -ch --exclude=checkpoint.pt -f - $$(ls -d search champion 2>/dev/null)' \
	  | tar -x -C $(K8S_RESULTS); \
	echo "copied /output/search and /output/champion (checkpoints left out) into $(K8S_RESULTS)"

## k8s-dashboard: optuna-dashboard at http://127.0.0.1:8080 through kubectl port-forward
k8s-dashboard:
	$(KUBECTL) -n $(K8S_NAMESPACE) port-forward svc/optuna-dashboard 8080:8080

## k8s-best-configmap: the cluster study's best parameters as the ConfigMap the CronJob reads
# (through a port-forward to the in-cluster PostgreSQL; the password is read from the cluster's
# Secret and stays out of every command line)
k8s-best-configmap: venv
	@set -e; \
	pw="$$($(KUBECTL) -n $(K8S_NAMESPACE) get secret postgres -o jsonpath='{.data.POSTGRES_PASSWORD}' | base64 -d)"; \
	$(KUBECTL) -n $(K8S_NAMESPACE) port-forward svc/postgres $(PG_LOCAL_PORT):5432 >/dev/null & pf=$$!; \
	trap 'kill $$pf 2>/dev/null' EXIT; \
	for i in $$(seq 30); do \
	  $(PY) -c "import socket; socket.create_connection(('127.0.0.1', $(PG_LOCAL_PORT)), 1)" 2>/dev/null && break; \
	  sleep 1; \
	done; \
	SEARCH_STORAGE="postgresql+psycopg2://optuna:$$pw@127.0.0.1:$(PG_LOCAL_PORT)/optuna" \
	  $(PY) -m search best --configmap $(BEST_CONFIGMAP) --study-name $(STUDY) --output $(BEST_OUTPUT); \
	$(KUBECTL) -n $(K8S_NAMESPACE) apply -f $(BEST_OUTPUT)/configmap.yaml

## clean: delete output/ — every run, the search's study database and results, the champion — and the tool caches (CONFIRM=1; keeps .venv and data/)
CONFIRM ?=
clean:
	@if [ "$(CONFIRM)" != 1 ]; then \
	  echo "make clean deletes: output/ (every run's outputs, output/search with the study's" >&2; \
	  echo "  database study.db and its results, output/reproduce, any champion there)," >&2; \
	  echo "  .pytest_cache and .ruff_cache; it keeps .venv and data/." >&2; \
	  echo "Nothing was deleted: run 'make clean CONFIRM=1' to delete them." >&2; \
	  exit 2; \
	fi
	rm -rf output .pytest_cache .ruff_cache
	@echo "deleted output/ (runs, study database, results), .pytest_cache and .ruff_cache"
