# btfu — see README.md. `make demo` runs it on a throwaway database;
# `make test` runs every test against real PostgreSQL and S3 servers.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/btfu/btfu/cli.Version=$(VERSION) -X github.com/btfu/btfu/cli.Commit=$(COMMIT)
BIN     := bin/btfu

.PHONY: build test lint bench demo clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) .

# Everything, including the PostgreSQL- and S3-backed suites; the test
# harness starts the servers itself (see DEVELOPERS.md).
test: lint
	$(GO) test -count=1 -timeout 15m ./...

lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks start their own servers and print a comparison table
# (internal/bench: btfu vs pg_recvlogical vs a native subscription).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -benchmem -timeout 60m ./...

demo: build
	./scripts/demo.sh

clean:
	rm -rf bin .demo
