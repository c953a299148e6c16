package proxy

import (
	"slices"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestAddVary(t *testing.T) {
	for _, tc := range []struct {
		existing []string
		add      string
		want     []string
	}{
		{nil, "Origin", []string{"Origin"}},
		{[]string{"Accept-Language"}, "Origin", []string{"Accept-Language", "Origin"}},
		{[]string{"accept-encoding, origin"}, "Origin", []string{"accept-encoding, origin"}},
		{[]string{"Accept", "Origin"}, "Origin", []string{"Accept", "Origin"}},
		{[]string{"*"}, "Origin", []string{"*"}},
		{[]string{"Originator"}, "Origin", []string{"Originator", "Origin"}},
	} {
		var h fasthttp.ResponseHeader
		for _, v := range tc.existing {
			h.Add("Vary", v)
		}
		AddVary(&h, []byte(tc.add))
		var got []string
		for _, v := range h.PeekAll("Vary") {
			got = append(got, string(v))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Vary %q + %s = %q, want %q", tc.existing, tc.add, got, tc.want)
		}
	}
}
