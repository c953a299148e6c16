package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"-jwt-secret", "short"}, "at least 32 bytes", 1},
		{[]string{"-log-level", "loud"}, "log level", 1},
		{[]string{"-nope"}, "flag provided but not defined", 2},
		{[]string{"serve"}, "unexpected argument", 2},
		{[]string{"-database-url", "postgres://nobody@127.0.0.1:1/x?connect_timeout=1"}, "open postgres", 1},
	} {
		var errOut bytes.Buffer
		args := append([]string{"-addr", "127.0.0.1:0", "-database-url", filepath.Join(dir, "p.db")}, tc.args...)
		if code := run(context.Background(), args, io.Discard, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d mentioning %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
