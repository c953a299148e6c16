package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/archway-gateway/archway/backends/internal/money"
)

// Card is a card as a charge request carries it. It lives only in memory for the length of one
// request: the store keeps its brand and last four digits, nothing else.
type Card struct {
	Number   string // digits only
	ExpMonth int
	ExpYear  int // four digits
	CVC      string
}

// Last4 returns the last four digits of the number.
func (c Card) Last4() string { return c.Number[len(c.Number)-4:] }

// Charge is one request to take money from a card.
type Charge struct {
	// Key identifies the charge to the provider, which must treat a repeated key as the same
	// charge: a payment that is retried after a crash or an unknown outcome is re-sent with it.
	Key      string
	Amount   money.Cents
	Currency string
	Card     Card
}

// Outcome is a provider's answer to a charge.
type Outcome struct {
	Approved bool
	// DeclineReason is a Stripe-style decline code ("insufficient_funds") when not approved.
	DeclineReason string
	// Reference is the provider's id of the charge.
	Reference string
}

// Provider charges cards. An error means the outcome is unknown (the provider could not be
// reached, or answered nonsense); a decline is an Outcome, not an error. Implementations must be
// safe for concurrent use.
type Provider interface {
	Charge(ctx context.Context, c Charge) (Outcome, error)
}

var _ Provider = Simulator{}

// Simulator is the default Provider: deterministic, offline, and driven by Stripe's documented
// test card numbers. Approved: 4242 4242 4242 4242 and Stripe's other brand test numbers.
// Declined, with Stripe's decline code: 4000 0000 0000 0002 (generic_decline), ...9995
// (insufficient_funds), ...9987 (lost_card), ...9979 (stolen_card), ...0069 (expired_card),
// ...0127 (incorrect_cvc), ...0119 (processing_error). Any other number is declined with
// live_card_in_test_mode, so a real card is never mistaken for a charged one.
type Simulator struct{}

// simulatorApproves are Stripe's test numbers that succeed.
var simulatorApproves = map[string]bool{
	"4242424242424242": true, // Visa
	"4000056655665556": true, // Visa (debit)
	"5555555555554444": true, // Mastercard
	"2223003122003222": true, // Mastercard (2-series)
	"5200828282828210": true, // Mastercard (debit)
	"378282246310005":  true, // American Express
	"371449635398431":  true, // American Express
	"6011111111111117": true, // Discover
	"3056930009020004": true, // Diners Club
	"3566002020360505": true, // JCB
}

// simulatorDeclines are Stripe's test numbers that are declined, with their decline codes.
var simulatorDeclines = map[string]string{
	"4000000000000002": "generic_decline",
	"4000000000009995": "insufficient_funds",
	"4000000000009987": "lost_card",
	"4000000000009979": "stolen_card",
	"4000000000000069": "expired_card",
	"4000000000000127": "incorrect_cvc",
	"4000000000000119": "processing_error",
}

// Charge decides by the card number alone.
func (Simulator) Charge(ctx context.Context, c Charge) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return Outcome{}, err
	}
	var ref [12]byte
	_, _ = rand.Read(ref[:])
	out := Outcome{Reference: "sim_" + hex.EncodeToString(ref[:])}
	switch {
	case simulatorApproves[c.Card.Number]:
		out.Approved = true
	case simulatorDeclines[c.Card.Number] != "":
		out.DeclineReason = simulatorDeclines[c.Card.Number]
	default:
		out.DeclineReason = "live_card_in_test_mode"
	}
	return out, nil
}

// luhnValid reports whether digits (ASCII digits only) pass the Luhn checksum.
func luhnValid(digits string) bool {
	sum, double := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// cardBrand names the card network from the number's prefix ("unknown" when none matches).
func cardBrand(n string) string {
	prefixIn := func(lo, hi int, width int) bool {
		if len(n) < width {
			return false
		}
		v := 0
		for _, c := range n[:width] {
			v = v*10 + int(c-'0')
		}
		return v >= lo && v <= hi
	}
	switch {
	case strings.HasPrefix(n, "4"):
		return "visa"
	case prefixIn(51, 55, 2) || prefixIn(2221, 2720, 4):
		return "mastercard"
	case strings.HasPrefix(n, "34") || strings.HasPrefix(n, "37"):
		return "amex"
	case strings.HasPrefix(n, "6011") || strings.HasPrefix(n, "65") || prefixIn(644, 649, 3):
		return "discover"
	case prefixIn(300, 305, 3) || strings.HasPrefix(n, "36") || strings.HasPrefix(n, "38") || strings.HasPrefix(n, "39"):
		return "diners"
	case prefixIn(3528, 3589, 4):
		return "jcb"
	}
	return "unknown"
}
