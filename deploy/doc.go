// Package deploy holds the checks of Archway's deployment files, which run in `go test ./...`
// without a Docker engine or a Kubernetes cluster:
//
//   - compose.yaml loads with compose-go (the loader of docker compose itself) using
//     .env.example, and agrees with the container routes file (deploy/compose/routes.yaml, loaded
//     by the gateway's own config package with each container's environment), with the
//     Prometheus configuration and with the Dockerfile;
//   - the Dockerfile's stages are replayed without Docker: its COPY instructions through
//     .dockerignore, its build script for every SERVICE, giving static binaries;
//   - promtool checks the Prometheus configuration and alert rules and runs their unit tests;
//   - every metric the Grafana dashboard and the alerts name is found in the /metrics of a live
//     gateway (with Consul and Redis) and a live service;
//   - the Kubernetes manifests decode strictly into the k8s.io/api types and agree with the
//     gateway's configuration;
//   - the backup and restore commands of docs/operations.md work on SQLite and PostgreSQL.
//
// The package has no code of its own besides these tests; deploy/healthcheck is the one binary
// the images add.
package deploy
