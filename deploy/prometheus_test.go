package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/internal/testenv"
	"gopkg.in/yaml.v3"
)

func promDir() string { return filepath.Join(root(), "deploy", "prometheus") }

func readYAML[T any](t *testing.T, file string) T {
	t.Helper()
	var v T
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func loadPrometheusConfig(t *testing.T) prometheusConfig {
	t.Helper()
	return readYAML[prometheusConfig](t, filepath.Join(promDir(), "prometheus.yml"))
}

// jobNames are the scrape jobs of prometheus.yml: the values job="..." can take.
func jobNames(t *testing.T) []string {
	var names []string
	for _, j := range loadPrometheusConfig(t).ScrapeConfigs {
		names = append(names, j.JobName)
	}
	return names
}

// TestPromtool: promtool accepts the configuration and the rules, and the rules' unit tests pass.
func TestPromtool(t *testing.T) {
	promtool := testenv.RequireBinary(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = promDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a unit test.
	rules := readYAML[struct {
		Groups []struct {
			Rules []struct{ Alert string }
		}
	}](t, filepath.Join(promDir(), "alerts.yml"))
	tests, err := os.ReadFile(filepath.Join(promDir(), "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if !regexp.MustCompile(`alertname: ` + r.Alert + `\b`).Match(tests) {
				t.Errorf("alert %s has no test in alerts_test.yml", r.Alert)
			}
		}
	}
}

// query is one PromQL expression of the dashboard or the alerts, and where it is.
type query struct {
	where, expr, datasource string
}

type dashboard struct {
	Panels []struct {
		Title      string
		Type       string
		Datasource struct{ UID string }
		Targets    []struct {
			Expr       string
			Datasource struct{ UID string }
		}
	}
	Templating struct {
		List []struct {
			Name       string
			Datasource struct{ UID string }
			Definition string
		}
	}
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(), "deploy", "grafana", "dashboards", "archway.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("archway.json: %v", err)
	}
	return d
}

// grafanaMacros are what Grafana substitutes before a query reaches Prometheus.
var grafanaMacros = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

func (d dashboard) queries() []query {
	var qs []query
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			qs = append(qs, query{where: "panel " + p.Title + " #" + string(rune('A'+i)), expr: grafanaMacros.Replace(tg.Expr), datasource: tg.Datasource.UID})
		}
	}
	for _, v := range d.Templating.List {
		expr := v.Definition
		if m := labelValues.FindStringSubmatch(expr); m != nil {
			expr = m[1]
		}
		qs = append(qs, query{where: "variable " + v.Name, expr: expr, datasource: v.Datasource.UID})
	}
	return qs
}

func alertQueries(t *testing.T) []query {
	t.Helper()
	rules := readYAML[struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}](t, filepath.Join(promDir(), "alerts.yml"))
	var qs []query
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{where: "alert " + r.Alert, expr: r.Expr})
		}
	}
	return qs
}

// TestDashboardHasTheIssuePanels: the dashboard shows what operators were promised.
func TestDashboardHasTheIssuePanels(t *testing.T) {
	var all []string
	for _, q := range loadDashboard(t).queries() {
		all = append(all, q.expr)
	}
	text := strings.Join(all, "\n")
	for what, re := range map[string]string{
		"requests/s by route": `sum by \(route\) \(rate\(archway_requests_total`,
		"p50 latency":         `histogram_quantile\(0\.5, [^\n]*archway_request_duration_seconds_bucket`,
		"p99 latency":         `histogram_quantile\(0\.99, [^\n]*archway_request_duration_seconds_bucket`,
		"upstream health":     `archway_upstream_target_healthy`,
		"rate-limited share":  `archway_ratelimit_requests_total\{[^}]*result="limited"[^\n]*/ sum\(rate\(archway_ratelimit_requests_total`,
		"cache hit ratio":     `archway_cache_requests_total\{[^}]*result=~"hit\|stale"[^\n]*/ sum\(rate\(archway_cache_requests_total`,
		"reloads":             `archway_config_reloads_total`,
		"outbox lag":          `orders_outbox_lag_seconds`,
		"queue depth":         `rabbitmq_queue_messages_ready`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("the dashboard has no %s panel (%s)", what, re)
		}
	}
}
