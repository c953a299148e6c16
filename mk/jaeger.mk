# Jaeger v2 for the tracing tests and `make run-tracing`, built from the pinned tool module
# tools/jaeger into ./bin/jaeger. Jaeger is not packaged by Debian; its all-in-one binary is a
# Go program served by the module proxy. The build is large (an OpenTelemetry Collector
# distribution): it reruns only when the pin in tools/jaeger changes.
#
# Changing the pin: cd tools/jaeger && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@vX.Y.Z

DEPS_TARGETS += $(BIN)/jaeger

$(BIN)/jaeger: tools/jaeger/go.mod tools/jaeger/go.sum
	cd tools/jaeger && $(GO) build -ldflags='-s -w' -o $(BIN)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger

.PHONY: jaeger
jaeger: $(BIN)/jaeger ## build ./bin/jaeger from the pin in tools/jaeger (part of `make deps`)

.PHONY: run-tracing
run-tracing: build $(BIN)/jaeger $(RUN_PREREQS) ## the stack with Jaeger: every request traced; prints the UI URL
	$(BIN)/stack -bin $(BIN) -data data -config routes.yaml -jaeger
