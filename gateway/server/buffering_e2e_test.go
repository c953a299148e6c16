package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/archway-gateway/archway/gateway/server"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/valyala/fasthttp"
)

// patterned returns size bytes of a pattern, so a byte out of place is seen.
func patterned(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// slowReaderLoad is how many slow readers of how large a body TestSlowReadersDoNotPinUpstream
// Connections runs. The figure is 1000 readers of 16 MiB: about 16 GiB of temporary
// files at once and minutes of copying, more than a CI runner's disk. By default the test runs
// 50 readers of 8 MiB (a body no kernel socket buffer pair absorbs: the readers' receive buffers
// and the gateway's send buffers are kept small, so without buffering the upstream connection
// stays busy for as long as its reader stalls);
// ARCHWAY_SLOW_READERS=1000 ARCHWAY_SLOW_READER_MIB=16 runs the figure.
func slowReaderLoad(t *testing.T) (readers, size int) {
	readers, size = 50, 8<<20
	if v := os.Getenv("ARCHWAY_SLOW_READERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ARCHWAY_SLOW_READERS=%q: want a count", v)
		}
		readers = n
	}
	if v := os.Getenv("ARCHWAY_SLOW_READER_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ARCHWAY_SLOW_READER_MIB=%q: want a size in MiB", v)
		}
		size = n << 20
	}
	return readers, size
}

// tempFilesOpen counts this process's open descriptors of files created in dir (unlinked ones
// included): the response buffers' temporary files. -1 where /proc is not there.
func tempFilesOpen(dir string) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}

// smallSendBuffers gives each accepted connection a 64 KiB send buffer. The test runs its
// slow readers and the gateway in one kernel: with autotuned send buffers (up to 4 MiB each),
// a thousand stalled readers hold about 1.8 GiB of socket memory, past the kernel's TCP memory
// pressure point (net.ipv4.tcp_mem), and every TCP transfer on the machine, the upstream's to
// the gateway included, slows to a crawl. A fixed buffer keeps the kernel out of the test.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// startGatewaySmallSendBuffers is startGateway with smallSendBuffers on the listener.
func startGatewaySmallSendBuffers(t *testing.T, yaml string) *gateway {
	t.Helper()
	gw, err := server.New(mustParse(t, yaml), server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.Serve(smallSendBuffers{ln}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(ctx)
	})
	return &gateway{Gateway: gw, Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
}

// TestSlowReadersDoNotPinUpstreamConnections: many clients ask for a large response from an
// upstream the gateway may open 4 connections to, read its first bytes and stall. The gateway
// reads every body ahead of them (memory, then an unlinked temporary file) and gives the
// connections back, so the next clients never wait for one and a fast client of the same
// upstream gets 200, not 503 after the queue timeout; the stalled clients then get byte-exact
// bodies, and every temporary file is gone. Both framings are buffered.
func TestSlowReadersDoNotPinUpstreamConnections(t *testing.T) {
	readers, size := slowReaderLoad(t)
	body := patterned(size)
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
			var fs syscall.Statfs_t
			if err := syscall.Statfs(tempDir, &fs); err == nil {
				need := uint64(readers) * uint64(size)
				if free := fs.Bavail * uint64(fs.Bsize); free < need+need/10 {
					msg := fmt.Sprintf("%d readers of %d MiB need %d MiB of temporary files; %s has %d MiB free",
						readers, size>>20, need>>20, tempDir, free>>20)
					if testenv.InCI() {
						t.Fatalf("CI=true: %s", msg) // a CI machine has the room: never pass by skipping
					}
					t.Skip(msg)
				}
			}
			gw := startGatewaySmallSendBuffers(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
server: {write_timeout: 10m}
upstreams:
  app:
    targets: ["%s"]
    max_conns_per_target: 4
    queue_timeout: 30s
    buffering: {temp_dir: %q}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app, timeout: 10m}
`, up.Addr, tempDir))
			target := gw.Snapshot().Upstreams["app"].Targets()[0]

			stall := make(chan struct{})
			stalled := make(chan error, readers)
			done := make(chan error, readers)
			var wg sync.WaitGroup
			defer func() {
				select {
				case <-stall:
				default:
					close(stall)
				}
				wg.Wait()
			}()
			// The readers come in groups of max_conns_per_target, each when the previous group
			// has stalled. When the gateway gives the connections back once it has the bodies, a
			// group waits at most for the previous group's bodies to arrive; when it does not
			// (buffering off), the next group gets 503 after queue_timeout.
			const group = 4
			for started := 0; started < readers; started += group {
				n := min(group, readers-started)
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						done <- slowRead(gw.Addr, body, stall, stalled)
					}()
				}
				for range n {
					if err := <-stalled; err != nil {
						t.Fatalf("a slow reader after %d stalled: %v", started, err)
					}
				}
			}
			// Every reader has its status line and first bytes, and reads no more; the gateway
			// reads on until it has every body.
			waitFor(t, 5*time.Minute, func() bool { st := target.Stats(); return st.InFlight == 0 && st.Buffered == uint64(readers) })
			st := target.Stats()
			if st.Buffered != uint64(readers) || st.Spilled != uint64(readers) {
				t.Fatalf("with %d readers stalled: buffered %d, spilled %d; want %d, %d", readers, st.Buffered, st.Spilled, readers, readers)
			}
			if st.OpenConns > 4 || up.accepted.Load() > 4 {
				t.Errorf("%d connections open (%d accepted by the upstream), over max_conns_per_target 4", st.OpenConns, up.accepted.Load())
			}
			if entries, err := os.ReadDir(tempDir); err != nil || len(entries) != 0 {
				t.Errorf("temp_dir holds %d names (err %v); temporary files must be unlinked at once", len(entries), err)
			}
			if n := tempFilesOpen(tempDir); n >= 0 && n != readers {
				t.Errorf("%d temporary files open with %d readers stalled, want one each", n, readers)
			}
			r := get(t, gw.URL+"/fast")
			if r.Status != http.StatusOK || r.Body != "small" {
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
			// fasthttp closes each buffer after writing its last byte; the descriptors go then.
			waitFor(t, time.Minute, func() bool { return tempFilesOpen(tempDir) <= 0 })
		})
	}
}

// TestBufferedBodyFirstBytesWhileUpstreamProduces: through the gateway, a client receives the
// first bytes of a buffered body while the upstream still holds back the rest (the upstream
// waits for the client to have them), then the rest, byte-exact.
func TestBufferedBodyFirstBytesWhileUpstreamProduces(t *testing.T) {
	body := patterned(6 << 20)
	const first = 2 << 20 // past the memory bound: the first bytes come from memory and the file
	release := make(chan struct{})
	up := startUpstream(t, "slow", func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.Write(body[:first])
			_ = w.Flush()
			<-release
			_, _ = w.Write(body[first:])
		})
	})
	gw := startGateway(t, fmt.Sprintf(`
admin: {listen: ""}
access_log: {enabled: false}
upstreams:
  app: {targets: ["%s"], buffering: {temp_dir: %q}}
routes:
  - {name: app, match: {path_prefix: /}, upstream: app, timeout: 1m}
`, up.Addr, t.TempDir()))
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	c, br := dialGateway(t, gw.Addr)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: shop\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the response head while the upstream holds its body: %v", err)
	}
	defer resp.Body.Close()
	got := make([]byte, len(body))
	if _, err := io.ReadFull(resp.Body, got[:first]); err != nil || !bytes.Equal(got[:first], body[:first]) {
		t.Fatalf("the first %d bytes while the upstream holds the rest: %v", first, err)
	}
	close(release)
	if _, err := io.ReadFull(resp.Body, got[first:]); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the rest: %v (bodies equal: %v)", err, bytes.Equal(got, body))
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
