package runner

import (
	"slices"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/bench/stats"
)

func TestParseVariant(t *testing.T) {
	for _, tc := range []struct {
		in      string
		label   string
		env     []string
		wantErr string
	}{
		{in: "slack1ms=ARCHWAY_TIMER_SLACK=1ms", label: "archway-slack1ms", env: []string{"ARCHWAY_TIMER_SLACK=1ms"}},
		{in: "gmp1=GOMAXPROCS=1,ARCHWAY_TIMER_SLACK=0", label: "archway-gmp1", env: []string{"GOMAXPROCS=1", "ARCHWAY_TIMER_SLACK=0"}},
		// GODEBUG's own list keeps its commas: only NAME= in capitals starts a variable.
		{in: "dbg=GODEBUG=gctrace=1,asyncpreemptoff=1,GOGC=off", label: "archway-dbg", env: []string{"GODEBUG=gctrace=1,asyncpreemptoff=1", "GOGC=off"}},
		{in: "empty=GOGC=", label: "archway-empty", env: []string{"GOGC="}},
		{in: "noequals", wantErr: "want NAME=K=V"},
		{in: "x=", wantErr: "want NAME=K=V"},
		{in: "Slack=GOGC=1", wantErr: "lower case"},
		{in: "a_b=GOGC=1", wantErr: "lower case"},
		{in: "x=gogc=1", wantErr: "environment variable in capitals"},
		{in: "x=GOGC", wantErr: "environment variable in capitals"},
		{in: "park=GOGC=1", wantErr: "archway-park is another contender"},
		{in: "no-limit=GOGC=1", wantErr: "another contender"},
	} {
		v, err := ParseVariant(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if v.Label() != tc.label || !slices.Equal(v.Env, tc.env) {
			t.Errorf("%q: %s %q, want %s %q", tc.in, v.Label(), v.Env, tc.label, tc.env)
		}
	}
}

// TestVariantsJoinEveryArchwayScenario: each variant runs in every scenario Archway runs in, on
// Archway's path there (the rate limit scenario's limited route, not the unlimited reference),
// and only there.
func TestVariantsJoinEveryArchwayScenario(t *testing.T) {
	cfg := Config{Park: true, Variants: []Variant{{Name: "slack1ms", Env: []string{"ARCHWAY_TIMER_SLACK=1ms"}}, {Name: "gmp1", Env: []string{"GOMAXPROCS=1"}}}}
	for _, s := range scenarios(false) {
		i := slices.IndexFunc(s.contenders, func(c contender) bool { return c.label == stats.Archway })
		addContenders(s, cfg)
		for _, label := range []string{"archway-slack1ms", "archway-gmp1", stats.ArchwayPark} {
			j := slices.IndexFunc(s.contenders, func(c contender) bool { return c.label == label })
			switch {
			case i < 0 && j >= 0:
				t.Errorf("%s: %s runs where Archway does not", s.name, label)
			case i >= 0 && j < 0:
				t.Errorf("%s: no %s", s.name, label)
			case i >= 0 && (s.contenders[j].path != s.contenders[i].path || s.contenders[j].proxy != label):
				t.Errorf("%s: %s is %+v, Archway %+v", s.name, label, s.contenders[j], s.contenders[i])
			}
		}
		if i >= 0 && !slices.Contains(s.notes, "archway-gmp1: this build of Archway with GOMAXPROCS=1 in its environment.") {
			t.Errorf("%s: no note says what archway-gmp1 is: %q", s.name, s.notes)
		}
	}
}

// TestVariantEnvironmentReachesTheProcess starts a real process with the environment a
// variant's gateway gets and reads back what it saw: the variant's values win over the
// placement's (GOMAXPROCS), and the plain gateway does not get them.
func TestVariantEnvironmentReachesTheProcess(t *testing.T) {
	r := &Runner{cfg: Config{Variants: []Variant{{Name: "gmp1", Env: []string{"GOMAXPROCS=1", "ARCHWAY_TIMER_SLACK=50us"}}}},
		env: map[string]string{"BENCH_UPSTREAM_1": "127.0.0.1:1"}}
	pl := placements["U"]
	seen := func(kind string) string {
		p, err := start("env", "", r.archwayEnv(pl, kind, "127.0.0.1:2", "127.0.0.1:3"), "/bin/sh", "-c",
			`echo "$GOMAXPROCS|${ARCHWAY_TIMER_SLACK:-unset}|$BENCH_LISTEN|$BENCH_UPSTREAM_1"`)
		if err != nil {
			t.Fatal(err)
		}
		<-p.done
		return strings.TrimSpace(p.out.String())
	}
	t.Setenv("ARCHWAY_TIMER_SLACK", "")
	if got, want := seen("archway-gmp1"), "1|50us|127.0.0.1:2|127.0.0.1:1"; got != want {
		t.Errorf("variant saw %q, want %q", got, want)
	}
	if got, want := seen(stats.Archway), "2|unset|127.0.0.1:2|127.0.0.1:1"; got != want {
		t.Errorf("archway saw %q, want %q", got, want)
	}
}

// TestReportListsVariants: the report and the chart keep every variant, after the gateway's own
// contenders and before the peers, and colour it apart from Archway.
func TestReportListsVariants(t *testing.T) {
	m := map[string]map[string]stats.Summary{}
	for _, c := range []string{stats.Nginx, "archway-slack1ms", stats.Archway, stats.ArchwayNoLimit, "archway-gmp1", stats.HAProxy, stats.ArchwayPark} {
		m[c] = nil
	}
	got := contendersOf(m)
	want := []string{stats.Archway, stats.ArchwayPark, "archway-gmp1", "archway-slack1ms", stats.ArchwayNoLimit, stats.Nginx, stats.HAProxy}
	if !slices.Equal(got, want) {
		t.Errorf("contendersOf = %v, want %v", got, want)
	}
	delete(m, stats.ArchwayNoLimit)
	if got := contendersOf(m); !slices.Equal(got, slices.DeleteFunc(slices.Clone(want), func(c string) bool { return c == stats.ArchwayNoLimit })) {
		t.Errorf("without archway-no-limit: %v", got)
	}

	res := sampleResult()
	var extra []stats.Run
	for _, run := range res.Runs {
		if run.Contender == stats.Archway && run.Kind == "" {
			run.Contender = "archway-slack1ms"
			extra = append(extra, run)
		}
	}
	res.Runs = append(res.Runs, extra...)
	res.Summary = stats.Aggregate(res.Runs)
	if svg := Chart(res); !strings.Contains(svg, ">A archway-slack1ms<") || !strings.Contains(svg, `fill="#a0cbe8"`) {
		t.Errorf("chart lacks the variant's bar:\n%s", svg)
	}
	if md := Report([]*Result{res}, nil, nil, Config{}); !strings.Contains(md, "| A | archway-slack1ms | 102 (101–103) |") {
		t.Errorf("report lacks the variant's row:\n%s", md)
	}
}
