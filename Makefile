GO      ?= go
BIN     := bin
PKGS    := ./...
# The race detector slows raft several-fold on 2 cores; tests wait on
# conditions with generous deadlines, so they stay correct, only slower.
TESTFLAGS ?= -race -count=1 -timeout 8m

.PHONY: build sink run stop test test-ui test-short fuzz lint bench bench-go scale clean

build:
	$(GO) build -o $(BIN)/tallyd ./cmd/tallyd
	$(GO) build -o $(BIN)/tally ./cmd/tally
	$(GO) build -o $(BIN)/tally-lazyfs ./cmd/tally-lazyfs

## sink: build tally-sync-postgres (own module: the PostgreSQL driver stays out of tally), which `tally sync postgres` runs.
sink:
	cd sink && $(GO) build -o ../$(BIN)/tally-sync-postgres ./cmd/tally-sync-postgres

## run: start a 3-node local cluster (scripts/cluster.sh up) and print examples.
run: build
	scripts/cluster.sh up 3
	@echo
	@echo "tally is running: 3 nodes, HTTP on 127.0.0.1:7070, :7080, :7090. Try:"
	@echo "  curl -s -XPOST 127.0.0.1:7070/v1/counters/likes:post:42/incr"
	@echo "  curl -s -XPOST 127.0.0.1:7080/v1/counters/likes:post:42/incr -d '{\"delta\": 5}'"
	@echo "  curl -s 127.0.0.1:7090/v1/counters/likes:post:42"
	@echo "  export TALLY_ADDR=$$(scripts/cluster.sh addrs); bin/tally cluster"
	@echo "Stop it with: make stop   (or scripts/cluster.sh down)"

stop:
	scripts/cluster.sh down

## test: vet, unit and cluster tests with -race, a short fuzz run, and the process-level test.
test: build
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)
	# The bench/ module (peer drivers, own go.mod): unit tests only, no servers.
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	# The sink/ module: tally-sync-postgres against a real PostgreSQL and cluster.
	cd sink && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...
	$(MAKE) test-ui
	$(MAKE) fuzz FUZZTIME=8s

## test-ui: the dashboard in headless Chromium against a 3-node cluster (the uitest/ module; skips without chromium).
test-ui:
	cd uitest && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m -v ./...

# Every decoder that reads what a client, a peer or a disk sends, as
# package:target. Crashers found are kept in the package's
# testdata/fuzz/<target>, so every `go test` runs them again.
FUZZ_TARGETS := fsm:FuzzDecodeEntry fsm:FuzzRestore fsm:FuzzApply resp:FuzzReader \
	transport:FuzzFrameDecoder forward:FuzzDecodeRequests httpapi:FuzzRouter
FUZZTIME ?= 5m

## fuzz: run every fuzz target for FUZZTIME (default 5m each; make test runs each briefly).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in ./$${t%%:*} for $(FUZZTIME)"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/ 2>&1) || { echo "$$out"; exit 1; }; \
		echo "$$out" | tail -n 1; \
	done

test-short:
	$(GO) test -short -count=1 $(PKGS)

lint:
	gofmt -l . | (! grep .)
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)
	cd bench && $(GO) vet ./... && staticcheck ./...
	cd sink && $(GO) vet ./... && staticcheck ./...
	cd uitest && $(GO) vet ./... && staticcheck ./...

## bench: tally side by side with Redis, PostgreSQL, etcd and a bare HTTP server, then tally over RESP against Redis with redis-benchmark (scripts/bench.sh).
bench: build
	scripts/bench.sh

## scale: memory per counter and per idempotency key, snapshot, restart and catch-up times (scripts/scale.sh; COUNTERS=, KEYS=).
scale: build
	scripts/scale.sh $(or $(COUNTERS),1000000) $(or $(KEYS),300000)

## bench-go: the Go benchmarks of the hot paths, with allocations.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN)
