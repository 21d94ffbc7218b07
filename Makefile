# georeg — see README.md. `make run` starts a local mesh; `make test` passes the tests.
SHELL   := /bin/bash
GO      ?= go
BIN     := bin
TOOLS   := github.com/google/go-containerregistry/cmd/crane \
           github.com/regclient/regclient/cmd/regctl \
           oras.land/oras/cmd/oras \
           github.com/versity/versitygw/cmd/versitygw \
           github.com/distribution/distribution/v3/cmd/registry
# Fuzzing is bounded by executions, not by time: Go 1.26's fuzz coordinator can
# fail a run with a bare "context deadline exceeded" when a duration-based
# -fuzztime ends on a loaded machine (go.dev/issue/75804, fixed in Go 1.27).
# 200,000 executions take 2-7 s per target on a quiet machine (the ten targets,
# compiles included, 70 s); FuzzBlobStream runs a stream server per input and
# gets fewer. `make test` stays under CI's 30 minutes with them. FUZZTIME=30s
# still works by hand.
FUZZTIME ?= 200000x
export FUZZTIME_FuzzBlobStream ?= 10000x
PORT    ?= 5000
DIR     ?= .georeg

.PHONY: all build tools images run down test test-cluster unit e2e fuzz bench chaos proto lint clean

all: build

## build: bin/regiond bin/trafficmgr bin/georeg
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## tools: the third-party clients and servers the tests drive, at the versions pinned in tools/go.mod
tools:
	cd tools && $(GO) build -o ../$(BIN)/tools/ $(TOOLS)

## images: container images of regiond, trafficmgr and georeg (georeg/NAME:$(IMAGE_TAG)), built offline
# FROM scratch from static binaries (deploy/docker/*.Dockerfile): nothing is
# pulled, and the build context holds only the binary and a few files.
IMAGE_TAG ?= dev
IMAGES    := regiond trafficmgr georeg
IMGDIR    := $(BIN)/images
images:
	@command -v docker >/dev/null || { echo "images: the docker CLI is missing"; exit 1; }
	@set -e; for b in $(IMAGES); do \
	  ctx=$(IMGDIR)/$$b; rm -rf $$ctx; mkdir -p $$ctx/rootfs/etc $$ctx/rootfs/tmp $$ctx/empty; \
	  chmod 1777 $$ctx/rootfs/tmp; cp deploy/docker/passwd deploy/docker/group $$ctx/rootfs/etc/; \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(IMAGE_TAG)" -o $$ctx/$$b ./cmd/$$b; \
	  DOCKER_BUILDKIT=0 docker build -q -f deploy/docker/$$b.Dockerfile -t georeg/$$b:$(IMAGE_TAG) $$ctx >/dev/null; \
	done
	@docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^georeg/($(subst $(eval) ,|,$(IMAGES))):$(IMAGE_TAG)\b' | sort

## run: build and start a local mesh: 3 regions x 3 zones, the simulated WAN and the traffic manager on localhost:$(PORT) (stop it with `make down`)
run: build
	$(BIN)/georeg mesh up --dir $(DIR) --port $(PORT)
	@echo
	@echo "georeg is up at localhost:$(PORT) (clients there are in westus; eastus: localhost:$$(($(PORT)+1)), westeurope: localhost:$$(($(PORT)+2)))"
	@echo "  docker pull busybox && docker tag busybox localhost:$(PORT)/demo/busybox:1"
	@echo "  docker push localhost:$(PORT)/demo/busybox:1 && docker pull localhost:$(PORT)/demo/busybox:1"
	@echo "routing, nodes and regions: $(BIN)/georeg mesh status --dir $(DIR); replications: $(BIN)/georeg replication list --dir $(DIR)"
	@echo "faults: $(BIN)/georeg chaos kill-region westus --dir $(DIR); $(BIN)/georeg chaos latency westus eastus 300ms --dir $(DIR)"

down:
	$(BIN)/georeg mesh down --dir $(DIR)

## test: everything CI runs: vet, unit tests, end-to-end tests with real clients, a short fuzz run
# The end-to-end tests in test/ run with -v so that their figures (conformance
# counts, failover and convergence times) reach the log; passing subtests'
# RUN/PASS lines are filtered out. The full output is in $(TESTLOG). They run
# one package at a time (-p 1): each starts meshes of up to 10 processes, and
# two at once on two cores starve Raft heartbeats into elections and 503s.
TESTLOG ?= test-e2e.log
test: build tools images
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m $$($(GO) list ./... | grep -v /test/)
	set -o pipefail; $(GO) test -p 1 -count=1 -timeout 20m -v ./test/... 2>&1 | tee $(TESTLOG) | \
	  grep -vE '^\s*(=== (RUN|PAUSE|CONT|NAME)|--- PASS|PASS$$)'
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

## test-cluster: the container cluster's end-to-end test alone (test/cluster: cluster up, conformance, docker/crane/skopeo, kill, partition, replace, down)
test-cluster: build tools images
	$(GO) test -count=1 -timeout 15m -v ./test/cluster

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$spec/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    n=$$(printenv FUZZTIME_$$f || echo $(FUZZTIME)); \
	    echo "fuzz $$spec $$f ($$n)"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $$n $$spec || exit 1; \
	  done; \
	done

## bench: throughput and latency against the CNCF distribution registry, as a table
bench: build tools
	$(GO) run ./test/bench

## chaos: every chaos scenario (test/chaos; under 30 minutes), then the scoreboard; RUN=name runs one; TLS=1 serves the endpoint over HTTPS (mesh up --tls)
# Writes $(CHAOSDIR)/scoreboard.json and .md and the full log, and prints the
# Markdown table last, also when a scenario failed (make then fails).
CHAOSDIR ?= chaos-results
RUN      ?=
TLS      ?=
chaos: build
	@rm -rf $(CHAOSDIR) && mkdir -p $(CHAOSDIR)
	@set -o pipefail; GEOREG_CHAOS=full GEOREG_CHAOS_RESULTS=$(abspath $(CHAOSDIR)) GEOREG_CHAOS_TLS=$(TLS) \
	  $(GO) test -count=1 -timeout 40m -v -run 'TestChaos/$(RUN)' ./test/chaos 2>&1 | tee $(CHAOSDIR)/chaos.log | \
	  grep -E '^\s*(--- |=== RUN|ok |FAIL|PASS$$|\S+_test\.go:[0-9]+:|scenario\.go:[0-9]+: (scenario|fault|heal|note|missed|target|converged|not converged|failed op|history|I[1-7][ :]|[a-z-]+: [0-9]+ faults))'; \
	  status=$$?; echo; cat $(CHAOSDIR)/scoreboard.md 2>/dev/null || echo "no scoreboard written (see $(CHAOSDIR)/chaos.log)"; exit $$status

## proto: regenerate the committed gRPC code (needs protoc: apt-get install -y protobuf-compiler)
proto:
	@command -v protoc >/dev/null || { echo "protoc is missing: apt-get install -y protobuf-compiler"; exit 1; }
	cd tools && $(GO) build -o ../$(BIN)/tools/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	cd proto && for f in *.proto; do \
	  pkg=$$(sed -n 's|^option go_package = "github.com/georeg/georeg/proto/\(.*\)";|\1|p' $$f); \
	  PATH=$(CURDIR)/$(BIN)/tools:$$PATH protoc --go_out=$$pkg --go_opt=paths=source_relative \
	    --go-grpc_out=$$pkg --go-grpc_opt=paths=source_relative $$f || exit 1; \
	done

## lint: gofmt, go vet and staticcheck (pinned in tools/go.mod)
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || (gofmt -l . ; exit 1)
	$(GO) vet ./...
	$(GO) test -count=1 ./test/layers
	cd tools && $(GO) build -o ../$(BIN)/tools/ honnef.co/go/tools/cmd/staticcheck
	$(BIN)/tools/staticcheck ./...

clean:
	rm -rf $(BIN)
