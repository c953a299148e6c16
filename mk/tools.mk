# Pinned developer tools, built from tools/go.mod into ./bin.

DEPS_TARGETS += $(BIN)/staticcheck

$(BIN)/staticcheck: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
