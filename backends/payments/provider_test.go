package main

import (
	"context"
	"testing"
)

func TestLuhn(t *testing.T) {
	for n, want := range map[string]bool{
		"4242424242424242": true, "4000000000000002": true, "4000000000009995": true, "378282246310005": true,
		"4242424242424241": false, "4000000000000001": false, "1234567812345678": false, "0000000000000000": true,
	} {
		if got := luhnValid(n); got != want {
			t.Errorf("luhnValid(%s) = %v; want %v", n, got, want)
		}
	}
	// Every number the simulator knows is a valid card number, or it could never be used.
	for n := range simulatorApproves {
		if !luhnValid(n) {
			t.Errorf("approving test card %s fails Luhn", n)
		}
	}
	for n := range simulatorDeclines {
		if !luhnValid(n) {
			t.Errorf("declining test card %s fails Luhn", n)
		}
	}
}

func TestCardBrand(t *testing.T) {
	for n, want := range map[string]string{
		"4242424242424242": "visa", "5555555555554444": "mastercard", "2223003122003222": "mastercard",
		"378282246310005": "amex", "6011111111111117": "discover", "3056930009020004": "diners",
		"3566002020360505": "jcb", "9999999999999995": "unknown",
	} {
		if got := cardBrand(n); got != want {
			t.Errorf("cardBrand(%s) = %s; want %s", n, got, want)
		}
	}
}

func TestSimulatorUsesStripeTestCards(t *testing.T) {
	ctx := context.Background()
	for n, want := range map[string]string{
		"4242424242424242": "",
		"5555555555554444": "",
		"4000000000000002": "generic_decline",
		"4000000000009995": "insufficient_funds",
		"4000000000009987": "lost_card",
		"4000000000000069": "expired_card",
		"4111111111111111": "live_card_in_test_mode", // Luhn-valid, not a Stripe test card
	} {
		for range 2 { // deterministic: the same card always gets the same answer
			out, err := Simulator{}.Charge(ctx, Charge{Key: "k", Amount: 100, Currency: "USD", Card: Card{Number: n}})
			if err != nil || out.Approved != (want == "") || out.DeclineReason != want || out.Reference == "" {
				t.Fatalf("Charge(%s) = %+v, %v; want decline reason %q", n, out, err, want)
			}
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := (Simulator{}).Charge(cancelled, Charge{Card: Card{Number: "4242424242424242"}}); err == nil {
		t.Fatal("a cancelled charge succeeded")
	}
}
