package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// The log pipeline has no validator that runs here: Fluent Bit (its --dry-run) is not packaged
// by Debian, OpenSearch and Grafana check their configuration only when they start. So these
// tests hold the files to what the tools accept (the keys each plugin documents, nothing else)
// and to each other and compose.yaml: what Fluent Bit reads is where Docker writes, what it
// writes is what Grafana searches, and every name they share is the same on both sides.

// fluentBitKeys are the keys Fluent Bit 3.2 documents for each section and plugin this
// configuration uses; a key outside them is a typo Fluent Bit would refuse to start with.
var fluentBitKeys = map[string][]string{
	"service": {"flush", "grace", "daemon", "dns.mode", "log_file", "log_level", "http_server", "http_listen", "http_port",
		"health_check", "hc_errors_count", "hc_retry_failure_count", "hc_period", "storage.path", "storage.sync",
		"storage.checksum", "storage.backlog.mem_limit", "storage.max_chunks_up", "storage.metrics", "parsers_file",
		"plugins_file", "streams_file", "coro_stack_size", "scheduler.cap", "scheduler.base", "hot_reload"},
	"parser": {"name", "format", "regex", "time_key", "time_format", "time_keep", "time_strict", "time_offset", "types",
		"decode_field", "decode_field_as", "skip_empty_values"},
	"input tail": {"name", "alias", "log_level", "tag", "tag_regex", "path", "exclude_path", "path_key", "offset_key", "parser",
		"db", "db.sync", "db.locking", "db.journal_mode", "db.compare_filename", "mem_buf_limit", "buffer_chunk_size",
		"buffer_max_size", "skip_long_lines", "skip_empty_lines", "refresh_interval", "read_from_head", "rotate_wait",
		"ignore_older", "key", "inotify_watcher", "multiline.parser", "docker_mode", "storage.type", "threaded",
		"unicode.encoding", "file_cache_advise"},
	"filter nest": {"name", "match", "match_regex", "alias", "operation", "wildcard", "nest_under", "nested_under",
		"add_prefix", "remove_prefix"},
	"filter modify": {"name", "match", "match_regex", "alias", "set", "add", "remove", "remove_wildcard", "remove_regex",
		"rename", "hard_rename", "copy", "hard_copy", "move_to_start", "move_to_end", "condition"},
	"filter grep":   {"name", "match", "match_regex", "alias", "regex", "exclude", "logical_op"},
	"filter parser": {"name", "match", "match_regex", "alias", "key_name", "parser", "preserve_key", "reserve_data", "unescape_key"},
	"output opensearch": {"name", "match", "match_regex", "alias", "host", "port", "path", "buffer_size", "pipeline",
		"http_user", "http_passwd", "index", "type", "logstash_format", "logstash_prefix", "logstash_prefix_key",
		"logstash_dateformat", "time_key", "time_key_format", "time_key_nanos", "include_tag_key", "tag_key",
		"generate_id", "id_key", "write_operation", "replace_dots", "trace_output", "trace_error", "current_time_index",
		"suppress_type_name", "workers", "compress", "retry_limit", "storage.total_limit_size", "tls", "tls.verify"},
}

type fluentBitConfig struct {
	Service  map[string]any   `yaml:"service"`
	Parsers  []map[string]any `yaml:"parsers"`
	Pipeline struct {
		Inputs  []map[string]any `yaml:"inputs"`
		Filters []map[string]any `yaml:"filters"`
		Outputs []map[string]any `yaml:"outputs"`
	} `yaml:"pipeline"`
}

func loadFluentBit(t *testing.T) fluentBitConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root(), "deploy", "fluent-bit", "fluent-bit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c fluentBitConfig
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true) // no top-level section but these
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("fluent-bit.yaml: %v", err)
	}
	return c
}

// str is a plugin setting as Fluent Bit reads it (YAML booleans and numbers are text to it).
func str(m map[string]any, key string) string {
	v, ok := m[key]
	if !ok {
		return ""
	}
	if b, ok := v.(bool); ok {
		return map[bool]string{true: "on", false: "off"}[b]
	}
	return fmt.Sprint(v)
}

// one returns the single plugin of that name in list.
func one(t *testing.T, list []map[string]any, name string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, p := range list {
		if p["name"] == name {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s plugins, want 1", len(found), name)
	}
	return found[0]
}

func TestFluentBitConfigUsesOnlyDocumentedKeys(t *testing.T) {
	c := loadFluentBit(t)
	check := func(where, kind string, m map[string]any) {
		allowed, ok := fluentBitKeys[kind]
		if !ok {
			t.Errorf("%s: %s is not a plugin this test knows; add its documented keys", where, kind)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(allowed, k) {
				t.Errorf("%s: unknown key %q", where, k)
			}
		}
	}
	check("service", "service", c.Service)
	for i, p := range c.Parsers {
		check(fmt.Sprintf("parsers[%d]", i), "parser", p)
	}
	for section, list := range map[string][]map[string]any{"input": c.Pipeline.Inputs, "filter": c.Pipeline.Filters, "output": c.Pipeline.Outputs} {
		if len(list) == 0 {
			t.Errorf("no %ss", section)
		}
		for i, p := range list {
			check(fmt.Sprintf("%ss[%d]", section, i), section+" "+str(p, "name"), p)
			if section != "input" && str(p, "match") == "" {
				t.Errorf("%ss[%d] (%s) matches no tag", section, i, str(p, "name"))
			}
		}
	}
}

// Fluent Bit reads Docker's json-file logs where compose mounts them, with offsets and buffers
// on its volume (its root filesystem is read-only), and ships to OpenSearch on a network they
// share.
func TestFluentBitReadsDockerLogsAndReachesOpenSearch(t *testing.T) {
	c := loadFluentBit(t)
	p := composeProject(t)
	fb := p.Services["fluent-bit"]
	tail := one(t, c.Pipeline.Inputs, "tail")

	// Docker's layout: <dir>/<id>/<id>-json.log, next to files that are not logs.
	dir := t.TempDir()
	id := strings.Repeat("0123456789abcdef", 4)
	logFile := filepath.Join(dir, id, id+"-json.log")
	for _, f := range []string{logFile, filepath.Join(dir, id, "config.v2.json"), filepath.Join(dir, id, "hostconfig.json")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mountDir := hostMounts["fluent-bit"]
	pattern, ok := strings.CutPrefix(str(tail, "path"), mountDir+"/")
	if !ok {
		t.Fatalf("tail reads %s, outside the mount of Docker's log directory (%s)", str(tail, "path"), mountDir)
	}
	matches, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || !slices.Equal(matches, []string{logFile}) {
		t.Errorf("tail path %s matches %v in Docker's layout, want only the json-file log", pattern, matches)
	}
	re, err := regexp.Compile(str(tail, "tag_regex"))
	if err != nil {
		t.Fatalf("tag_regex: %v", err)
	}
	m, group := re.FindStringSubmatch(filepath.Join(mountDir, id, id+"-json.log")), re.SubexpIndex("container_id")
	if m == nil || group < 0 || m[group] != id || !strings.Contains(str(tail, "tag"), "<container_id>") {
		t.Errorf("tag_regex %q does not take the container id into the tag %q", re, str(tail, "tag"))
	}
	mounted := false
	for _, v := range fb.Volumes {
		if v.Target == mountDir {
			mounted = v.Type == types.VolumeTypeBind && v.ReadOnly
		}
	}
	if !mounted {
		t.Errorf("fluent-bit: Docker's log directory is not bind-mounted read-only at %s", mountDir)
	}

	// Where it writes must be a named volume: the root filesystem is read-only.
	if !fb.ReadOnly {
		t.Error("fluent-bit: root filesystem is writable")
	}
	for what, path := range map[string]string{"tail db": str(tail, "db"), "storage.path": str(c.Service, "storage.path")} {
		onVolume := false
		for _, v := range fb.Volumes {
			if v.Type == types.VolumeTypeVolume && !v.ReadOnly && strings.HasPrefix(path, v.Target+"/") {
				onVolume = true
			}
		}
		if !onVolume {
			t.Errorf("fluent-bit: %s %q is not on a writable volume", what, path)
		}
	}
	if str(tail, "storage.type") != "filesystem" {
		t.Error("tail does not buffer on disk: lines read while OpenSearch is away are lost on a restart")
	}

	// The configuration file is the one compose mounts and runs.
	cfgMount := ""
	for _, v := range fb.Volumes {
		if v.Type == types.VolumeTypeBind && v.Source == filepath.Join(root(), "deploy", "fluent-bit") {
			cfgMount = v.Target
		}
	}
	if cfgMount == "" || !slices.Contains(fb.Command, cfgMount+"/fluent-bit.yaml") {
		t.Errorf("fluent-bit runs %v; deploy/fluent-bit is mounted at %q", fb.Command, cfgMount)
	}
	if got := fb.HealthCheck.Test; !strings.Contains(strings.Join(got, " "), fmt.Sprintf(":%s/api/v1/health", str(c.Service, "http_port"))) ||
		str(c.Service, "health_check") != "on" {
		t.Errorf("fluent-bit healthcheck %v does not ask its own health endpoint", got)
	}

	// Parsers named are parsers defined.
	defined := map[string]bool{}
	for _, p := range c.Parsers {
		defined[str(p, "name")] = true
	}
	if !defined[str(tail, "parser")] {
		t.Errorf("tail uses parser %q, which is not defined", str(tail, "parser"))
	}
	for _, f := range c.Pipeline.Filters {
		if f["name"] == "parser" && !defined[str(f, "parser")] {
			t.Errorf("filter parser uses %q, which is not defined", str(f, "parser"))
		}
	}

	out := one(t, c.Pipeline.Outputs, "opensearch")
	reach(t, p, fb, "opensearch output", str(out, "host")+":"+str(out, "port"))
}

// Every container's lines carry the compose service name (the pipeline lifts it out of Docker's
// attrs), and Fluent Bit leaves its own lines out.
func TestEveryContainerLogsItsServiceName(t *testing.T) {
	c := loadFluentBit(t)
	p := composeProject(t)
	for _, name := range sortedNames(p) {
		s := p.Services[name]
		if s.Logging == nil || s.Logging.Driver != "json-file" || !slices.Contains(strings.Split(s.Logging.Options["labels"], ","), "com.docker.compose.service") {
			t.Errorf("%s: logging %+v does not write json-file lines with the label com.docker.compose.service", name, s.Logging)
		}
	}
	var lifted, renamed, excluded bool
	for _, f := range c.Pipeline.Filters {
		switch {
		case f["name"] == "nest" && str(f, "operation") == "lift" && str(f, "nested_under") == "attrs":
			lifted = true
		case f["name"] == "modify" && str(f, "rename") == "com.docker.compose.service compose_service":
			renamed = true
		case f["name"] == "grep" && str(f, "exclude") == "compose_service ^fluent-bit$":
			excluded = true
		}
	}
	if !lifted || !renamed || !excluded {
		t.Errorf("filters: attrs lifted %v, service renamed to compose_service %v, own lines excluded %v", lifted, renamed, excluded)
	}
	if _, ok := p.Services["fluent-bit"]; !ok {
		t.Error("no fluent-bit service; the grep filter names it")
	}
}

type logsDatasource struct {
	Datasources []struct {
		Name, UID, Type, Access, URL string
		Editable                     bool
		JSONData                     struct {
			Database                   string `yaml:"database"`
			Interval                   string `yaml:"interval"`
			TimeField                  string `yaml:"timeField"`
			Flavor                     string `yaml:"flavor"`
			Version                    string `yaml:"version"`
			LogMessageField            string `yaml:"logMessageField"`
			LogLevelField              string `yaml:"logLevelField"`
			MaxConcurrentShardRequests int    `yaml:"maxConcurrentShardRequests"`
			PPLEnabled                 bool   `yaml:"pplEnabled"`
			DataLinks                  []struct {
				Field, Title, URL string
			} `yaml:"dataLinks"`
		} `yaml:"jsonData"`
	} `yaml:"datasources"`
	APIVersion int `yaml:"apiVersion"`
}

// grafanaExpand does what Grafana does to a provisioning file's values: ${VAR} and $VAR from its
// environment, $$ a literal $.
func grafanaExpand(s string, env map[string]string, missing func(string)) string {
	return regexp.MustCompile(`\$\$|\$\{(\w+)\}|\$(\w+)`).ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := strings.Trim(m, "${}")
		v, ok := env[name]
		if !ok {
			missing(name)
		}
		return v
	})
}

// Grafana searches where Fluent Bit writes, with the plugin installed, and a trace_id opens the
// trace in Jaeger.
func TestGrafanaLogsDatasource(t *testing.T) {
	p := composeProject(t)
	g := p.Services["grafana"]
	env := envOf(g)
	file := filepath.Join(root(), "deploy", "grafana", "provisioning", "datasources", "logs.yml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ds logsDatasource
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&ds); err != nil {
		t.Fatalf("logs.yml: %v", err)
	}
	if len(ds.Datasources) != 1 {
		t.Fatalf("logs.yml: %d datasources", len(ds.Datasources))
	}
	d := ds.Datasources[0]
	plugins := regexp.MustCompile(`(?:^|,)\s*([\w-]+) (\d+\.\d+\.\d+)\s*(?:,|$)`).FindAllStringSubmatch(env["GF_INSTALL_PLUGINS"], -1)
	installed := false
	for _, m := range plugins {
		installed = installed || m[1] == d.Type
	}
	if d.Type != "grafana-opensearch-datasource" || !installed {
		t.Errorf("datasource type %q; GF_INSTALL_PLUGINS %q must install it at a pinned version", d.Type, env["GF_INSTALL_PLUGINS"])
	}
	reach(t, p, g, "logs datasource", urlHostPort(t, d.URL))

	c := loadFluentBit(t)
	out := one(t, c.Pipeline.Outputs, "opensearch")
	if str(out, "logstash_format") != "on" || d.JSONData.Database != "["+str(out, "logstash_prefix")+"-]YYYY.MM.DD" ||
		str(out, "logstash_dateformat") != "%Y.%m.%d" || d.JSONData.Interval != "Daily" || d.JSONData.TimeField != "@timestamp" {
		t.Errorf("Grafana reads %q (%s, %s); Fluent Bit writes %s-%s", d.JSONData.Database, d.JSONData.Interval,
			d.JSONData.TimeField, str(out, "logstash_prefix"), str(out, "logstash_dateformat"))
	}
	// msg is Archway's message key, and what the pipeline names the text of other lines.
	if d.JSONData.LogMessageField != "msg" || d.JSONData.LogLevelField != "level" {
		t.Errorf("message and level fields %q, %q; Archway's JSON lines use msg and level", d.JSONData.LogMessageField, d.JSONData.LogLevelField)
	}
	image := p.Services["opensearch"].Image
	if d.JSONData.Flavor != "opensearch" || !strings.HasSuffix(image, ":"+d.JSONData.Version) {
		t.Errorf("datasource says %s %s; compose runs %s", d.JSONData.Flavor, d.JSONData.Version, image)
	}

	if len(d.JSONData.DataLinks) != 1 || d.JSONData.DataLinks[0].Field != "trace_id" {
		t.Fatalf("data links %+v; want one from trace_id", d.JSONData.DataLinks)
	}
	link := grafanaExpand(d.JSONData.DataLinks[0].URL, env, func(v string) {
		t.Errorf("the trace link uses $%s, which grafana's environment does not set", v)
	})
	if want := "http://localhost:16686/trace/${__value.raw}"; link != want {
		t.Errorf("trace link expands to %q, want %q", link, want)
	}
}

type logsDashboard struct {
	UID, Title string
	Links      []struct{ URL string }
	Templating struct {
		List []struct{ Name, Type, Query string }
	}
	Panels []struct {
		Title, Type string
		Datasource  struct{ Type, UID string }
		FieldConfig struct {
			Overrides []struct {
				Matcher    struct{ ID, Options string }
				Properties []struct {
					ID    string
					Value json.RawMessage
				}
			}
		}
		Targets []struct {
			Datasource struct{ UID string }
			QueryType  string
			Query      string
		}
	}
}

// The logs dashboard is provisioned next to the metrics one, reads the logs datasource, and its
// "logs of this trace" link opens itself filtered by the trace id.
func TestLogsDashboard(t *testing.T) {
	dir := filepath.Join(root(), "deploy", "grafana", "dashboards")
	data, err := os.ReadFile(filepath.Join(dir, "archway-logs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d logsDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("archway-logs.json: %v", err)
	}
	var metrics struct{ UID string }
	raw, _ := os.ReadFile(filepath.Join(dir, "archway.json"))
	if err := json.Unmarshal(raw, &metrics); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.UID == metrics.UID {
		t.Fatalf("dashboard uid %q (the metrics dashboard's is %q)", d.UID, metrics.UID)
	}
	if len(d.Links) == 0 || !strings.HasPrefix(d.Links[0].URL, "/d/"+metrics.UID+"/") {
		t.Errorf("no link to the metrics dashboard: %+v", d.Links)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	traceLink := false
	for _, panel := range d.Panels {
		if panel.Datasource.UID != "logs" {
			t.Errorf("panel %q reads datasource %q, not logs", panel.Title, panel.Datasource.UID)
		}
		for _, q := range panel.Targets {
			if q.Datasource.UID != "logs" || q.QueryType != "lucene" {
				t.Errorf("panel %q: query on %q (%s)", panel.Title, q.Datasource.UID, q.QueryType)
			}
			for _, m := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(q.Query, -1) {
				if !vars[m[1]] {
					t.Errorf("panel %q uses $%s, which the dashboard does not define", panel.Title, m[1])
				}
			}
		}
		for _, o := range panel.FieldConfig.Overrides {
			for _, prop := range o.Properties {
				if prop.ID != "links" {
					continue
				}
				var links []struct{ Title, URL string }
				if err := json.Unmarshal(prop.Value, &links); err != nil {
					t.Fatal(err)
				}
				for _, l := range links {
					m := regexp.MustCompile(`^/d/([\w-]+)/[\w-]+\?var-(\w+)=` + o.Matcher.Options + `:\$\{__value\.raw\}&\$\{__url_time_range\}$`).FindStringSubmatch(l.URL)
					if m == nil || m[1] != d.UID || !vars[m[2]] {
						t.Errorf("panel %q: link %q on %s does not open this dashboard filtered by it", panel.Title, l.URL, o.Matcher.Options)
					}
					traceLink = traceLink || (o.Matcher.Options == "trace_id" && panel.Type == "logs")
				}
			}
		}
	}
	if !traceLink {
		t.Error("the logs panel has no link from trace_id to the logs of that trace")
	}
}
