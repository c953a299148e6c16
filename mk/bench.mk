# The benchmark of Archway against its peers, nginx, HAProxy and Caddy (bench/,
# docs/benchmarks.md). Not part of `make test`: it takes the machine over for a while. The root
# Makefile's `bench` target is the Go microbenchmarks; these compare whole proxies.
#
#   make bench-quick   rough answer in about 3.5 minutes: placement A, plain, rate limit, cache,
#                      open-loop latency and tracing on against off, 3 runs of 2 s, system calls
#                      per request (results in bench/results/quick/)
#   make bench-nginx   every scenario, both placements, 5 runs of 5 s after a warm-up, CPU and
#                      heap profiles; results in bench/results/, docs/benchmarks.md updated
#                      (about 90 minutes, estimated from the scenario lengths)
# BENCH_FLAGS adds flags to either, e.g. BENCH_FLAGS='-scenarios plain,cache -runs 7'.

BENCH_FLAGS ?=
BENCH_BINS  := $(BIN)/gateway $(BIN)/products $(BIN)/archway-bench $(BIN)/gateway-pprof

# The peers and tools the benchmark and its configuration tests use (bench/haproxyconf and
# bench/caddyconf run `haproxy -c` and `caddy validate`): Debian packages, installed only when
# missing. perf counts system calls per request (linux-perf); h2load drives the HTTP/2 scenario.
BENCH_BINARIES := haproxy:haproxy caddy:caddy h2load:nghttp2-client perf:linux-perf

DEPS_TARGETS += bench-deps

.PHONY: bench-build bench-nginx bench-quick bench-deps
bench-deps: ## install the benchmark's peers and tools (HAProxy, Caddy, h2load, perf) when missing
	@missing=""; \
	for pair in $(BENCH_BINARIES); do \
	  b=$${pair%%:*}; p=$${pair##*:}; \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

bench-build:
	$(GO) build -o $(BIN)/ ./gateway ./backends/products ./bench/cmd/archway-bench ./bench/cmd/gateway-pprof

bench-nginx: system-deps bench-deps bench-build ## benchmark against nginx, HAProxy and Caddy: every scenario, both placements (~90 min)
	$(BIN)/archway-bench run -repo . -bin $(BIN) -results bench/results -profile -docs docs/benchmarks.md $(BENCH_FLAGS)

bench-quick: system-deps bench-deps bench-build ## rough benchmark against nginx, HAProxy and Caddy (~3.5 min)
	$(BIN)/archway-bench run -repo . -bin $(BIN) -results bench/results/quick -quick $(BENCH_FLAGS)

# bench/traceanalyze (the trace analysis of docs/benchmarks.md, "Where the tail comes from") is
# a module of its own, so `go test ./...` at the root does not reach it.
TEST_TARGETS += bench-traceanalyze-test
.PHONY: bench-traceanalyze-test
bench-traceanalyze-test: ## the trace analysis tool's tests (bench/traceanalyze, its own module)
	cd bench/traceanalyze && $(GO) test -race -count=1 ./...
