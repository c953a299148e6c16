package loadgen

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// ErrorKinds splits failed requests by what went wrong, so contenders are compared on what a
// client would see. ReusedClosed is the one kind a real client does not see: browsers and most
// HTTP libraries (Go's net/http, curl, OkHttp) send an idempotent request again on a new
// connection when a reused keep-alive connection closes before any byte of the response, and
// so does Closed, once: that retry's own failure is counted under its own kind.
type ErrorKinds struct {
	Connect      int64 `json:"connect"`       // dial refused or timed out
	ReusedClosed int64 `json:"reused_closed"` // reused connection closed or reset before any response byte (retried)
	Read         int64 `json:"read"`          // any other read or write failure (a fresh connection, or mid-response)
	Timeout      int64 `json:"timeout"`       // no complete response within the timeout
	Status       int64 `json:"status"`        // a response with status 500 or more
}

// Seen is the failures a client would see: every kind but ReusedClosed.
func (e ErrorKinds) Seen() int64 { return e.Connect + e.Read + e.Timeout + e.Status }

// ClosedResult is a closed-loop run's outcome.
type ClosedResult struct {
	Completed int64
	Elapsed   time.Duration
	Errors    ErrorKinds
}

// Closed drives GET path on addr over conns keep-alive connections, each sending its next
// request when the previous one is answered, for d, and classifies every failure (ErrorKinds).
// A request whose reused connection closed before any response byte is sent once more on a
// new connection, as a browser does; timeout bounds each request.
func Closed(addr, path string, conns int, d, timeout time.Duration) (*ClosedResult, error) {
	if conns <= 0 || d <= 0 {
		return nil, errors.New("closed: connections and duration must be positive")
	}
	raw := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: archway-bench\r\n\r\n")
	start := time.Now()
	end := start.Add(d)
	var completed atomic.Int64
	var kinds [5]atomic.Int64 // indexed like the kind constants below
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &closedConn{addr: addr, raw: raw, timeout: timeout}
			defer cl.close()
			for time.Now().Before(end) {
				k := cl.do()
				if k == kindReusedClosed {
					kinds[k].Add(1)
					k = cl.do() // the client's transparent retry, on a new connection
				}
				if k == kindOK {
					completed.Add(1)
					continue
				}
				kinds[k].Add(1)
				if k == kindConnect {
					time.Sleep(time.Millisecond) // a refused dial returns at once: do not spin
				}
			}
		}()
	}
	wg.Wait()
	return &ClosedResult{
		Completed: completed.Load(),
		Elapsed:   time.Since(start),
		Errors: ErrorKinds{Connect: kinds[kindConnect].Load(), ReusedClosed: kinds[kindReusedClosed].Load(),
			Read: kinds[kindRead].Load(), Timeout: kinds[kindTimeout].Load(), Status: kinds[kindStatus].Load()},
	}, nil
}

const (
	kindConnect = iota
	kindReusedClosed
	kindRead
	kindTimeout
	kindStatus
	kindOK
)

// closedConn is one client connection of Closed.
type closedConn struct {
	addr    string
	raw     []byte
	timeout time.Duration
	c       net.Conn
	br      *bufio.Reader
	counted countingReader
	served  int // responses read on c
	resp    fasthttp.Response
}

func (cl *closedConn) close() {
	if cl.c != nil {
		cl.c.Close()
		cl.c = nil
	}
}

// do sends one request and reads its response, returning its kind.
func (cl *closedConn) do() int {
	if cl.c == nil {
		c, err := net.DialTimeout("tcp", cl.addr, cl.timeout)
		if err != nil {
			return kindConnect
		}
		cl.c, cl.served = c, 0
		cl.counted.r = c
		if cl.br == nil {
			cl.br = bufio.NewReaderSize(&cl.counted, 16<<10)
		} else {
			cl.br.Reset(&cl.counted)
		}
	}
	reused := cl.served > 0
	cl.counted.n = 0
	_ = cl.c.SetDeadline(time.Now().Add(cl.timeout))
	_, err := cl.c.Write(cl.raw)
	if err == nil {
		err = cl.resp.Read(cl.br)
	}
	if err != nil {
		cl.close()
		switch {
		case isTimeout(err):
			return kindTimeout
		case reused && cl.counted.n == 0 && isClosed(err):
			return kindReusedClosed
		}
		return kindRead
	}
	cl.served++
	if cl.resp.ConnectionClose() {
		cl.close()
	}
	if cl.resp.StatusCode() >= 500 {
		return kindStatus
	}
	return kindOK
}

// countingReader counts the bytes read from the connection since the request was sent.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, fasthttp.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout())
}

// isClosed is the peer closing or resetting the connection: what a keep-alive connection
// closed by the server between requests looks like to the client (EOF on read, or a reset or
// broken pipe when the request's write raced the close).
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || isFasthttpEOF(err)
}

// isFasthttpEOF: fasthttp reports a connection closed before the first response byte as its
// own error value, not io.EOF.
func isFasthttpEOF(err error) bool {
	var nr *fasthttp.ErrNothingRead
	return errors.As(err, &nr) || errors.Is(err, fasthttp.ErrConnectionClosed)
}
