package deploy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/listener/listenertest"
	"github.com/archway-gateway/archway/internal/testenv"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// series maps each sample name of a scrape (histograms as _bucket, _sum and _count) to the
// label sets it was seen with.
type series map[string][]map[string]string

func scrape(t *testing.T, url string, into series) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				into[name+"_sum"] = append(into[name+"_sum"], labels)
				into[name+"_count"] = append(into[name+"_count"], labels)
				for _, b := range m.GetHistogram().GetBucket() {
					with := map[string]string{"le": fmt.Sprint(b.GetUpperBound())}
					for k, v := range labels {
						with[k] = v
					}
					into[name+"_bucket"] = append(into[name+"_bucket"], with)
				}
			case dto.MetricType_SUMMARY:
				into[name+"_sum"] = append(into[name+"_sum"], labels)
				into[name+"_count"] = append(into[name+"_count"], labels)
				into[name] = append(into[name], labels)
			default:
				into[name] = append(into[name], labels)
			}
		}
	}
}

// prometheusOwn are series Prometheus makes itself for every target, not found in any /metrics.
var prometheusOwn = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

var literalAlternatives = regexp.MustCompile(`^[A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)*$`)

// checkSelector reports what is wrong with a selector against the live series: an unknown
// metric, a label the metric does not carry, or an equality matcher on a value never seen.
// job and instance are Prometheus's target labels: job must be a scrape job of prometheus.yml.
func checkSelector(sel selector, live series, jobs []string) []string {
	var problems []string
	sets, ok := live[sel.metric]
	own := slices.Contains(prometheusOwn, sel.metric)
	if !ok && !own {
		return []string{fmt.Sprintf("metric %s is exported by neither the gateway nor the services", sel.metric)}
	}
	for _, m := range sel.matchers {
		switch m.label {
		case "job":
			re, err := regexp.Compile("^(?:" + m.value + ")$")
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", sel, err))
				continue
			}
			matched := false
			for _, j := range jobs {
				matched = matched || (m.op == "=" && j == m.value) || (m.op == "=~" && re.MatchString(j))
			}
			if (m.op == "=" || m.op == "=~") && !matched {
				problems = append(problems, fmt.Sprintf("%s: no scrape job %s%q in prometheus.yml", sel, m.op, m.value))
			}
			// A list of names (a|b|c): each one is a job.
			if m.op == "=~" && literalAlternatives.MatchString(m.value) {
				for _, alt := range strings.Split(m.value, "|") {
					if !slices.Contains(jobs, alt) {
						problems = append(problems, fmt.Sprintf("%s: no scrape job %q in prometheus.yml", sel, alt))
					}
				}
			}
			continue
		case "instance":
			continue
		}
		if own {
			problems = append(problems, fmt.Sprintf("%s: %s carries no label %s", sel, sel.metric, m.label))
			continue
		}
		has, seen := false, false
		for _, s := range sets {
			v, ok := s[m.label]
			has = has || ok
			seen = seen || (ok && v == m.value)
		}
		switch {
		case !has:
			problems = append(problems, fmt.Sprintf("%s: %s carries no label %s", sel, sel.metric, m.label))
		case m.op == "=" && !strings.Contains(m.value, "$") && !seen:
			problems = append(problems, fmt.Sprintf("%s: %s never has %s=%q", sel, sel.metric, m.label, m.value))
		case m.op == "=~" || m.op == "!~":
			if _, err := regexp.Compile(m.value); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", sel, err))
			}
		}
	}
	return problems
}

func TestCheckSelector(t *testing.T) {
	live := series{
		"archway_cache_requests_total": {{"route": "products", "result": "hit"}},
	}
	jobs := []string{"archway", "products"}
	for _, tc := range []struct {
		sel  string
		want string
	}{
		{`archway_cache_requests_total{result="hit", job="archway", instance=~"$instance"}`, ""},
		{`archway_cache_requests_total{result=~"hit|stale", job=~"archway|products"}`, ""},
		{`archway_cache_request_total`, "exported by neither"},
		{`archway_cache_requests_total{result="hits"}`, `never has result="hits"`},
		{`archway_cache_requests_total{outcome="hit"}`, "carries no label outcome"},
		{`archway_cache_requests_total{job="gateway"}`, "no scrape job"},
		{`up{job=~"archway|product"}`, `no scrape job "product"`},
		{`up{job="archway"}`, ""},
		{`up{route="x"}`, "carries no label route"},
	} {
		sels, err := selectors(tc.sel)
		if err != nil || len(sels) != 1 {
			t.Fatalf("%s: %v %v", tc.sel, sels, err)
		}
		got := strings.Join(checkSelector(sels[0], live, jobs), "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.sel, got, tc.want)
		}
	}
}

// TestDashboardAndAlertsUseLiveMetrics runs the gateway and products binaries the Dockerfile
// replay built, the gateway on the image's routes file with Consul and Redis as compose gives it
// them, drives requests that make every kind of series appear (a cache hit, a 429, a 503, a
// reload), and holds every selector of the Grafana dashboard and of the alert rules to the two
// /metrics outputs. Every archway_* family the gateway exports must be in docs/metrics.md.
func TestDashboardAndAlertsUseLiveMetrics(t *testing.T) {
	imgs := builtImages(t)
	consul := testenv.StartConsul(t)
	redis := testenv.StartRedis(t)

	ports := testenv.FreePorts(t, 4)
	products := fmt.Sprintf("127.0.0.1:%d", ports[0])
	gateway := fmt.Sprintf("127.0.0.1:%d", ports[1])
	admin := fmt.Sprintf("127.0.0.1:%d", ports[2])
	gatewayTLS := fmt.Sprintf("127.0.0.1:%d", ports[3])
	// The image's routes file serves HTTPS with the mounted certificate and redirects plain
	// HTTP to it, as in compose: a test CA stands in for ./ssl, and the client follows the 308
	// to the TLS listener trusting that CA, as curl --cacert -L would.
	ca := listenertest.NewCA(t, t.TempDir(), "compose")
	cert := ca.Issue(t, "tls", listenertest.Options{}, "localhost")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"},
	}}
	token := strings.Repeat("a", 32)

	productsBin := imgs["products"].root.path("/usr/local/bin/app")
	testenv.StartProcess(t, "products", productsBin, nil, testenv.ProcessOptions{Env: []string{
		"ADDR=" + products,
		"DATABASE_URL=" + filepath.Join(t.TempDir(), "products.db"),
		"CONSUL_HTTP_ADDR=" + consul.HTTPAddr,
		"JWKS_URL=http://127.0.0.1:1/.well-known/jwks.json",
	}})
	waitOK(t, "http://"+products+"/health", 30*time.Second)

	gw := imgs["gateway"]
	testenv.StartProcess(t, "gateway", gw.root.path(gw.entrypoint[0]), nil, testenv.ProcessOptions{Env: []string{
		"ARCHWAY_CONFIG=" + gw.root.path(gw.env["ARCHWAY_CONFIG"]),
		"ARCHWAY_LISTEN=" + gateway,
		"ARCHWAY_LISTEN_TLS=" + gatewayTLS,
		"ARCHWAY_TLS_CERT=" + cert.CertFile,
		"ARCHWAY_TLS_KEY=" + cert.KeyFile,
		"ARCHWAY_ADMIN_LISTEN=" + admin,
		"ARCHWAY_ADMIN_TOKEN=" + token,
		"ARCHWAY_ADVERTISE_ADDR=127.0.0.1",
		"ARCHWAY_STATIC_ROOT=" + gw.root.path(storefrontInImage),
		"CONSUL_ADDR=" + consul.HTTPAddr,
		"REDIS_ADDR=" + redis.Addr,
		"REDIS_PASSWORD=",
	}})
	// Discovered through Consul once products' registration check passes.
	waitOKWith(t, client, "http://"+gateway+"/health/products", 60*time.Second)

	// orders with RabbitMQ as compose runs them, for the order event panels: the outbox series
	// come from orders, queue depth from the broker's Prometheus plugin (per-queue series exist
	// once orders has declared its queue).
	rmq := testenv.StartRabbitMQWith(t, testenv.RabbitMQOptions{Prometheus: true})
	orders := testenv.FreeAddr(t)
	testenv.StartProcess(t, "orders", imgs["orders"].root.path("/usr/local/bin/app"), nil, testenv.ProcessOptions{Env: []string{
		"ADDR=" + orders,
		"DATABASE_URL=" + filepath.Join(t.TempDir(), "orders.db"),
		"PRODUCTS_URL=http://" + products,
		"JWKS_URL=http://127.0.0.1:1/.well-known/jwks.json",
		"AMQP_URL=" + rmq.URL,
	}})
	waitOK(t, "http://"+orders+"/health", 30*time.Second)
	for deadline := time.Now().Add(60 * time.Second); ; {
		brokerSeries := series{}
		scrape(t, rmq.MetricsURL, brokerSeries)
		if _, ok := brokerSeries["rabbitmq_queue_messages_ready"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker never exported rabbitmq_queue_messages_ready: orders did not declare its queue")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The images' HEALTHCHECK, with the environment compose gives each container.
	for _, hc := range []struct{ service, env string }{{"gateway", "ARCHWAY_LISTEN=" + gateway}, {"products", "ADDR=" + products}} {
		img := imgs[hc.service]
		cmd := exec.Command(img.root.path(img.healthcheck[0]), img.healthcheck[1:]...)
		cmd.Env = []string{"ARCHWAY_SERVICE=" + img.env["ARCHWAY_SERVICE"], hc.env}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("the %s image's HEALTHCHECK fails on a healthy %s: %v\n%s", hc.service, hc.service, err, out)
		}
	}

	get := func(path string) *http.Response {
		t.Helper()
		resp, err := client.Get("http://" + gateway + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := get("/api/products?limit=2"); r.StatusCode != http.StatusOK {
		t.Fatalf("first catalog page: %s", r.Status)
	}
	if r := get("/api/products?limit=2"); r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("second catalog page: X-Cache %q, want HIT from the shared cache", r.Header.Get("X-Cache"))
	}
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		limited = get("/api/products/1").StatusCode == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("40 quick requests were never rate limited")
	}
	// /api/auth has no JWT at the edge (/api/users has: it would answer 401 before routing).
	if r := get("/api/auth/login"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("users has no instance in Consul: got %s, want 503", r.Status)
	}
	if r := get("/"); r.StatusCode != http.StatusOK {
		t.Fatalf("storefront: %s", r.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/reload", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %v %v", resp, err)
	}

	live := series{}
	scrape(t, "http://"+admin+"/metrics", live)
	gatewayFamilies := map[string]bool{}
	for name := range live {
		gatewayFamilies[name] = true
	}
	scrape(t, "http://"+products+"/metrics", live)
	scrape(t, "http://"+orders+"/metrics", live)
	scrape(t, rmq.MetricsURL, live)

	jobs := jobNames(t)
	queries := append(loadDashboard(t).queries(), alertQueries(t)...)
	checked := 0
	for _, q := range queries {
		sels, err := selectors(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		for _, sel := range sels {
			checked++
			for _, p := range checkSelector(sel, live, jobs) {
				t.Errorf("%s: %s", q.where, p)
			}
		}
	}
	t.Logf("%d selectors of %d queries checked against %d live series names", checked, len(queries), len(live))

	docs, err := os.ReadFile(filepath.Join(root(), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range gatewayFamilies {
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if _, isHistogram := live[family+"_bucket"]; !isHistogram {
			family = name
		}
		if strings.HasPrefix(family, "archway_") && !strings.Contains(string(docs), "`"+family+"`") {
			t.Errorf("the gateway exports %s; docs/metrics.md does not document it", family)
		}
	}
}

func waitOK(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	waitOKWith(t, &http.Client{Timeout: time.Second}, url, timeout)
}

// waitOKWith is waitOK with the client's TLS trust and redirect handling.
func waitOKWith(t *testing.T, c *http.Client, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not 200 after %s (last: %v %v)", url, timeout, resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
