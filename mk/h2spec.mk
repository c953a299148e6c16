# h2spec, the HTTP/2 conformance suite the tests run against the gateway's TLS and h2c
# listeners, built from the pinned tool module tools/h2spec into ./bin/h2spec (about 25 s on two
# cores, once: the rule reruns only when the pin changes). h2spec has no go.mod of its own, so its
# v2.2.1 tag resolves as v2.2.1+incompatible and its dependencies are pinned in tools/h2spec.

DEPS_TARGETS += $(BIN)/h2spec

$(BIN)/h2spec: tools/h2spec/go.mod tools/h2spec/go.sum
	cd tools/h2spec && $(GO) build -ldflags='-s -w' -o $(BIN)/h2spec github.com/summerwind/h2spec/cmd/h2spec

.PHONY: h2spec
h2spec: $(BIN)/h2spec ## build ./bin/h2spec from the pin in tools/h2spec (part of `make deps`)
