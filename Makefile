# The two commands a newcomer needs: `make run` and `make test`.
GO      ?= go
PKGS    ?= ./...
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# nomsgpack leaves gin's MessagePack binding (ugorji/go/codec, 6 MB of the
# binary) out: the service binds JSON only. The Dockerfile and the binary
# harness (internal/benchbin) build with the same tags.
TAGS    := nomsgpack

.PHONY: run build test test-short fault bench bench-binary fuzz check fmt vet lint tidy clean

## run: build bin/notificationservice, then start it on the embedded defaults (SQLite in ./data, sandbox
## channels, log sink). The other commands (token, publish, ...) run the same binary: no re-link each time.
run: build
	@echo "==> starting bin/notificationservice serve on http://127.0.0.1:8080 (Ctrl-C stops it)"
	./bin/notificationservice serve

## build: build bin/notificationservice. -v names each package as it compiles, so the first build (every
## dependency, a few minutes on two cores) shows progress; later builds reuse Go's cache and take seconds.
build:
	@echo "==> building bin/notificationservice (the first build compiles every dependency: minutes; then seconds)"
	CGO_ENABLED=0 $(GO) build -v -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o bin/notificationservice ./cmd/notificationservice
	@echo "==> built bin/notificationservice ($(VERSION))"

## test: every test, with the race detector, against the local PostgreSQL and RabbitMQ; then the allocation-count
## tests again without it (the race detector allocates on its own account, so they skip under -race)
test:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	$(GO) test -count=1 -run 'Alloc|CostsNothing' ./internal/httpapi ./internal/metrics ./internal/tracing ./internal/macros ./internal/app ./internal/channels

## test-short: the fast subset (skips the long fault and soak tests)
test-short:
	$(GO) test -short -count=1 $(PKGS)

## fault: the process-level fault suite alone, with its figures table (docs/runbook.md, "Fault suite");
## FAULT_MESSAGES=10000 for the runbook's size
fault:
	$(GO) test -count=1 -v -timeout 30m -run '^TestFaults$$' ./internal/faulttest

## bench: the benchmarks in docs/benchmarks.md (needs PostgreSQL and RabbitMQ): first the built binary
## against bare baselines (bench-binary), then the in-process benchmarks, kept for profiling
bench: bench-binary
	$(GO) test -run '^$$' -bench . -skip '^BenchmarkBinary$$' -benchmem -count=1 -timeout 60m $(PKGS)

## bench-binary: build the binary, run it with its default configuration on a fresh database and queues of
## its own, and print its figures beside bare amqp091-go and Gin in one table (docs/benchmarks.md, "The built
## binary"). Sizes: BENCH_MESSAGES=5000 BENCH_RATE=1000 BENCH_SECONDS=5 BENCH_CONNS=64 by default.
## BENCH_SOAK_SECONDS=600 runs the soak instead: BENCH_SOAK_RATE msg/s (1000; three deliveries each) for that
## long, RSS min/max per BENCH_SOAK_WINDOW (60) s, flat or growing, and whether the service kept up.
## BENCH_PPROF_ADDR=127.0.0.1:6060 serves pprof on the drain's (or the soak's) process.
## BENCH_SERVICE_ENV="NOTIFY_RUNTIME_GC_PERCENT=50 ..." adds settings to the service's environment (A/B runs).
## BENCH_PROFILE_DIR=/tmp/prof writes CPU and allocation profiles of the drain and the REST send there.
## BENCH_PG_STATEMENTS=1 lists the REST send's statements from pg_stat_statements (a private cluster that loads it).
bench-binary:
	$(GO) test -run '^$$' -bench '^BenchmarkBinary$$' -benchtime 1x -count=1 -timeout 30m ./internal/benchbin

## fuzz: the fuzz targets, one after another, each for FUZZTIME (30s by default): the template
## renderer, and the HTTP API on SQLite and on PostgreSQL (docs/api.md). FUZZ_RENDER, FUZZ_API and
## FUZZ_API_PG set one target's budget, a duration or a count of runs (100000x).
FUZZTIME ?= 30s
FUZZ_RENDER ?= $(FUZZTIME)
FUZZ_API ?= $(FUZZTIME)
FUZZ_API_PG ?= $(FUZZTIME)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZ_RENDER) ./internal/macros
	$(GO) test -run '^$$' -fuzz '^FuzzAPI$$' -fuzztime $(FUZZ_API) ./internal/httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzAPIPostgres$$' -fuzztime $(FUZZ_API_PG) ./internal/httpapi

## check: what a reviewer runs: formatting, vet, tests
check: fmt vet test

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## lint: staticcheck at a pinned version (the first run fetches and builds it through the module proxy;
## later runs use the module and build caches). Not part of check or CI: those download nothing new.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) run $(STATICCHECK) $(PKGS)

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin data
