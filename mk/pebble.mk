# Pebble, Let's Encrypt's test ACME server, and pebble-challtestsrv (used as the DNS server that
# answers every name with 127.0.0.1) for the ACME end-to-end tests (gateway/listener/acme*_test.go,
# started by internal/testenv/pebble.go). Built from the pinned tool module tools/pebble into
# ./bin; the rule reruns only when the pin changes. Changing the pin:
#   cd tools/pebble && go get -tool github.com/letsencrypt/pebble/v2/cmd/pebble@vX.Y.Z \
#     && go get -tool github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@vX.Y.Z

DEPS_TARGETS += $(BIN)/pebble $(BIN)/pebble-challtestsrv

$(BIN)/pebble: tools/pebble/go.mod tools/pebble/go.sum
	cd tools/pebble && $(GO) build -ldflags='-s -w' -o $(BIN)/pebble github.com/letsencrypt/pebble/v2/cmd/pebble

$(BIN)/pebble-challtestsrv: tools/pebble/go.mod tools/pebble/go.sum
	cd tools/pebble && $(GO) build -ldflags='-s -w' -o $(BIN)/pebble-challtestsrv github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv

.PHONY: pebble
pebble: $(BIN)/pebble $(BIN)/pebble-challtestsrv ## build ./bin/pebble and ./bin/pebble-challtestsrv from the pin in tools/pebble (part of `make deps`)
