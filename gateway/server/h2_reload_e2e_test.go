package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2cSettings opens an h2c connection and returns it with its framer and the server's first
// SETTINGS.
func h2cSettings(t *testing.T, addr string) (net.Conn, *http2.Framer, map[http2.SettingID]uint32) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // a bound for a broken server, not a wait
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	settings := map[http2.SettingID]uint32{}
	_ = f.(*http2.SettingsFrame).ForeachSetting(func(s http2.Setting) error { settings[s.ID] = s.Val; return nil })
	return conn, fr, settings
}

// TestHTTP2SettingsFollowReload: a reload that changes server.http2 sends the open HTTP/2
// connections GOAWAY(NO_ERROR) and gives new connections the new settings; turning a listener's
// http2 off is refused as needing a restart, and the running configuration stays.
func TestHTTP2SettingsFollowReload(t *testing.T) {
	up := startUpstream(t, "app", nil)
	rest := fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, up.Addr)
	g := startH2Gateway(t, "", rest)
	_, fr, before := h2cSettings(t, g.plain)
	if before[http2.SettingMaxConcurrentStreams] != 250 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want the default 250", before[http2.SettingMaxConcurrentStreams])
	}
	yaml := func(extra string) string {
		return fmt.Sprintf(`
server:
  listeners:
    - {name: h2c, addr: "%s", http2: true}
    - name: h2
      addr: "%s"
      tls:
        certificates: [{cert: %s, key: %s}]%s
  http2: {max_concurrent_streams: 100}
%s`, g.plain, g.tls, g.pki.shop.CertFile, g.pki.shop.KeyFile, extra, rest)
	}
	if _, err := g.Apply(mustParse(t, yaml("\n      http2: false")), "test"); err == nil || !strings.Contains(err.Error(), "server.listeners: changing it needs a restart") {
		t.Fatalf("turning http2 off: %v", err)
	}
	if _, err := g.Apply(mustParse(t, yaml("")), "test"); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the old connection ended without GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeNo {
				t.Fatalf("GOAWAY %v", ga.ErrCode)
			}
			break
		}
	}
	if _, _, after := h2cSettings(t, g.plain); after[http2.SettingMaxConcurrentStreams] != 100 {
		t.Fatalf("after the reload: SETTINGS_MAX_CONCURRENT_STREAMS %d, want 100", after[http2.SettingMaxConcurrentStreams])
	}
}

// TestHTTP2BodyLimits: max_body_bytes holds over HTTP/2 as over HTTP/1.1, with and without a
// declared length, and nothing of a refused body reaches the upstream.
func TestHTTP2BodyLimits(t *testing.T) {
	up := startUpstream(t, "app", nil)
	g := startH2Gateway(t, "  max_body_bytes: 1KiB", fmt.Sprintf(`
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"]}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app}
`, up.Addr))
	for kind, base := range map[string]string{"h2c": "http://" + g.plain, "h2": "https://" + g.tls} {
		for _, declared := range []bool{true, false} {
			body := io.Reader(bytes.NewReader(bytes.Repeat([]byte("x"), 4096)))
			if !declared {
				body = io.MultiReader(body) // hides the length: sent without content-length
			}
			req, _ := http.NewRequest(http.MethodPost, base+"/upload", body)
			resp, err := g.client(kind).Do(req)
			if err != nil {
				t.Fatalf("%s declared=%t: %v", kind, declared, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("%s declared=%t: %d, want 413", kind, declared, resp.StatusCode)
			}
		}
	}
	for _, r := range up.requestsSnapshot() {
		if r.BodyLen > 1024 {
			t.Errorf("the upstream received %d bytes of a refused body", r.BodyLen)
		}
	}
}
