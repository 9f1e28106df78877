# fmgate. `make help` lists the targets.
SHELL := bash
GO ?= go
MODULES := . e2e
BENCH_DURATION ?= 5s
BENCH_RATES ?= 200
BENCH_CHUNK_DELAY ?= 0s

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: run
run: ## run fmgate all in one (embedded default: memory stores, simulator, demo key)
	$(GO) run ./cmd/fmgate serve

.PHONY: build
build: ## build bin/fmgate
	CGO_ENABLED=0 $(GO) build -o bin/fmgate ./cmd/fmgate

.PHONY: generate
generate: ## regenerate gen/ and the OpenAPI document from proto/ (buf, local plugins)
	./scripts/generate.sh

.PHONY: lint
lint: ## buf lint, gofmt and go vet on every module
	./scripts/lint.sh

.PHONY: test
test: ## run every module's tests with -race (set FMGATE_TEST_POSTGRES_URL / FMGATE_TEST_REDIS_URL for the store suites)
	@for m in $(MODULES); do (cd $$m && $(GO) test -race -count=1 -timeout 20m ./...) || exit 1; done

.PHONY: e2e
e2e: ## run only the end-to-end tests of the built binary (mesh, Jaeger)
	cd e2e && $(GO) test -race -count=1 -timeout 20m -v ./...

.PHONY: bench
bench: ## policy evaluation cost (50 rules), then the latency and allocations the gateway adds at fixed request rates (BENCH_RATES, BENCH_DURATION; Postgres variant with FMGATE_TEST_POSTGRES_URL)
	$(GO) test -run '^$$' -bench 'Evaluate$$' -benchtime 20000x ./services/policy
	$(GO) test -run '^$$' -bench 'Added.*Latency' -benchtime 1x ./cmd/fmgate -args -duration=$(BENCH_DURATION) -rates=$(BENCH_RATES) -chunk-delay=$(BENCH_CHUNK_DELAY)

.PHONY: up
up: ## run the mesh with docker compose (needs a Docker engine)
	docker compose up --build
