package runner

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/archway-gateway/archway/bench/caddyconf"
	"github.com/archway-gateway/archway/bench/haproxyconf"
	"github.com/archway-gateway/archway/bench/nginxconf"
	"github.com/archway-gateway/archway/bench/stats"
	"github.com/archway-gateway/archway/gateway/config"
)

// proxyProc is a running proxy.
type proxyProc struct {
	kind  string
	proc  *process
	addr  string
	admin string // Archway's admin API, Caddy's admin API
	dir   string
	conf  string // the config file it reads
	tls   bool
	// h2c: the listener speaks HTTP/2 with prior knowledge, and for nginx and HAProxy only that.
	h2c bool
	// render turns a routes.yaml into this proxy's configuration file (Archway: itself).
	render func(routes []byte) ([]byte, error)
	// reload makes the running proxy apply the file at conf.
	reload func() error
	// accessLog is the file its access log lines end in (empty: the log is off).
	accessLog string
	sink      *logSink // HAProxy's syslog socket reader
	// traced: Archway with tracing on, exporting to the scenario's collector.
	traced bool
}

func (px *proxyProc) url(path string) string {
	if px.tls {
		return "https://" + px.addr + path
	}
	return "http://" + px.addr + path
}

func (px *proxyProc) stop() {
	if strings.HasPrefix(px.kind, "nginx") && !px.proc.exited() {
		_ = px.proc.cmd.Process.Signal(syscall.SIGQUIT) // nginx: graceful stop
	}
	px.proc.stop(10 * time.Second)
	if px.sink != nil {
		px.sink.close()
	}
}

// routesFor is bench/routes.yaml as the scenario runs it: with the access log on (writing to
// dir/access.log) for the accesslog scenario, with one TLS listener for the TLS scenarios.
func (r *Runner) routesFor(s *scenario, dir string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join(r.cfg.Repo, "bench", "routes.yaml"))
	if err != nil {
		return nil, err
	}
	replace := func(old, new string) error {
		if !bytes.Contains(src, []byte(old)) {
			return fmt.Errorf("bench/routes.yaml: %q not found (the scenario %s rewrites it)", old, s.name)
		}
		src = bytes.Replace(src, []byte(old), []byte(new), 1)
		return nil
	}
	if s.accessLog {
		if err := replace("access_log:\n  enabled: false\n", fmt.Sprintf("access_log:\n  enabled: true\n  output: %q\n", filepath.Join(dir, "access.log"))); err != nil {
			return nil, err
		}
	}
	if s.tls {
		if err := replace(`  listen: "${BENCH_LISTEN:-:18080}"`+"\n", fmt.Sprintf(
			"  listeners:\n    - addr: \"${BENCH_LISTEN:-:18080}\"\n      tls: {certificates: [{cert: %q, key: %q}]}\n", r.cert.Cert, r.cert.Key)); err != nil {
			return nil, err
		}
	}
	if s.h2c {
		if err := replace(`  listen: "${BENCH_LISTEN:-:18080}"`+"\n",
			"  listeners:\n    - addr: \"${BENCH_LISTEN:-:18080}\"\n      http2: true\n"); err != nil {
			return nil, err
		}
	}
	return src, nil
}

func (r *Runner) parseRoutes(routes []byte) (*config.Config, error) {
	return config.ParseWithEnv(routes, "bench/routes.yaml", func(k string) (string, bool) {
		v, ok := r.env[k]
		return v, ok
	})
}

func (r *Runner) startProxy(ctx context.Context, pl placement, kind string, s *scenario) (*proxyProc, error) {
	dir := filepath.Join(r.dir, pl.name+"-"+s.name+"-"+kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src, err := r.routesFor(s, dir)
	if err != nil {
		return nil, err
	}
	px := &proxyProc{kind: kind, dir: dir, tls: s.tls, h2c: s.h2c}
	if s.accessLog {
		px.accessLog = filepath.Join(dir, "access.log")
	}
	var path string
	var args, env []string
	_, isVariant := r.variant(kind)
	switch {
	case kind == stats.Archway || kind == stats.ArchwayBefore || kind == stats.ArchwayPark || kind == stats.ArchwayTraced || isVariant:
		px.addr = r.env["BENCH_LISTEN"]
		px.admin = r.env["BENCH_ADMIN"]
		path = r.bin("gateway")
		switch kind {
		case stats.ArchwayBefore:
			px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
			px.admin = fmt.Sprintf("127.0.0.1:%d", r.ports["admin-before"])
			path = r.cfg.Before
		case stats.ArchwayTraced:
			px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
			px.admin = fmt.Sprintf("127.0.0.1:%d", r.ports["admin-traced"])
			if r.jaeger == nil {
				return nil, fmt.Errorf("%s needs the scenario's collector", kind)
			}
			if src, err = tracedRoutes(src, r.jaeger.otlpHTTP); err != nil {
				return nil, err
			}
			px.traced = true
		}
		px.conf = filepath.Join(dir, "routes.yaml")
		px.render = func(routes []byte) ([]byte, error) { return routes, nil }
		if kind == stats.ArchwayPark {
			px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
			px.admin = fmt.Sprintf("127.0.0.1:%d", r.ports["admin-park"])
			px.render = withParking
		}
		if isVariant {
			px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
			px.admin = fmt.Sprintf("127.0.0.1:%d", r.ports["admin-"+kind])
		}
		px.reload = func() error { return postReload("http://"+px.admin+"/reload", "", nil) }
		env = r.archwayEnv(pl, kind, px.addr, px.admin)
		args = []string{"-config", px.conf}
	case kind == "nginx" || kind == "nginx-auto":
		px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
		o := nginxconf.Options{Listen: px.addr, Workers: "1", Dir: dir}
		if s.name == stats.ScenarioIdleWS {
			o.WorkerConnections = max(16384, 2*idleWSCount()+1024) // client and upstream side of each
		}
		if kind == "nginx-auto" {
			o.Workers = "auto"
		}
		if s.tls {
			o.TLSCert, o.TLSKey = r.cert.Cert, r.cert.Key
		}
		o.HTTP2 = s.h2 || s.h2c
		px.conf = filepath.Join(dir, "nginx.conf")
		px.render = func(routes []byte) ([]byte, error) {
			cfg, err := r.parseRoutes(routes)
			if err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			err = nginxconf.Write(&buf, cfg, o)
			return buf.Bytes(), err
		}
		px.reload = func() error {
			out, err := exec.Command(r.nginx, "-p", dir, "-c", px.conf, "-e", filepath.Join(dir, "error.log"), "-s", "reload").CombinedOutput()
			if err != nil {
				return fmt.Errorf("nginx -s reload: %w: %s", err, out)
			}
			return nil
		}
		path, args = r.nginx, []string{"-p", dir, "-c", px.conf, "-e", filepath.Join(dir, "error.log")}
	case kind == stats.HAProxy:
		px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
		o := haproxyconf.Options{Listen: px.addr, Threads: pl.gomaxprocs, Dir: dir, FDLimit: fileLimit()}
		if s.tls {
			o.TLS = r.cert.Combined
		}
		o.HTTP2 = s.h2 || s.h2c
		if s.accessLog {
			o.LogAddr = filepath.Join(dir, "log.sock")
			if px.sink, err = newLogSink(o.LogAddr, px.accessLog); err != nil {
				return nil, err
			}
		}
		px.conf = filepath.Join(dir, "haproxy.cfg")
		px.render = func(routes []byte) ([]byte, error) {
			cfg, err := r.parseRoutes(routes)
			if err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			err = haproxyconf.Write(&buf, cfg, o)
			return buf.Bytes(), err
		}
		// Master-worker mode: SIGUSR2 to the master re-reads the file and starts new workers;
		// the old ones finish their connections.
		px.reload = func() error { return px.proc.cmd.Process.Signal(syscall.SIGUSR2) }
		path, args = r.haproxy, []string{"-W", "-db", "-f", px.conf}
	case kind == stats.Caddy:
		px.addr = fmt.Sprintf("127.0.0.1:%d", r.ports[kind])
		px.admin = fmt.Sprintf("127.0.0.1:%d", r.ports["caddy-admin"])
		o := caddyconf.Options{Listen: px.addr, Admin: px.admin}
		if s.tls {
			o.TLSCert, o.TLSKey = r.cert.Cert, r.cert.Key
			o.HTTP2 = s.h2
		}
		px.conf = filepath.Join(dir, "Caddyfile")
		px.render = func(routes []byte) ([]byte, error) {
			cfg, err := r.parseRoutes(routes)
			if err != nil {
				return nil, err
			}
			var buf bytes.Buffer
			err = caddyconf.Write(&buf, cfg, o)
			return buf.Bytes(), err
		}
		px.reload = func() error {
			conf, err := os.ReadFile(px.conf)
			if err != nil {
				return err
			}
			return postReload("http://"+px.admin+"/load", "text/caddyfile", conf)
		}
		env = []string{fmt.Sprintf("GOMAXPROCS=%d", pl.gomaxprocs), "HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
		path, args = r.caddy, []string{"run", "--config", px.conf, "--adapter", "caddyfile"}
	default:
		return nil, fmt.Errorf("unknown proxy %q", kind)
	}
	conf, err := px.render(src)
	if err != nil {
		return nil, fmt.Errorf("%s configuration: %w", kind, err)
	}
	if err := writeFile(px.conf, conf); err != nil {
		return nil, err
	}
	if kind == "nginx" || kind == stats.HAProxy || kind == stats.Caddy {
		// The baselines, saved beside the results so they can be audited.
		name := map[string]string{"nginx": "nginx.conf", stats.HAProxy: "haproxy.cfg", stats.Caddy: "Caddyfile"}[kind]
		if err := writeFile(filepath.Join(r.cfg.Results, r.date+"-"+name), conf); err != nil {
			return nil, err
		}
	}
	if px.proc, err = start(kind, pl.proxyCPU, env, path, args...); err != nil {
		return nil, err
	}
	client := r.clientFor(px, time.Second)
	defer client.CloseIdleConnections()
	if err := waitHTTPWith(ctx, client, px.url("/health"), px.proc, 20*time.Second); err != nil {
		px.stop()
		return nil, err
	}
	return px, nil
}

func postReload(url, contentType string, body []byte) error {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// client is an HTTP client that trusts the benchmark's certificate.
func (r *Runner) client(timeout time.Duration) *http.Client {
	tr := &http.Transport{TLSClientConfig: r.tlsClient(), DisableKeepAlives: true}
	return &http.Client{Timeout: timeout, Transport: tr}
}

// clientFor is an HTTP client for px: h2c when px speaks it (the h2c scenario), else r.client.
func (r *Runner) clientFor(px *proxyProc, timeout time.Duration) *http.Client {
	if px.h2c {
		return h2cClient(timeout)
	}
	return r.client(timeout)
}

// h2cClient speaks HTTP/2 with prior knowledge (h2c) only, as the h2c scenario's load does.
func h2cClient(timeout time.Duration) *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Protocols: &protocols}}
}

func (r *Runner) tlsClient() *tls.Config {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(r.cert.Cert); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// logSink is the syslog socket HAProxy sends its access log to (HAProxy writes no files): it
// appends each message as a line to a file, buffered, as a local syslog daemon would.
type logSink struct {
	conn *net.UnixConn
	mu   sync.Mutex
	w    *bufio.Writer
	f    *os.File
	done chan struct{}
}

func newLogSink(sock, file string) (*logSink, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	// A large receive buffer: HAProxy drops a log line rather than wait when the socket is
	// full, and a short queue would count the reader's hiccups against HAProxy.
	_ = conn.SetReadBuffer(32 << 20)
	f, err := os.Create(file)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &logSink{conn: conn, w: bufio.NewWriterSize(f, 64<<10), f: f, done: make(chan struct{})}
	go s.run()
	return s, nil
}

func (s *logSink) run() {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		_, _ = s.w.Write(bytes.TrimRight(buf[:n], "\n"))
		_ = s.w.WriteByte('\n')
		s.mu.Unlock()
	}
}

func (s *logSink) flush() {
	s.mu.Lock()
	_ = s.w.Flush()
	s.mu.Unlock()
}

func (s *logSink) close() {
	s.conn.Close()
	<-s.done
	s.flush()
	s.f.Close()
}

// countLines counts the lines of a file (0 when it does not exist).
func countLines(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 256<<10)
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err != nil {
			return n
		}
	}
}

// withParking is bench/routes.yaml with server.idle_park_after set: archway-park.
func withParking(routes []byte) ([]byte, error) {
	if !bytes.Contains(routes, []byte("\nserver:\n")) {
		return nil, fmt.Errorf("bench/routes.yaml: no server section to set idle_park_after in")
	}
	return bytes.Replace(routes, []byte("\nserver:\n"), []byte("\nserver:\n  idle_park_after: "+ParkAfter+"\n"), 1), nil
}

// waitParked waits until the gateway whose admin API is on admin has n connections parked and
// has returned their memory to the OS once since.
func waitParked(admin string, n int, limit time.Duration) error {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	releases := -1.0
	for {
		parked, rel, err := parkingMetrics(client, admin)
		if err == nil && parked >= float64(n) {
			if releases < 0 {
				releases = rel
			} else if rel > releases {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for parked connections: %v of %d parked, %v memory releases after %v (%v)", parked, n, rel, limit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parkingMetrics(client *http.Client, admin string) (parked, releases float64, err error) {
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var v float64
		switch {
		case strings.HasPrefix(line, "archway_parked_connections{"):
			_, err = fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			parked += v
		case strings.HasPrefix(line, "archway_parking_memory_releases_total "):
			_, err = fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			releases = v
		}
	}
	return parked, releases, err
}
