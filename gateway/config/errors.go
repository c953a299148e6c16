package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a configuration, with where it is.
type Error struct {
	File string
	Pos  Position // zero when the problem has no single place (a missing section)
	Path string   // the field path, e.g. routes[2].upstream
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	switch {
	case e.Pos.Line > 0 && e.Pos.Column > 0:
		fmt.Fprintf(&b, "%d:%d:", e.Pos.Line, e.Pos.Column)
	case e.Pos.Line > 0:
		fmt.Fprintf(&b, "%d:", e.Pos.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in one configuration, in source order. It is returned as an
// error from Load and Parse; errors.As recovers it.
type ErrorList struct {
	file string
	errs []*Error
}

// NewErrorList starts an empty list of problems in file.
func NewErrorList(file string) *ErrorList { return &ErrorList{file: file} }

// Add records a problem found outside this package (for example a setting that cannot change
// without a restart).
func (l *ErrorList) Add(pos Position, path, msg string) { l.add(pos, path, msg) }

// Err returns the list as an error, or nil when it is empty.
func (l *ErrorList) Err() error { return l.err() }

func (l *ErrorList) add(pos Position, path, msg string) {
	l.errs = append(l.errs, &Error{File: l.file, Pos: pos, Path: path, Msg: msg})
}

// Errors returns the problems sorted by position.
func (l *ErrorList) Errors() []*Error {
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i].Pos, l.errs[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return l.errs
}

func (l *ErrorList) Error() string {
	errs := l.Errors()
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (l *ErrorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return l
}
