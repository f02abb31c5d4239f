# lrpdns: thin targets over hack/ scripts. `make help` lists them.
SHELL := /usr/bin/env bash
export VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export IMAGE_REPO ?= ghcr.io/lrpdns
export IMAGE_TAG ?= $(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/node-cache and bin/lrpdns (static, reproducible).
	hack/build.sh

.PHONY: test
test: ## Unit and integration tests (real kube-apiserver + etcd, real DNS servers on loopback).
	hack/test.sh

.PHONY: test-short
test-short: ## Unit tests only.
	go test -short ./...

.PHONY: fuzz
fuzz: ## Fuzz the kube-dns ConfigMap and zones file parsers for FUZZTIME each (default 30s).
	go test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-30s} ./pkg/nodecache/internal/kubednsconfig/
	go test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-30s} ./pkg/nodecache/internal/zones/

.PHONY: lint
lint: ## golangci-lint v2 (installed into bin/).
	hack/lint.sh

.PHONY: bench
bench: ## node-cache vs stock CoreDNS (QPS, p50/p99, CPU, RSS); full-cache RSS; controller convergence and RSS.
	hack/bench.sh

.PHONY: soak
soak: ## node-cache under hostile mixes in a 128 MiB memory cgroup, with a good client asking.
	hack/soak.sh

.PHONY: generate
generate: ## Regenerate RBAC and the rendered install manifest.
	hack/generate.sh

.PHONY: verify
verify: ## Fail if generated files, go.mod or formatting drifted; lint; vet the e2e suite.
	hack/verify.sh

.PHONY: set-image
set-image: ## Point manifests/ at IMAGE_REPO/{node-cache,lrpdns}:IMAGE_TAG and re-render install.yaml.
	go run ./hack/set-image $(IMAGE_REPO) $(IMAGE_TAG)
	hack/generate.sh

.PHONY: image
image: ## Build the node-cache and lrpdns images (needs a Docker engine).
	hack/image.sh

.PHONY: e2e
e2e: ## End-to-end proof on kind + Cilium + Hubble (a Docker engine, or root to start one).
	hack/e2e.sh

.PHONY: e2e-lab
e2e-lab: ## The same proof on a real Cilium agent in network namespaces (root, Linux, no Docker).
	hack/e2e-lab.sh
