# Deployment files: compose.yaml, the Dockerfile, deploy/ (Prometheus, Grafana, PostgreSQL init,
# Kubernetes). Their checks are Go tests in ./deploy (part of `make test`), run without Docker;
# the backup tests use the sqlite3 command line, installed here with the other Debian packages.

DEPS_TARGETS += deploy-deps

.PHONY: deploy-deps deploy-check images compose-up compose-down

deploy-deps: ## install the sqlite3 command line if missing (the backup tests run docs/operations.md's commands)
	@if ! command -v sqlite3 >/dev/null 2>&1; then \
	  echo "installing: sqlite3"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null; \
	fi

deploy-check: storefront-build ## the deployment checks alone: compose, Dockerfile replay, promtool, live metrics, k8s, backups
	$(GO) test -count=1 ./deploy/...

ARCHWAY_VERSION ?= dev
images: ## build the five images with Docker (needs a Docker engine): archway/<service>:$(ARCHWAY_VERSION)
	@for s in gateway users products orders payments; do \
	  docker build --build-arg SERVICE=$$s -t archway/$$s:$(ARCHWAY_VERSION) . || exit 1; \
	done

compose-up: ## docker compose up -d --build (needs a Docker engine and a .env; see .env.example)
	@test -f .env || { echo "copy .env.example to .env and set its secrets first"; exit 2; }
	docker compose up -d --build

compose-down: ## docker compose down (volumes are kept)
	docker compose down
