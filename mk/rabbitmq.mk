# RabbitMQ: order events between the services (docs/backends.md, "Order events"). The tests start
# rabbitmq-server from Debian's package on free ports (internal/testenv); `make run-rabbitmq`
# runs the stack with a local broker. Installed only when missing.

RABBITMQ_SERVER ?= /usr/lib/rabbitmq/bin/rabbitmq-server

DEPS_TARGETS += rabbitmq-deps

.PHONY: rabbitmq-deps run-rabbitmq

rabbitmq-deps: ## install rabbitmq-server (Debian) if missing
	@if [ ! -x "$(RABBITMQ_SERVER)" ]; then \
	  echo "installing: rabbitmq-server"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null; \
	fi

run-rabbitmq: build rabbitmq-deps $(RUN_PREREQS) ## the same stack with a local RabbitMQ: order events through the broker (management UI on 127.0.0.1:15672)
	$(BIN)/stack -bin $(BIN) -data data -config routes.yaml -rabbitmq
