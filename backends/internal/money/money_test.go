package money

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Cents
		ok   bool
	}{
		{"1299.99", 129999, true},
		{"0", 0, true},
		{"0.1", 10, true},
		{"0.10", 10, true},
		{"12.5", 1250, true},
		{"-0.99", -99, true},
		{"100", 10000, true},
		{"0.29", 29, true}, // 0.29*100 is 28.999999999999996 as a float
		{"92233720368547758.07", math.MaxInt64, true},
		{"92233720368547758.08", 0, false},
		{"922337203685477580", 0, false},
		{"1.999", 0, false},
		{"1.", 0, false},
		{".5", 0, false},
		{"+1", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"1,5", 0, false},
		{" 1", 0, false},
		{"NaN", 0, false},
	} {
		got, err := Parse(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok && (err == nil || !errors.Is(err, ErrInvalid)) {
			t.Errorf("Parse(%q) = %d, %v; want ErrInvalid", tc.in, got, err)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   Cents
		want string
	}{
		{129999, "1299.99"}, {0, "0.00"}, {5, "0.05"}, {-5, "-0.05"}, {1200, "12.00"},
		{math.MaxInt64, "92233720368547758.07"}, {math.MinInt64, "-92233720368547758.08"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Cents(%d).String() = %q; want %q", int64(tc.in), got, tc.want)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	type item struct {
		Price Cents `json:"price"`
	}
	var it item
	if err := json.Unmarshal([]byte(`{"price": 1299.99}`), &it); err != nil {
		t.Fatal(err)
	}
	if it.Price != 129999 {
		t.Fatalf("price = %d; want 129999", it.Price)
	}
	out, _ := json.Marshal(it)
	if string(out) != `{"price":1299.99}` {
		t.Fatalf("marshal = %s", out)
	}
}

func TestUnmarshalNamesField(t *testing.T) {
	type item struct {
		Price Cents `json:"price"`
	}
	for _, body := range []string{`{"price": 1.999}`, `{"price": "12"}`, `{"price": 1e2}`, `{"price": true}`} {
		var it item
		err := json.Unmarshal([]byte(body), &it)
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field != "price" {
			t.Errorf("%s: err = %v; want UnmarshalTypeError on field price", body, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1299.99", "-0.5", "1.", "1e3", "99999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		// Whatever parses renders back to an equal amount.
		back, err := Parse(c.String())
		if err != nil || back != c {
			t.Fatalf("Parse(%q) = %d, renders %q, parses back to %d, %v", s, c, c.String(), back, err)
		}
		if strings.ContainsAny(s, "eE+") {
			t.Fatalf("Parse(%q) accepted an exponent or plus sign", s)
		}
	})
}

func ExampleParse() {
	price, err := Parse("1299.99")
	if err != nil {
		panic(err)
	}
	total := price * 3
	fmt.Println(int64(price), total)
	// Output: 129999 3899.97
}
