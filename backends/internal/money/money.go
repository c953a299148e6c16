// Package money holds amounts of money as integer cents. Inside the services an amount is a
// Cents; in JSON it is a decimal number with at most two fraction digits (1299.99), rendered and
// parsed exactly, never through a float.
package money

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
)

// Cents is an amount of money in hundredths of the currency unit. The zero value is zero. It is a
// plain integer: copy it freely.
type Cents int64

// ErrInvalid is returned (wrapped) for a text that is not a decimal amount with at most two
// fraction digits, or is out of range.
var ErrInvalid = errors.New("invalid amount")

// Parse reads a decimal amount: an optional minus sign, digits, and optionally a point followed
// by one or two digits ("12", "12.5", "12.50", "-0.99"). Exponents, a leading plus, a bare point
// and more than two fraction digits are rejected rather than rounded.
func Parse(s string) (Cents, error) {
	i, neg := 0, false
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	start := i
	var units uint64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		units = units*10 + uint64(s[i]-'0')
		if units > math.MaxInt64/100 {
			return 0, fmt.Errorf("%w: %q is out of range", ErrInvalid, s)
		}
	}
	if i == start {
		return 0, fmt.Errorf("%w: %q is not a decimal number", ErrInvalid, s)
	}
	var frac uint64
	if i < len(s) && s[i] == '.' {
		i++
		digits := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
			if digits > 2 {
				return 0, fmt.Errorf("%w: %q has more than 2 decimal places", ErrInvalid, s)
			}
			frac = frac*10 + uint64(s[i]-'0')
		}
		if digits == 0 {
			return 0, fmt.Errorf("%w: %q is not a decimal number", ErrInvalid, s)
		}
		if digits == 1 {
			frac *= 10
		}
	}
	if i != len(s) {
		return 0, fmt.Errorf("%w: %q is not a decimal number", ErrInvalid, s)
	}
	if units*100+frac > math.MaxInt64 {
		return 0, fmt.Errorf("%w: %q is out of range", ErrInvalid, s)
	}
	c := Cents(units*100 + frac)
	if neg {
		c = -c
	}
	return c, nil
}

// String renders the amount with exactly two fraction digits: "1299.99", "-0.05", "12.00".
func (c Cents) String() string {
	return string(c.AppendText(nil))
}

// AppendText appends the decimal form of c to b.
func (c Cents) AppendText(b []byte) []byte {
	u := uint64(c)
	if c < 0 {
		b = append(b, '-')
		u = uint64(-c) // math.MinInt64 wraps to itself, which as uint64 is its magnitude
	}
	b = strconv.AppendUint(b, u/100, 10)
	frac := u % 100
	return append(b, '.', byte('0'+frac/10), byte('0'+frac%10))
}

// MarshalJSON renders the amount as a JSON number with two fraction digits (1299.99).
func (c Cents) MarshalJSON() ([]byte, error) {
	return c.AppendText(make([]byte, 0, 24)), nil
}

// UnmarshalJSON accepts a JSON number with at most two fraction digits. Anything else fails with
// a *json.UnmarshalTypeError, so encoding/json names the offending field.
func (c *Cents) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := Parse(string(b))
	if err != nil {
		desc := "number " + string(b)
		if len(b) > 0 && (b[0] == '"' || b[0] == '{' || b[0] == '[' || b[0] == 't' || b[0] == 'f') {
			desc = "non-number"
		}
		return &json.UnmarshalTypeError{Value: desc, Type: reflect.TypeFor[Cents]()}
	}
	*c = v
	return nil
}

// JSONDescription tells a client what a Cents field accepts; the request decoder of
// backends/internal/api uses it in 400 messages.
func (Cents) JSONDescription() string {
	return "a decimal amount with at most 2 decimal places"
}
