// A module of its own so that the gateway's module does not take golang.org/x/exp at the
// version that reads Go 1.26 traces: the analysis is a benchmark tool, not part of Archway.
module github.com/archway-gateway/archway/bench/traceanalyze

go 1.26

require golang.org/x/exp v0.0.0-20251009144603-d2f985daa21b
