package runner

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/archway-gateway/archway/bench/stats"
)

// Variant is the gateway of this build run with a different environment as an extra
// contender, "archway-NAME", beside "archway" and alternating with it run by run: the same
// binary, configuration and placement, only the environment differs (a timer slack, GOMAXPROCS,
// a GODEBUG setting), so a runtime setting is measured against the default in one run.
type Variant struct {
	Name string   // the contender is "archway-" + Name
	Env  []string // K=V, added after the placement's own (GOMAXPROCS=...), so they win
}

// Label is the variant's contender name.
func (v Variant) Label() string { return "archway-" + v.Name }

var (
	variantName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// envName is what starts a new variable in a variant's list; anything else after a comma
	// belongs to the value before it (GODEBUG=gctrace=1,asyncpreemptoff=1).
	envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
)

// ParseVariant reads NAME=K=V,K2=V2 (the -archway-env flag). A comma starts a new variable
// only where a name in capitals and '=' follow it, so a value may hold commas (GODEBUG's
// list). NAME is lower case letters, digits and '-', and must not be one the benchmark uses
// for another contender.
func ParseVariant(s string) (Variant, error) {
	name, list, ok := strings.Cut(s, "=")
	if !ok || list == "" {
		return Variant{}, fmt.Errorf("-archway-env %q: want NAME=K=V[,K=V...]", s)
	}
	if !variantName.MatchString(name) {
		return Variant{}, fmt.Errorf("-archway-env %q: the name %q must be lower case letters, digits and '-' (at most 32)", s, name)
	}
	v := Variant{Name: name}
	if slices.Contains(reservedLabels, v.Label()) {
		return Variant{}, fmt.Errorf("-archway-env %q: %s is another contender of the benchmark", s, v.Label())
	}
	for _, part := range strings.Split(list, ",") {
		switch {
		case envName.MatchString(part):
			v.Env = append(v.Env, part)
		case len(v.Env) > 0:
			v.Env[len(v.Env)-1] += "," + part
		default:
			return Variant{}, fmt.Errorf("-archway-env %q: %q is not K=V with K an environment variable in capitals", s, part)
		}
	}
	return v, nil
}

// reservedLabels are the contenders the benchmark names itself.
var reservedLabels = []string{stats.Archway, stats.ArchwayBefore, stats.ArchwayPark, stats.ArchwayTraced, stats.ArchwayNoLimit}

// addContenders adds, to a scenario Archway takes part in, the contenders the configuration
// asks for beside it: an earlier build (-before), the parking gateway (-park) and every
// variant, each on Archway's path in that scenario.
func addContenders(s *scenario, cfg Config) {
	i := slices.IndexFunc(s.contenders, func(c contender) bool { return c.label == stats.Archway })
	if i < 0 {
		return
	}
	path := s.contenders[i].path
	if cfg.Before != "" {
		s.contenders = append(s.contenders, contender{stats.ArchwayBefore, stats.ArchwayBefore, path})
	}
	if cfg.Park {
		s.contenders = append(s.contenders, contender{stats.ArchwayPark, stats.ArchwayPark, path})
	}
	for _, v := range cfg.Variants {
		s.contenders = append(s.contenders, contender{v.Label(), v.Label(), path})
		s.notes = append(s.notes, fmt.Sprintf("%s: this build of Archway with %s in its environment.", v.Label(), strings.Join(v.Env, " ")))
	}
}

// variant is the variant whose contender is label, if it is one.
func (r *Runner) variant(label string) (Variant, bool) {
	for _, v := range r.cfg.Variants {
		if v.Label() == label {
			return v, true
		}
	}
	return Variant{}, false
}

// archwayEnv is the environment a gateway contender runs with in placement pl: the placement's
// GOMAXPROCS, a quiet log, the benchmark's addresses, then the variant's own variables (the
// last value of a name is the one a program sees).
func (r *Runner) archwayEnv(pl placement, kind, addr, admin string) []string {
	env := []string{fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs), "ARCHWAY_LOG_LEVEL=warn"}
	for k, v := range r.env {
		env = append(env, k+"="+v)
	}
	env = append(env, "BENCH_LISTEN="+addr, "BENCH_ADMIN="+admin)
	if v, ok := r.variant(kind); ok {
		env = append(env, v.Env...)
	}
	return env
}
