# syntax=docker/dockerfile:1
# One image per Archway binary, from this one file:
#
#   docker build --build-arg SERVICE=gateway  -t archway/gateway  .
#   docker build --build-arg SERVICE=products -t archway/products .   # users, products, orders, payments
#
# Stages: the storefront (Node) and the Go binaries (static, CGO off) are built separately; the
# final image is distroless static (no shell, no package manager) running as the non-root user
# 65532, with the binary as its entrypoint and a HEALTHCHECK that needs no shell. The gateway's
# image also holds the storefront it serves and the container routes file
# (deploy/compose/routes.yaml). `go test ./deploy/` checks this file without a Docker engine.

ARG GO_VERSION=1.26
ARG NODE_VERSION=20

# ---- storefront: the React app the gateway's static route serves -----------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS storefront
WORKDIR /src/storefront
COPY storefront/package.json storefront/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --loglevel=error
COPY storefront/ ./
RUN npm run build

# ---- build: one static Go binary, picked by SERVICE -------------------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE=gateway
WORKDIR /src
COPY go.mod go.sum ./
COPY gateway/ gateway/
COPY backends/ backends/
COPY discovery/ discovery/
COPY internal/exportqueue/ internal/exportqueue/
COPY deploy/healthcheck/ deploy/healthcheck/
# What the final image holds is assembled under /out: bin/ (the binary as app, and healthcheck),
# and for the gateway etc/ (its routes file) and share/ (the storefront).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    case "$SERVICE" in \
      gateway) pkg=./gateway ;; \
      users|products|orders|payments) pkg=./backends/$SERVICE ;; \
      *) echo "SERVICE must be gateway, users, products, orders or payments, not '$SERVICE'" >&2; exit 1 ;; \
    esac; \
    mkdir -p /out/bin /out/etc /out/share; \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/bin/app "$pkg"; \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/bin/healthcheck ./deploy/healthcheck
COPY deploy/compose/routes.yaml /out/etc/archway/routes.yaml
COPY --from=storefront /src/storefront/dist/ /out/share/archway/storefront/
# Only the gateway serves the storefront and reads a routes file.
RUN if [ "$SERVICE" != gateway ]; then rm -rf /out/etc/archway /out/share/archway; fi

# ---- final: distroless static, non-root ------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE=gateway
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/etc/ /etc/
COPY --from=build /out/share/ /usr/share/
# The distroless user nonroot (65532) owns its home: a service on SQLite keeps ./data/ there
# (its database, the users service's signing key); mount a volume on it to keep them.
WORKDIR /home/nonroot
USER 65532:65532
ENV ARCHWAY_SERVICE=${SERVICE} \
    ARCHWAY_CONFIG=/etc/archway/routes.yaml
# Ports: gateway 80 and 443 (admin 9901; HTTPS needs tls.crt and tls.key mounted at
# /etc/archway-tls), users 3001, products 3002, orders 3003, payments 3004.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 CMD ["/usr/local/bin/healthcheck"]
ENTRYPOINT ["/usr/local/bin/app"]
