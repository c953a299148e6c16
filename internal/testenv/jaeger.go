package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/archway-gateway/archway/internal/stack"
)

// Jaeger is a real Jaeger v2 (bin/jaeger, built by `make deps` from tools/jaeger) with in-memory
// storage: OTLP receivers and the query API on free loopback ports.
type Jaeger struct {
	// OTLPHTTP and OTLPGRPC are the receivers' base URLs: http://127.0.0.1:port.
	OTLPHTTP, OTLPGRPC string
	// Query is the query service's (and UI's) base URL.
	Query string
	proc  *Process
}

// StartJaeger starts Jaeger on free loopback ports and stops it when the test ends.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := RequireBinary(t, "jaeger")
	dir := shortTempDir(t, "jaeger")
	for attempt := 0; ; attempt++ {
		ports := FreePorts(t, 4)
		cfg := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", attempt))
		if err := os.WriteFile(cfg, stack.JaegerConfig(ports[0], ports[1], ports[2], ports[3]), 0o644); err != nil {
			t.Fatal(err)
		}
		// Jaeger would trace itself into an OTLP collector on the default port otherwise.
		p := StartProcess(t, "jaeger", bin, []string{"--config", cfg}, ProcessOptions{Dir: dir,
			Env: []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"}})
		j := &Jaeger{
			OTLPHTTP: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
			OTLPGRPC: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
			Query:    fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
			proc:     p,
		}
		err := j.waitReady(ports, 60*time.Second)
		if err == nil {
			return j
		}
		p.Stop()
		if attempt < 3 {
			continue // lost a port to someone else; try others
		}
		t.Fatalf("testenv: jaeger did not start: %v\n%s", err, trimOutput(p.Output()))
	}
}

func (j *Jaeger) waitReady(ports []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, port := range ports[:3] {
		if err := WaitTCP(fmt.Sprintf("127.0.0.1:%d", port), time.Until(deadline)); err != nil {
			return err
		}
	}
	for {
		_, err := j.Services()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-j.proc.Exited():
			return fmt.Errorf("jaeger exited: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill stops Jaeger abruptly, as a crashed collector.
func (j *Jaeger) Kill() { j.proc.Kill() }

// Process returns the underlying process.
func (j *Jaeger) Process() *Process { return j.proc }

// JaegerTrace is a trace as Jaeger's query API returns it.
type JaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []JaegerSpan             `json:"spans"`
	Processes map[string]JaegerProcess `json:"processes"`
}

// JaegerSpan is one span of a JaegerTrace.
type JaegerSpan struct {
	TraceID       string            `json:"traceID"`
	SpanID        string            `json:"spanID"`
	OperationName string            `json:"operationName"`
	References    []JaegerReference `json:"references"`
	ProcessID     string            `json:"processID"`
	StartTime     int64             `json:"startTime"` // µs since the epoch
	Duration      int64             `json:"duration"`  // µs
	Tags          []JaegerTag       `json:"tags"`
}

// JaegerReference links a span to its parent (CHILD_OF) or another span (FOLLOWS_FROM).
type JaegerReference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// JaegerProcess is the service that reported spans.
type JaegerProcess struct {
	ServiceName string `json:"serviceName"`
}

// JaegerTag is a span attribute.
type JaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Tag returns the value of the span's attribute key.
func (s JaegerSpan) Tag(key string) (any, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return nil, false
}

// Parent returns the span id of the span's parent in its trace, or "" for a root.
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

// Trace returns the trace with id (32 hex digits) as Jaeger stores it now.
func (j *Jaeger) Trace(id string) (JaegerTrace, error) {
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	if err := j.get("/api/traces/"+id, &body); err != nil {
		return JaegerTrace{}, err
	}
	if len(body.Data) != 1 {
		return JaegerTrace{}, fmt.Errorf("jaeger: %d traces for id %s", len(body.Data), id)
	}
	return body.Data[0], nil
}

// Services returns the services Jaeger has spans of.
func (j *Jaeger) Services() ([]string, error) {
	var body struct {
		Data []string `json:"data"`
	}
	err := j.get("/api/services", &body)
	return body.Data, err
}

func (j *Jaeger) get(path string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(j.Query + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger %s: %d %s", path, resp.StatusCode, body)
	}
	return json.Unmarshal(body, v)
}
