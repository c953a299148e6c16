// Package peerconf holds what the generators of the peers' configurations (bench/nginxconf,
// bench/haproxyconf, bench/caddyconf) read from a routes.yaml the same way. Quoting stays in
// each generator: every tool escapes differently.
package peerconf

import (
	"maps"
	"slices"
	"strings"

	"github.com/archway-gateway/archway/gateway/config"
)

// HasCatchAll reports whether a route matches every path (path_prefix "/"), so a generator
// must not add its own 404 fallback.
func HasCatchAll(cfg *config.Config) bool {
	return slices.ContainsFunc(cfg.Routes, func(r *config.Route) bool { return r.Match.PathPrefix == "/" })
}

// SortedKeys are m's keys in order, so generated files are stable (golden files).
func SortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// HasKeyFold reports whether m has k as a key, ignoring case (header names).
func HasKeyFold(m map[string]string, k string) bool {
	return slices.ContainsFunc(slices.Collect(maps.Keys(m)), func(key string) bool { return strings.EqualFold(key, k) })
}

// BaseName is the last element of a slash-separated path, or the path itself without a slash.
func BaseName(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }
