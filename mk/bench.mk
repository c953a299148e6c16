# The benchmark of Archway against nginx (bench/, docs/benchmarks.md). Not part of `make test`:
# it takes the machine over for a while. The root Makefile's `bench` target is the Go
# microbenchmarks; these compare whole proxies.
#
#   make bench-quick   rough answer in under 2 minutes: placement A, plain, rate limit, cache and
#                      open-loop latency, 3 runs of 2 s (results in bench/results/quick/)
#   make bench-nginx   every scenario, both placements, 5 runs of 5 s after a warm-up, CPU and
#                      heap profiles; results in bench/results/, docs/benchmarks.md updated
#                      (about 25 minutes)
# BENCH_FLAGS adds flags to either, e.g. BENCH_FLAGS='-scenarios plain,cache -runs 7'.

BENCH_FLAGS ?=
BENCH_BINS  := $(BIN)/gateway $(BIN)/products $(BIN)/archway-bench $(BIN)/gateway-pprof

.PHONY: bench-build bench-nginx bench-quick
bench-build:
	$(GO) build -o $(BIN)/ ./gateway ./backends/products ./bench/cmd/archway-bench ./bench/cmd/gateway-pprof

bench-nginx: system-deps bench-build ## benchmark against nginx: every scenario, both placements (~25 min)
	$(BIN)/archway-bench run -repo . -bin $(BIN) -results bench/results -profile -docs docs/benchmarks.md $(BENCH_FLAGS)

bench-quick: system-deps bench-build ## rough benchmark against nginx in under 2 minutes
	$(BIN)/archway-bench run -repo . -bin $(BIN) -results bench/results/quick -quick $(BENCH_FLAGS)
