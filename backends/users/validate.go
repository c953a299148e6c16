package main

import (
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/archway-gateway/archway/backends/internal/api"
)

// Password limits: bcrypt reads at most 72 bytes, and silently ignoring the rest would let two
// different passwords match.
const (
	minPasswordLen = 8
	maxPasswordLen = 72
	maxNameLen     = 100
	maxEmailLen    = 254
)

// normalizeEmail trims and lower-cases an address and checks it is a bare addr-spec with a dotted
// domain ("ana@example.com"), or returns a 400 naming the email field.
func normalizeEmail(raw string) (string, error) {
	email := strings.ToLower(strings.TrimSpace(raw))
	if email == "" {
		return "", api.BadRequest("email", "is required")
	}
	if len(email) > maxEmailLen {
		return "", api.BadRequest("email", "is too long")
	}
	addr, err := mail.ParseAddress(email)
	at := strings.LastIndexByte(email, '@')
	if err != nil || addr.Address != email || addr.Name != "" || at < 1 ||
		!strings.Contains(email[at+1:], ".") || strings.HasSuffix(email, ".") {
		return "", api.BadRequest("email", "must be a valid email address")
	}
	return email, nil
}

func checkPassword(pw string) error {
	switch {
	case pw == "":
		return api.BadRequest("password", "is required")
	case utf8.RuneCountInString(pw) < minPasswordLen:
		return api.BadRequest("password", "must be at least 8 characters")
	case len(pw) > maxPasswordLen:
		return api.BadRequest("password", "must be at most 72 bytes")
	}
	return nil
}

func checkName(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return "", api.BadRequest(field, "is required")
	case utf8.RuneCountInString(v) > maxNameLen:
		return "", api.BadRequest(field, "must be at most 100 characters")
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "", api.BadRequest(field, "must not contain control characters")
	}
	return v, nil
}
