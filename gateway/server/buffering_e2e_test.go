package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// bigBody is a body no kernel socket buffer pair can absorb (the gateway's send buffer grows to
// 4 MiB on Linux, the slow readers' receive buffers are kept small), so without buffering the
// upstream connection stays busy for as long as its reader stalls.
func bigBody() []byte {
	b := make([]byte, 8<<20)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// TestSlowReadersDoNotPinUpstreamConnections: 20 clients ask for an 8 MiB response from an
// upstream the gateway may open 4 connections to, read its first bytes and stall. The gateway
// must have read every body ahead of them (memory, then an unlinked temporary file) and given
// the connections back, so a fast client of the same upstream gets 200, not 503 after the queue
// timeout; the stalled clients then get byte-exact bodies. Both framings are buffered.
func TestSlowReadersDoNotPinUpstreamConnections(t *testing.T) {
	body := bigBody()
	for _, framing := range []string{"content-length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			up := startUpstream(t, "big", func(ctx *fasthttp.RequestCtx) {
				if string(ctx.Path()) != "/big" {
					ctx.SetBodyString("small")
					return
				}
				ctx.SetContentType("application/octet-stream")
				if framing == "chunked" {
					ctx.SetBodyStream(bytes.NewReader(body), -1)
					return
				}
				ctx.SetBody(body)
			})
			tempDir := t.TempDir()
			gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
server: {write_timeout: 5m}
upstreams:
  app:
    targets: ["%s"]
    max_conns_per_target: 4
    queue_timeout: 1s
    buffering: {temp_dir: %q}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app, timeout: 1m}
`, up.Addr, tempDir))

			const readers = 20
			stall := make(chan struct{})
			stalled := make(chan error, readers)
			done := make(chan error, readers)
			var wg sync.WaitGroup
			// The readers come in groups of max_conns_per_target, each after the previous group
			// stalled: when the gateway has freed the connections, a group never waits for one;
			// when it has not, the second group gets 503 after queue_timeout.
			const group = 4
			for started := 0; started < readers; started += group {
				for range group {
					wg.Add(1)
					go func() {
						defer wg.Done()
						done <- slowRead(gw.Addr, body, stall, stalled)
					}()
				}
				for range group {
					if err := <-stalled; err != nil {
						close(stall)
						t.Fatalf("a slow reader after %d stalled: %v", started, err)
					}
				}
			}
			// Every reader has its status line and first bytes, and reads no more.
			target := gw.Snapshot().Upstreams["app"].Targets()[0]
			st := target.Stats()
			if st.InFlight != 0 || st.Buffered != readers || st.Spilled != readers {
				close(stall)
				t.Fatalf("with %d readers stalled: in flight %d, buffered %d, spilled %d; want 0, %d, %d",
					readers, st.InFlight, st.Buffered, st.Spilled, readers, readers)
			}
			if st.OpenConns > 4 || up.accepted.Load() > 4 {
				t.Errorf("%d connections open (%d accepted by the upstream), over max_conns_per_target 4", st.OpenConns, up.accepted.Load())
			}
			if entries, err := os.ReadDir(tempDir); err != nil || len(entries) != 0 {
				t.Errorf("temp_dir holds %d names (err %v); temporary files must be unlinked at once", len(entries), err)
			}
			r := get(t, gw.URL+"/fast")
			if r.Status != http.StatusOK || r.Body != "small" {
				close(stall)
				t.Fatalf("a fast client while %d readers stall: %d %q, want 200", readers, r.Status, r.Body)
			}
			close(stall)
			wg.Wait()
			close(done)
			for err := range done {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// slowRead asks for /big with a small receive buffer, reads the header and 4 KiB of the body,
// reports on stalled, waits for stall to close, and then reads and checks the rest.
func slowRead(addr string, want []byte, stall <-chan struct{}, stalled chan<- error) error {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		stalled <- err
		return nil
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: shop\r\n\r\n"); err != nil {
		stalled <- err
		return nil
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		stalled <- err
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		stalled <- fmt.Errorf("status %d, want 200", resp.StatusCode)
		return nil
	}
	got := make([]byte, 32<<10)
	off := 0
	check := func(n int) error {
		if off+n > len(want) || !bytes.Equal(got[:n], want[off:off+n]) {
			return fmt.Errorf("body differs from the upstream's at offset %d", off)
		}
		off += n
		return nil
	}
	n, err := io.ReadFull(resp.Body, got[:4096])
	if err != nil {
		stalled <- fmt.Errorf("first bytes: %w", err)
		return nil
	}
	if err := check(n); err != nil {
		stalled <- err
		return nil
	}
	stalled <- nil
	<-stall
	for {
		n, err := resp.Body.Read(got)
		if cerr := check(n); cerr != nil {
			return cerr
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", off, err)
		}
	}
	if off != len(want) {
		return fmt.Errorf("got %d bytes, want %d", off, len(want))
	}
	return nil
}
