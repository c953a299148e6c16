package telemetry_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/archway-gateway/archway/internal/testenv"
)

// TestServiceLogCallsPassContext holds every log line of the services to the rule that makes
// trace_id and span_id reach it: a slog call passes a context (InfoContext, ErrorContext,
// LogAttrs, ...). LogHandler can only add the ids of the request whose context it is given;
// log.Info(...) inside a handler would write a line nobody can find from the trace. Code
// outside any request passes the context it runs under, so one rule covers every call.
func TestServiceLogCallsPassContext(t *testing.T) {
	root := filepath.Join(testenv.RepoRoot(), "backends")
	plain := map[string]bool{"Debug": true, "Info": true, "Warn": true, "Error": true}
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			// A slog call's message is a string literal: the first argument, or the second
			// after the context.
			msg := func(i int) *ast.BasicLit {
				if len(call.Args) <= i {
					return nil
				}
				if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					return lit
				}
				return nil
			}
			name := sel.Sel.Name
			switch {
			case plain[name] && msg(0) != nil:
				t.Errorf("%s: %s(%s, ...) without a context: use %sContext(ctx, ...)", fset.Position(call.Pos()), name, msg(0).Value, name)
			case plain[strings.TrimSuffix(name, "Context")] && msg(1) != nil, name == "LogAttrs" && msg(2) != nil:
				checked++
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Errorf("found %d log calls with a context; the walk missed the services' code", checked)
	}
}
