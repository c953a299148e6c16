package deploy

import (
	"bufio"
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// The Archway images compose builds, by the SERVICE build argument that picks the binary.
var archwayBinaries = []string{"gateway", "users", "products", "orders", "payments"}

// root returns the repository root; paths in compose.yaml are relative to it.
func root() string { return testenv.RepoRoot() }

// readEnvFile reads KEY=value lines (comments and blank lines skipped).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: not KEY=value: %q", path, n, line)
		}
		if _, dup := env[k]; dup {
			t.Fatalf("%s:%d: %s set twice", path, n, k)
		}
		env[k] = v
	}
	return env
}

// loadCompose loads compose.yaml the way `docker compose` does, with env as the project's
// environment (what .env would hold) and nothing from the process environment.
func loadCompose(env map[string]string) (*types.Project, error) {
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root(), "compose.yaml")},
		cli.WithWorkingDirectory(root()),
		cli.WithEnv(envList),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

var (
	projectOnce sync.Once
	project     *types.Project
	projectErr  error
)

// composeProject is compose.yaml loaded with .env.example, once per test binary.
func composeProject(t *testing.T) *types.Project {
	t.Helper()
	projectOnce.Do(func() {
		env := readEnvFile(t, filepath.Join(root(), ".env.example"))
		project, projectErr = loadCompose(env)
	})
	if projectErr != nil {
		t.Fatalf("compose.yaml does not load with .env.example: %v", projectErr)
	}
	return project
}

// binaryOf returns the SERVICE build argument of an Archway service, or "" for other images.
func binaryOf(s types.ServiceConfig) string {
	if s.Build == nil {
		return ""
	}
	if v := s.Build.Args["SERVICE"]; v != nil {
		return *v
	}
	return ""
}

func envOf(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

func sortedNames(p *types.Project) []string { return slices.Sorted(maps.Keys(p.Services)) }

// portOf returns the port of a host:port listen address.
func portOf(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q is not host:port: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: port of %q: %v", what, addr, err)
	}
	return n
}

// listensOn returns the ports a compose service's process listens on, as its own configuration
// says: an Archway service its ADDR, a gateway its public and admin listeners (from the routes
// file loaded with the container's environment), anything else its expose and ports entries.
func listensOn(t *testing.T, s types.ServiceConfig) []int {
	t.Helper()
	switch bin := binaryOf(s); bin {
	case "":
		var ports []int
		for _, e := range s.Expose {
			n, err := strconv.Atoi(e)
			if err != nil {
				t.Fatalf("%s: expose %q", s.Name, e)
			}
			ports = append(ports, n)
		}
		for _, p := range s.Ports {
			ports = append(ports, int(p.Target))
		}
		return ports
	case "gateway":
		cfg := gatewayConfig(t, s)
		return []int{portOf(t, s.Name+" server.listen", cfg.Server.Listen), portOf(t, s.Name+" admin.listen", cfg.Admin.Listen)}
	default:
		addr := envOf(s)["ADDR"]
		if addr == "" {
			t.Fatalf("%s: ADDR is not set; the %s default listens on 127.0.0.1 semantics of make run", s.Name, bin)
		}
		return []int{portOf(t, s.Name+" ADDR", addr)}
	}
}

// gatewayConfig loads the routes file a gateway container reads, with that container's
// environment, through the gateway's own loader.
func gatewayConfig(t *testing.T, s types.ServiceConfig) *config.Config {
	t.Helper()
	env := envOf(s)
	path := env["ARCHWAY_CONFIG"]
	if path == "" {
		t.Fatalf("%s: ARCHWAY_CONFIG is not set", s.Name)
	}
	host := ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if v.Target == path {
			host = v.Source
		} else if rel, err := filepath.Rel(v.Target, path); err == nil && !strings.HasPrefix(rel, "..") {
			host = filepath.Join(v.Source, rel)
		}
	}
	if host == "" {
		t.Fatalf("%s: nothing is mounted at ARCHWAY_CONFIG %s", s.Name, path)
	}
	data, err := os.ReadFile(host)
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	rel, _ := filepath.Rel(root(), host)
	cfg, err := config.ParseWithEnv(data, rel, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("%s: the gateway refuses its routes file with the container's environment:\n%v", s.Name, err)
	}
	return cfg
}

func TestComposeLoadsAndIsValid(t *testing.T) {
	p := composeProject(t)
	// Every Archway binary is built by at least one service; the replicas the issue asks for.
	count := map[string]int{}
	for _, s := range p.Services {
		count[binaryOf(s)]++
	}
	want := map[string]int{"gateway": 2, "users": 1, "products": 2, "orders": 2, "payments": 1}
	for bin, n := range want {
		if count[bin] != n {
			t.Errorf("%d containers of %s, want %d", count[bin], bin, n)
		}
	}
	for _, name := range []string{"consul", "redis", "postgres", "prometheus", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	for _, name := range []string{"frontend", "backend", "monitoring"} {
		if _, ok := p.Networks[name]; !ok {
			t.Errorf("no network %s", name)
		}
	}
}

// TestComposeNeedsEverySecret: without .env, compose refuses to start and names the variable,
// rather than starting a stack with empty passwords.
func TestComposeNeedsEverySecret(t *testing.T) {
	full := readEnvFile(t, filepath.Join(root(), ".env.example"))
	for _, name := range []string{"ARCHWAY_ADMIN_TOKEN", "REDIS_PASSWORD", "USERS_DB_PASSWORD", "PRODUCTS_DB_PASSWORD", "ORDERS_DB_PASSWORD", "PAYMENTS_DB_PASSWORD"} {
		env := maps.Clone(full)
		delete(env, name)
		if _, err := loadCompose(env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("compose.yaml loads without %s (error: %v)", name, err)
		}
	}
	// Secrets read from files come from variables of .env.example too.
	p := composeProject(t)
	for name, sec := range p.Secrets {
		if sec.Environment == "" {
			t.Errorf("secret %s does not come from the environment (.env)", name)
		} else if _, ok := full[sec.Environment]; !ok {
			t.Errorf("secret %s comes from %s, which .env.example does not set", name, sec.Environment)
		}
	}
}

// TestEnvExampleListsEveryVariable: every ${VAR} compose.yaml reads is in .env.example, and
// .env.example holds nothing compose.yaml does not read. .env stays out of git and of the image.
func TestEnvExampleListsEveryVariable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(string(data), -1) {
		used[m[1]] = true
	}
	p := composeProject(t)
	for _, sec := range p.Secrets {
		used[sec.Environment] = true
	}
	example := readEnvFile(t, filepath.Join(root(), ".env.example"))
	for v := range used {
		if _, ok := example[v]; !ok {
			t.Errorf("compose.yaml reads %s; .env.example does not list it", v)
		}
	}
	for v := range example {
		if !used[v] {
			t.Errorf(".env.example sets %s, which compose.yaml never reads", v)
		}
	}
	for _, f := range []string{".gitignore", ".dockerignore"} {
		data, err := os.ReadFile(filepath.Join(root(), f))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^/?\.env$`).Match(data) {
			t.Errorf("%s does not exclude .env", f)
		}
	}
}

// hostMounts are the bind mounts of a directory of the Docker host rather than of the
// repository, by service: where each is mounted.
var hostMounts = map[string]string{"fluent-bit": "/var/lib/docker/containers"}

// TestComposeBuildsAndMountsExist: every build context and Dockerfile, and every file or
// directory bind-mounted into a container, exists in the repository (but hostMounts).
func TestComposeBuildsAndMountsExist(t *testing.T) {
	p := composeProject(t)
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if s.Build != nil {
			ctx := s.Build.Context
			if st, err := os.Stat(ctx); err != nil || !st.IsDir() {
				t.Errorf("%s: build context %s is not a directory", name, ctx)
			}
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(ctx, df)
			}
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: Dockerfile: %v", name, err)
			}
			if bin := binaryOf(s); !slices.Contains(archwayBinaries, bin) {
				t.Errorf("%s: build argument SERVICE=%q is not one of %v", name, bin, archwayBinaries)
			}
			if !strings.HasPrefix(s.Image, "archway/"+binaryOf(s)+":") {
				t.Errorf("%s: image %q is not archway/%s:<tag>", name, s.Image, binaryOf(s))
			}
		}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if hostMounts[name] == v.Target {
					// A directory of the Docker host, not of the repository.
					if !filepath.IsAbs(v.Source) || !v.ReadOnly {
						t.Errorf("%s: host mount %s → %s must be absolute and read-only", name, v.Source, v.Target)
					}
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: bind mount %s → %s: %v", name, v.Source, v.Target, err)
				}
				if !v.ReadOnly {
					t.Errorf("%s: bind mount %s is writable; configuration is mounted read-only", name, v.Source)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %s is not declared", name, v.Source)
				}
			}
		}
	}
}

// TestComposeServicesAreRunnable: every container has a healthcheck, a restart policy and
// resource limits; Archway's own containers run read-only.
func TestComposeServicesAreRunnable(t *testing.T) {
	p := composeProject(t)
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
		if s.Restart != types.RestartPolicyUnlessStopped && s.Restart != types.RestartPolicyAlways {
			t.Errorf("%s: restart policy %q", name, s.Restart)
		}
		if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 || s.Deploy.Resources.Limits.NanoCPUs == 0 {
			t.Errorf("%s: no CPU and memory limits", name)
		}
		if binaryOf(s) != "" {
			if !s.ReadOnly {
				t.Errorf("%s: root filesystem is writable", name)
			}
			if got := s.HealthCheck.Test; len(got) < 2 || got[0] != "CMD" || got[1] != "/usr/local/bin/healthcheck" {
				t.Errorf("%s: healthcheck %v is not the image's /usr/local/bin/healthcheck", name, got)
			}
		}
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: depends on %s without waiting for it to be healthy", name, dep)
			}
		}
	}
}

// TestComposeNetworks: the split of the original deployment. Only frontend reaches outside and
// carries the published ports; the stores sit on backend alone; monitoring joins Prometheus and
// Grafana to what they scrape without giving them the stores.
func TestComposeNetworks(t *testing.T) {
	p := composeProject(t)
	if p.Networks["frontend"].Internal || !p.Networks["backend"].Internal || !p.Networks["monitoring"].Internal {
		t.Errorf("frontend must reach outside, backend and monitoring must be internal")
	}
	want := map[string][]string{
		"gateway":    {"backend", "frontend", "monitoring"},
		"service":    {"backend", "monitoring"},
		"consul":     {"backend", "monitoring"},
		"redis":      {"backend"},
		"rabbitmq":   {"backend", "monitoring"},
		"postgres":   {"backend"},
		"prometheus": {"frontend", "monitoring"},
		"grafana":    {"frontend", "monitoring"},
		"opensearch": {"monitoring"},
		"fluent-bit": {"monitoring"},
	}
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		role := name
		switch binaryOf(s) {
		case "":
		case "gateway":
			role = "gateway"
		default:
			role = "service"
		}
		got := slices.Sorted(maps.Keys(s.Networks))
		if w, ok := want[role]; !ok {
			t.Errorf("%s: no network rule for it in this test", name)
		} else if !slices.Equal(got, w) {
			t.Errorf("%s is on networks %v, want %v", name, got, w)
		}
		if len(s.Ports) > 0 && !slices.Contains(got, "frontend") {
			t.Errorf("%s publishes ports without being on frontend", name)
		}
	}
}

// shareNetwork reports whether two services have a network in common.
func shareNetwork(a, b types.ServiceConfig) bool {
	for n := range a.Networks {
		if _, ok := b.Networks[n]; ok {
			return true
		}
	}
	return false
}

// reach checks that service from can reach host:port: host is a compose service on a network
// from is on, listening on port.
func reach(t *testing.T, p *types.Project, from types.ServiceConfig, what, hostport string) {
	t.Helper()
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Errorf("%s: %s %q is not host:port", from.Name, what, hostport)
		return
	}
	to, ok := p.Services[host]
	if !ok {
		t.Errorf("%s: %s %s: no compose service %q", from.Name, what, hostport, host)
		return
	}
	if !shareNetwork(from, to) {
		t.Errorf("%s: %s %s: no network in common with %s", from.Name, what, hostport, host)
	}
	port, _ := strconv.Atoi(portText)
	if !slices.Contains(listensOn(t, to), port) {
		t.Errorf("%s: %s %s: %s listens on %v", from.Name, what, hostport, host, listensOn(t, to))
	}
}

// urlHostPort returns host:port of a URL, with the scheme's default port.
func urlHostPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	if u.Port() != "" {
		return u.Host
	}
	def := map[string]string{"http": "80", "https": "443", "postgres": "5432", "postgresql": "5432"}[u.Scheme]
	return net.JoinHostPort(u.Hostname(), def)
}

// TestComposeAgreesWithRoutes: each gateway container's routes file, loaded by the gateway's
// loader with that container's environment, is valid and names what compose runs: the listen
// ports it publishes, Consul and Redis on a shared network, every Consul service its upstreams
// discover registered by containers that advertise a reachable name, the storefront where the
// image puts it.
func TestComposeAgreesWithRoutes(t *testing.T) {
	p := composeProject(t)
	// Who registers as which Consul service: Archway services register under their binary's
	// name, at ADVERTISE_ADDR and the port of ADDR.
	registered := map[string][]string{}
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		bin := binaryOf(s)
		if bin == "" || bin == "gateway" {
			continue
		}
		env := envOf(s)
		if env["CONSUL_HTTP_ADDR"] == "" {
			t.Errorf("%s: CONSUL_HTTP_ADDR is not set: it would not register, the gateways would never see it", name)
			continue
		}
		reach(t, p, s, "CONSUL_HTTP_ADDR", env["CONSUL_HTTP_ADDR"])
		if env["ADVERTISE_ADDR"] != name {
			t.Errorf("%s: ADVERTISE_ADDR=%q, want its own service name %q (what the gateways and Consul's check reach)", name, env["ADVERTISE_ADDR"], name)
		}
		registered[bin] = append(registered[bin], name)
		if u := env["DATABASE_URL"]; u != "" {
			reach(t, p, s, "DATABASE_URL", urlHostPort(t, u))
			if db := strings.TrimPrefix(mustURL(t, u).Path, "/"); db != bin || mustURL(t, u).User.Username() != bin {
				t.Errorf("%s: DATABASE_URL uses database %q as %q; each service has its own database and role, named after it", name, db, mustURL(t, u).User.Username())
			}
		} else {
			t.Errorf("%s: DATABASE_URL is not set (it would use SQLite inside the container)", name)
		}
		if u := env["JWKS_URL"]; u != "" {
			reach(t, p, s, "JWKS_URL", urlHostPort(t, u))
		} else if bin != "users" {
			t.Errorf("%s: JWKS_URL is not set", name)
		}
	}

	gateways := 0
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if binaryOf(s) != "gateway" {
			continue
		}
		gateways++
		cfg := gatewayConfig(t, s)
		public := portOf(t, "server.listen", cfg.Server.Listen)
		published := false
		for _, port := range s.Ports {
			if int(port.Target) == public && port.HostIP == "" {
				published = true
			}
		}
		if !published {
			t.Errorf("%s: the public listener :%d is not published on every host address", name, public)
		}
		if cfg.Consul == nil || cfg.Consul.Register == nil {
			t.Fatalf("%s: the routes file does not use Consul or does not register the gateway", name)
		}
		reach(t, p, s, "consul.address", cfg.Consul.Address)
		if cfg.Consul.Register.Address != name {
			t.Errorf("%s: registers in Consul at %q, want its own service name", name, cfg.Consul.Register.Address)
		}
		if len(cfg.Redis.Addrs) == 0 {
			t.Errorf("%s: no redis section: replicas would not share rate limits or cache", name)
		}
		for _, a := range cfg.Redis.Addrs {
			reach(t, p, s, "redis.addrs", a)
		}
		for _, r := range cfg.Routes {
			if r.RateLimit != nil && r.RateLimit.Scope != "redis" {
				t.Errorf("%s: route %s limits per replica (scope %q), not across the fleet", name, r.Name, r.RateLimit.Scope)
			}
			if r.Cache != nil && r.Cache.Store != "redis" {
				t.Errorf("%s: route %s caches per replica (store %q)", name, r.Name, r.Cache.Store)
			}
			if r.Static != nil && r.Static.Root != storefrontInImage {
				t.Errorf("%s: route %s serves %s; the image holds the storefront at %s", name, r.Name, r.Static.Root, storefrontInImage)
			}
		}
		for upName, up := range cfg.Upstreams {
			if up.Consul == nil {
				t.Errorf("%s: upstream %s does not come from Consul", name, upName)
				continue
			}
			regs := registered[up.Consul.Service]
			if len(regs) == 0 {
				t.Errorf("%s: upstream %s discovers Consul service %q, which no container registers", name, upName, up.Consul.Service)
			}
			for _, reg := range regs {
				if !shareNetwork(s, p.Services[reg]) {
					t.Errorf("%s: upstream %s instance %s is on no network of the gateway", name, upName, reg)
				}
			}
		}
		if stop := s.StopGracePeriod; stop == nil || *stop <= types.Duration(cfg.Server.ShutdownGrace.D()) {
			t.Errorf("%s: stop_grace_period %v must exceed server.shutdown_grace %s, or in-flight requests are killed", name, stop, cfg.Server.ShutdownGrace.D())
		}
	}
	if gateways < 2 {
		t.Errorf("%d gateway containers", gateways)
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestComposeRoutesAreTheConsulRoutes: the containers serve exactly the routes of
// routes.consul.yaml (make run-consul), with Redis behind the rate limits and the products cache
// as the only difference.
func TestComposeRoutesAreTheConsulRoutes(t *testing.T) {
	env := map[string]string{"ARCHWAY_ADMIN_TOKEN": strings.Repeat("x", 32), "ARCHWAY_ADVERTISE_ADDR": "archway-1"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	load := func(rel string) *config.Config {
		data, err := os.ReadFile(filepath.Join(root(), rel))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.ParseWithEnv(data, rel, lookup)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	containers, local := load("deploy/compose/routes.yaml"), load("routes.consul.yaml")
	for _, r := range containers.Routes {
		if r.Cache != nil {
			r.Cache.Store = "memory"
		}
		if r.RateLimit != nil {
			r.RateLimit.Scope, r.RateLimit.OnStoreError = "local", "allow"
		}
		if r.Static != nil {
			r.Static.Root = "storefront/dist"
		}
	}
	if d := config.Diff(&config.Config{Routes: local.Routes}, &config.Config{Routes: containers.Routes}); d != "" {
		t.Fatalf("deploy/compose/routes.yaml serves other routes than routes.consul.yaml:\n%s", d)
	}
}

// TestComposeAgreesWithPrometheus: every Archway container is scraped, and every scrape target
// is a compose service Prometheus shares a network with, on a port that service listens on.
func TestComposeAgreesWithPrometheus(t *testing.T) {
	p := composeProject(t)
	prom, ok := p.Services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	cfg := loadPrometheusConfig(t)
	scraped := map[string]string{} // compose service → job
	for _, job := range cfg.ScrapeConfigs {
		for _, sc := range job.StaticConfigs {
			for _, target := range sc.Targets {
				host, _, _ := net.SplitHostPort(target)
				if host == "localhost" && job.JobName == "prometheus" {
					continue
				}
				reach(t, p, prom, "scrape target of job "+job.JobName, target)
				scraped[host] = job.JobName
			}
		}
	}
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		bin := binaryOf(s)
		if bin == "" {
			continue
		}
		want := bin
		if bin == "gateway" {
			want = "archway"
		}
		if scraped[name] != want {
			t.Errorf("%s is scraped by job %q, want %q (the job names the dashboard and alerts use)", name, scraped[name], want)
		}
	}
	// The rule file Prometheus loads is the one promtool checks.
	var mountedDir string
	for _, v := range prom.Volumes {
		if v.Target == "/etc/prometheus" {
			mountedDir = v.Source
		}
	}
	if mountedDir != filepath.Join(root(), "deploy", "prometheus") {
		t.Errorf("prometheus mounts %q at /etc/prometheus, want deploy/prometheus", mountedDir)
	}
}

// TestComposeGrafanaProvisioning: Grafana gets the datasource and the dashboard from the
// directories compose mounts, and the dashboard uses that datasource.
func TestComposeGrafanaProvisioning(t *testing.T) {
	p := composeProject(t)
	g := p.Services["grafana"]
	mounts := map[string]string{}
	for _, v := range g.Volumes {
		mounts[v.Target] = v.Source
	}
	prov := mounts["/etc/grafana/provisioning"]
	if prov == "" {
		t.Fatal("grafana: nothing mounted at /etc/grafana/provisioning")
	}
	ds := readYAML[struct {
		Datasources []struct{ UID, Type, URL string }
	}](t, filepath.Join(prov, "datasources", "prometheus.yml"))
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources: %+v", ds.Datasources)
	}
	reach(t, p, g, "datasource", urlHostPort(t, ds.Datasources[0].URL))
	providers := readYAML[struct {
		Providers []struct {
			Options struct{ Path string }
		}
	}](t, filepath.Join(prov, "dashboards", "archway.yml"))
	if len(providers.Providers) != 1 {
		t.Fatalf("dashboard providers: %+v", providers.Providers)
	}
	dir := mounts[providers.Providers[0].Options.Path]
	if dir == "" {
		t.Fatalf("grafana reads dashboards from %s; nothing is mounted there", providers.Providers[0].Options.Path)
	}
	if _, err := os.Stat(filepath.Join(dir, "archway.json")); err != nil {
		t.Fatal(err)
	}
	d := loadDashboard(t)
	for _, q := range d.queries() {
		if q.datasource != ds.Datasources[0].UID {
			t.Errorf("dashboard %s uses datasource %q, provisioned is %q", q.where, q.datasource, ds.Datasources[0].UID)
		}
	}
}
