# Consul for the tests, built from the pinned tool module tools/consul into ./bin/consul.
# Consul is not packaged by Debian, so we compile the server from its Go module (a few minutes
# on two cores, once: the rule reruns only when the pin in tools/consul changes).
#
# Changing the pin: some of Consul's dependencies are not in the checksum database, so the first
# resolution needs them excluded from it; go.sum is then committed and every later build is
# verified against it:
#   cd tools/consul && GONOSUMDB=github.com/hashicorp/consul,github.com/envoyproxy \
#     GOFLAGS=-mod=mod go get github.com/hashicorp/consul@vX.Y.Z
# Consul 1.14.11 is the newest that resolves from the module proxy and builds with our Go.

DEPS_TARGETS += $(BIN)/consul

$(BIN)/consul: tools/consul/go.mod tools/consul/go.sum
	cd tools/consul && $(GO) build -ldflags='-s -w' -o $(BIN)/consul github.com/hashicorp/consul

.PHONY: consul
consul: $(BIN)/consul ## build ./bin/consul from the pin in tools/consul (part of `make deps`)
