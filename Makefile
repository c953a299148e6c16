# Archway. `make help` lists the targets; `make run` and `make test` are the two that matter.
# Areas add their own targets in mk/*.mk and hook into the aggregate targets below through
# DEPS_TARGETS, TEST_TARGETS, TEST_GO_PREREQS and RUN_PREREQS.
SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help
GO           ?= go
BIN          := $(CURDIR)/bin
export PATH  := $(BIN):$(PATH)
export GOFLAGS ?= -buildvcs=false

DEPS_TARGETS :=
TEST_TARGETS :=
RUN_PREREQS  :=
TEST_GO_PREREQS :=

include $(sort $(wildcard mk/*.mk))

.PHONY: help deps test test-go test-alloc lint fmt-check vet staticcheck fuzz bench build run run-consul

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: $(DEPS_TARGETS) ## install or build everything the tests need (idempotent)

build: ## build every binary into ./bin
	$(GO) build -o $(BIN)/ ./gateway ./backends/... ./internal/stack/cmd/stack

vet: ## go vet
	$(GO) vet ./...

staticcheck: $(BIN)/staticcheck ## staticcheck
	$(BIN)/staticcheck ./...

lint: fmt-check vet staticcheck ## gofmt, go vet and staticcheck

fmt-check: ## fail when a Go file is not as gofmt writes it
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './storefront/*')); \
	  if [ -n "$$out" ]; then echo "not gofmt'ed (run gofmt -w):"; echo "$$out"; exit 1; fi

test-go: $(TEST_GO_PREREQS) ## go test -race -shuffle=on ./...
	$(GO) test -race -shuffle=on -timeout 20m ./...

# Allocation counts mean nothing under the race detector (it makes sync.Pool drop objects on
# purpose), so the tests that hold the hot path at zero allocations are built with !race and
# run here, without it.
test-alloc: ## the zero-allocation tests, without the race detector
	$(GO) test -count=1 -run 'AllocatesNothing' ./...

test: deps lint test-go test-alloc $(TEST_TARGETS) ## the full suite, as CI runs it

FUZZTIME ?= 20s
fuzz: ## run every fuzz target for FUZZTIME each (default 20s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

run: build $(RUN_PREREQS) ## start the whole stack: gateway on :8080, admin on 127.0.0.1:9901
	$(BIN)/stack -bin $(BIN) -data data -config routes.yaml

run-consul: build $(BIN)/consul $(RUN_PREREQS) ## the same stack, with a Consul agent: services register, the gateway discovers them
	$(BIN)/stack -bin $(BIN) -data data -config routes.consul.yaml -consul

bench: ## microbenchmarks with allocations (the nginx comparison is bench-nginx)
	$(GO) test -run '^$$' -bench . -benchmem ./...
