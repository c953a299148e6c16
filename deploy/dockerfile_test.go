package deploy

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/archway-gateway/archway/gateway/config"
	"github.com/archway-gateway/archway/internal/testenv"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// storefrontInImage is where the gateway image holds the built storefront (the default static
// root of deploy/compose/routes.yaml).
const storefrontInImage = "/usr/share/archway/storefront"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line  int
	cmd   string            // upper case: FROM, COPY, RUN, ...
	flags map[string]string // --from=x, --chown=..., --mount=... (the last of a repeated flag)
	args  string            // the rest, verbatim
}

type stage struct {
	name   string // AS name, or the index
	base   string // the FROM image or stage, ARGs expanded
	instrs []instruction
}

// parseDockerfile reads the Dockerfile into its global ARGs and stages. It follows the
// Dockerfile syntax the file uses: comments and parser directives on whole lines, lines joined by
// a trailing backslash (comment lines inside a continuation are dropped, as BuildKit does),
// instruction flags before the arguments, ${ARG} in FROM from the global ARGs.
func parseDockerfile(t *testing.T, file string) (globals map[string]string, stages []*stage) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var logical []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteString("\n")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, rest, _ := strings.Cut(text, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), flags: map[string]string{}}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			flag, after, _ := strings.Cut(rest, " ")
			k, v, _ := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
			in.flags[k] = v
			rest = strings.TrimSpace(after)
		}
		in.args = rest
		logical = append(logical, in)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the file ends inside a continuation", file)
	}
	globals = map[string]string{}
	for _, in := range logical {
		switch {
		case in.cmd == "FROM":
			fields := strings.Fields(expand(in.args, globals))
			st := &stage{base: fields[0], name: fmt.Sprint(len(stages))}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.name = fields[2]
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			globals[k] = v
		case len(stages) == 0:
			t.Fatalf("%s:%d: %s before the first FROM", file, in.line, in.cmd)
		default:
			st := stages[len(stages)-1]
			st.instrs = append(st.instrs, in)
		}
	}
	return globals, stages
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func expand(s string, vars map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := argRef.FindStringSubmatch(m)[1]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// jsonArgs parses an exec-form argument list (["a", "b"]).
func jsonArgs(t *testing.T, in instruction) []string {
	t.Helper()
	args := in.args
	if in.cmd == "HEALTHCHECK" {
		args = strings.TrimSpace(strings.TrimPrefix(args, "CMD"))
	}
	var list []string
	if err := json.Unmarshal([]byte(args), &list); err != nil {
		t.Fatalf("Dockerfile:%d: %s is not in exec form (no shell in the final image): %v", in.line, in.cmd, err)
	}
	return list
}

// buildContext is the Docker build context: the repository minus .dockerignore.
type buildContext struct {
	dir     string
	matcher *patternmatcher.PatternMatcher
}

func newBuildContext(t *testing.T) *buildContext {
	t.Helper()
	f, err := os.Open(filepath.Join(root(), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return &buildContext{dir: root(), matcher: m}
}

func (c *buildContext) ignored(rel string) bool {
	ok, err := c.matcher.MatchesOrParentMatches(filepath.ToSlash(rel))
	return err == nil && ok
}

// fsRoot is a stage's filesystem: absolute paths in the image live under dir.
type fsRoot struct{ dir string }

func (r fsRoot) path(p string) string { return filepath.Join(r.dir, filepath.FromSlash(p)) }

// copyInto copies src (a file or the contents of a directory) to dst as COPY does: a directory's
// contents go into dst; a file goes into dst when dst ends in / (or is a directory), else to dst
// itself. skip reports context paths .dockerignore leaves out.
func copyInto(src, dst string, dstIsDir bool, skip func(string) bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if dstIsDir {
			dst = filepath.Join(dst, filepath.Base(src))
		}
		return copyFile(src, dst, st.Mode())
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skip != nil && skip(p) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return nil // the repository's copied trees hold no links that matter to a build
		}
		return copyFile(p, target, info.Mode())
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// image is the result of replaying the Dockerfile for one SERVICE.
type image struct {
	service     string
	root        fsRoot // the final image's filesystem
	entrypoint  []string
	healthcheck []string
	env         map[string]string
	user        string
	workdir     string
	base        string
}

// replay builds the Dockerfile for SERVICE without Docker: each stage's filesystem is a
// directory; COPY copies from the build context (through .dockerignore) or an earlier stage; RUN
// runs its script with /bin/sh -c, with the stage's absolute directories mapped into that
// directory. Two things differ from `docker build`, on purpose: the base images are not there
// (the stages run on this machine's Go and Node, whose versions the test compares with the
// Dockerfile's), and `npm ci` links the node_modules tree `make storefront-deps` installed from
// the same package-lock.json instead of downloading it again.
func replay(t *testing.T, service string, storefrontDist string) *image {
	t.Helper()
	globals, stages := parseDockerfile(t, filepath.Join(root(), "Dockerfile"))
	ctx := newBuildContext(t)
	tmp := persistentTemp(t)
	roots := map[string]fsRoot{}
	var img *image
	for i, st := range stages {
		r := fsRoot{dir: filepath.Join(tmp, fmt.Sprintf("stage%d", i))}
		roots[st.name] = r
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		workdir := "/"
		img = &image{service: service, root: r, env: map[string]string{}, base: st.base}
		for _, in := range st.instrs {
			args := expand(in.args, vars)
			switch in.cmd {
			case "ARG":
				k, def, _ := strings.Cut(in.args, "=")
				if v, ok := globals[k]; ok && def == "" {
					def = v
				}
				if k == "SERVICE" {
					def = service
				}
				vars[k] = def
			case "WORKDIR":
				workdir = path.Join(workdir, args)
				if err := os.MkdirAll(r.path(workdir), 0o755); err != nil {
					t.Fatal(err)
				}
				img.workdir = workdir
			case "COPY":
				fields := strings.Fields(args)
				srcs, dst := fields[:len(fields)-1], fields[len(fields)-1]
				if !path.IsAbs(dst) {
					dst = path.Join(workdir, dst) + map[bool]string{true: "/"}[strings.HasSuffix(dst, "/") || dst == "."]
				}
				dstIsDir := strings.HasSuffix(dst, "/") || len(srcs) > 1
				for _, src := range srcs {
					var from string
					var skip func(string) bool
					if stageName, ok := in.flags["from"]; ok {
						fromRoot, ok := roots[stageName]
						if !ok {
							t.Fatalf("Dockerfile:%d: COPY --from=%s: no such stage", in.line, stageName)
						}
						from = fromRoot.path(src)
						if stageName == "storefront" && storefrontDist != "" && strings.HasSuffix(path.Clean(src), "/dist") {
							from = storefrontDist // replayed once per test run, not per image
						}
					} else {
						rel := filepath.FromSlash(path.Clean(src))
						if ctx.ignored(rel) {
							t.Fatalf("Dockerfile:%d: COPY %s: .dockerignore leaves it out of the build context", in.line, src)
						}
						from = filepath.Join(ctx.dir, rel)
						skip = func(p string) bool {
							r, _ := filepath.Rel(ctx.dir, p)
							return ctx.ignored(r)
						}
					}
					if err := copyInto(from, r.path(dst), dstIsDir, skip); err != nil {
						t.Fatalf("Dockerfile:%d: COPY %s %s: %v", in.line, src, dst, err)
					}
				}
			case "RUN":
				runStep(t, in, args, st, r, workdir, vars)
			case "ENV":
				for _, kv := range splitEnv(args) {
					k, v, _ := strings.Cut(kv, "=")
					img.env[k] = v
					vars[k] = v
				}
			case "USER":
				img.user = args
			case "ENTRYPOINT":
				img.entrypoint = jsonArgs(t, in)
			case "HEALTHCHECK":
				img.healthcheck = jsonArgs(t, in)
			case "EXPOSE", "LABEL", "CMD", "STOPSIGNAL", "VOLUME":
			default:
				t.Fatalf("Dockerfile:%d: %s is not replayed by this test; teach it", in.line, in.cmd)
			}
		}
	}
	return img // the last stage is the image
}

// splitEnv splits ENV k=v k2="v 2" (the replayed file uses no quoting, so whitespace splits).
func splitEnv(args string) []string { return strings.Fields(args) }

// runStep runs one RUN of the replay.
func runStep(t *testing.T, in instruction, script string, st *stage, r fsRoot, workdir string, vars map[string]string) {
	t.Helper()
	if strings.Contains(script, "npm ci") {
		// npm ci installs exactly package-lock.json; make storefront-deps did that already.
		nm := filepath.Join(root(), "storefront", "node_modules")
		if _, err := os.Stat(filepath.Join(nm, ".package-lock.json")); err != nil {
			testenv.Missing(t, "storefront/node_modules is not installed")
		}
		if err := os.Symlink(nm, filepath.Join(r.path(workdir), "node_modules")); err != nil {
			t.Fatal(err)
		}
		return
	}
	// The stage's absolute directories, mapped into its root.
	for _, dir := range []string{"/out", "/src"} {
		script = regexp.MustCompile(`(^|[\s'"=])`+dir+`(/|\s|$)`).ReplaceAllString(script, "${1}"+r.path(dir)+"${2}")
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = r.path(workdir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=", "GOFLAGS=")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Dockerfile:%d: RUN in stage %s failed: %v\n%s\n%s", in.line, st.name, err, script, out)
	}
}

// isStatic reports whether an ELF executable needs no dynamic loader or shared library.
func isStatic(t *testing.T, file string) bool {
	t.Helper()
	f, err := elf.Open(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	libs, _ := f.ImportedLibraries()
	return len(libs) == 0
}

var (
	imagesOnce sync.Once
	images     map[string]*image
	imagesErr  string
	imagesSkip string
)

// builtImages replays the Dockerfile for every SERVICE, once per test binary. The live metrics
// test runs the gateway and products binaries the replay produced.
func builtImages(t *testing.T) map[string]*image {
	t.Helper()
	imagesOnce.Do(func() {
		images = map[string]*image{}
		// A sub-test's failure must reach every caller, so the replay runs in a throwaway
		// testing.T-like scope: here, the first caller's, and the outcome is remembered.
		var skipped bool
		ok := t.Run("replay", func(t *testing.T) {
			// A skip (a tool missing, outside CI) ends the sub-test before every image is
			// replayed: remembered, so callers skip too instead of using a missing image.
			defer func() { skipped = t.Skipped() }()
			dist := replayStorefront(t)
			for _, svc := range archwayBinaries {
				images[svc] = replay(t, svc, dist)
			}
		})
		switch {
		case !ok:
			imagesErr = "replaying the Dockerfile failed (see the replay sub-test)"
		case skipped:
			imagesSkip = "the Dockerfile's replay was skipped (see the replay sub-test)"
		}
	})
	if imagesErr != "" {
		t.Fatal(imagesErr)
	}
	if imagesSkip != "" {
		t.Skip(imagesSkip)
	}
	return images
}

// replayStorefront runs the storefront stage alone, once, and returns its dist directory.
func replayStorefront(t *testing.T) string {
	t.Helper()
	_, stages := parseDockerfile(t, filepath.Join(root(), "Dockerfile"))
	for _, st := range stages {
		if st.name == "storefront" {
			ctx := newBuildContext(t)
			r := fsRoot{dir: filepath.Join(persistentTemp(t), "storefront")}
			workdir := "/"
			for _, in := range st.instrs {
				switch in.cmd {
				case "WORKDIR":
					workdir = path.Join(workdir, in.args)
					if err := os.MkdirAll(r.path(workdir), 0o755); err != nil {
						t.Fatal(err)
					}
				case "COPY":
					fields := strings.Fields(in.args)
					srcs, dst := fields[:len(fields)-1], path.Join(workdir, fields[len(fields)-1])
					for _, src := range srcs {
						rel := filepath.FromSlash(path.Clean(src))
						if ctx.ignored(rel) {
							t.Fatalf("Dockerfile:%d: COPY %s: left out by .dockerignore", in.line, src)
						}
						err := copyInto(filepath.Join(ctx.dir, rel), r.path(dst), true, func(p string) bool {
							r, _ := filepath.Rel(ctx.dir, p)
							return ctx.ignored(r)
						})
						if err != nil {
							t.Fatalf("Dockerfile:%d: %v", in.line, err)
						}
					}
				case "RUN":
					runStep(t, in, in.args, st, r, workdir, nil)
				case "ARG", "ENV":
				default:
					t.Fatalf("Dockerfile:%d: %s in the storefront stage is not replayed", in.line, in.cmd)
				}
			}
			dist := filepath.Join(r.path(workdir), "dist")
			if _, err := os.Stat(filepath.Join(dist, "index.html")); err != nil {
				t.Fatalf("the storefront stage built no dist/index.html: %v", err)
			}
			return dist
		}
	}
	t.Fatal("Dockerfile: no stage named storefront")
	return ""
}

// persistentTemp is a directory that outlives the sub-test that made it (removed at exit).
var tempRoot = sync.OnceValue(func() string {
	d, err := os.MkdirTemp("", "archway-deploy")
	if err != nil {
		panic(err)
	}
	return d
})

func persistentTemp(t *testing.T) string {
	d, err := os.MkdirTemp(tempRoot(), "t")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	os.RemoveAll(tempRoot())
	os.Exit(code)
}

// TestDockerfile: the final image of every SERVICE is distroless, runs as a non-root user, has
// a static binary as its entrypoint and a HEALTHCHECK that works without a shell; the gateway's
// holds a routes file the gateway accepts and the storefront where that file serves it from.
func TestDockerfile(t *testing.T) {
	globals, stages := parseDockerfile(t, filepath.Join(root(), "Dockerfile"))
	// The toolchains the stages name are at least those the repository builds with.
	goMod, err := os.ReadFile(filepath.Join(root(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if goLine == nil || !versionAtLeast(globals["GO_VERSION"], string(goLine[1])) {
		t.Errorf("Dockerfile GO_VERSION %q is older than go.mod's go %s", globals["GO_VERSION"], goLine[1])
	}
	// The replay runs the stages on this machine's Go and Node: they must be the ones the
	// Dockerfile's images carry.
	if local := strings.TrimPrefix(runtime.Version(), "go"); !strings.HasPrefix(local, globals["GO_VERSION"]+".") && local != globals["GO_VERSION"] {
		t.Errorf("Dockerfile GO_VERSION %s, this machine's Go is %s: the replay would not test the image's toolchain", globals["GO_VERSION"], local)
	}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		if major := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0]; major != globals["NODE_VERSION"] {
			t.Errorf("Dockerfile NODE_VERSION %s, this machine's Node is %s", globals["NODE_VERSION"], out)
		}
	}
	names := []string{}
	for _, st := range stages {
		names = append(names, st.name)
	}
	if !slices.Contains(names, "storefront") || !slices.Contains(names, "build") {
		t.Fatalf("stages %v: want storefront (node) and build (go) stages", names)
	}
	for _, st := range stages {
		if st.name == "build" {
			var script string
			for _, in := range st.instrs {
				if in.cmd == "RUN" {
					script += in.args
				}
			}
			if strings.Count(script, "CGO_ENABLED=0 go build") < 2 {
				t.Errorf("the build stage does not build the binary and healthcheck with CGO_ENABLED=0")
			}
		}
	}
	final := stages[len(stages)-1]
	for _, in := range final.instrs {
		if in.cmd == "RUN" {
			t.Errorf("Dockerfile:%d: RUN in the final stage: the final image has no shell", in.line)
		}
	}

	imgs := builtImages(t)
	for _, svc := range archwayBinaries {
		img := imgs[svc]
		t.Run(svc, func(t *testing.T) {
			if !strings.HasPrefix(img.base, "gcr.io/distroless/static") || !strings.HasSuffix(img.base, ":nonroot") {
				t.Errorf("final image is based on %s, want distroless static :nonroot", img.base)
			}
			uid, _, _ := strings.Cut(img.user, ":")
			if uid == "" || uid == "0" || uid == "root" {
				t.Errorf("USER %q: the image must run as a non-root user", img.user)
			}
			if img.env["ARCHWAY_SERVICE"] != svc {
				t.Errorf("ARCHWAY_SERVICE=%q (the healthcheck's default port depends on it)", img.env["ARCHWAY_SERVICE"])
			}
			for what, argv := range map[string][]string{"ENTRYPOINT": img.entrypoint, "HEALTHCHECK": img.healthcheck} {
				if len(argv) == 0 {
					t.Errorf("no %s", what)
					continue
				}
				bin := img.root.path(argv[0])
				if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
					t.Errorf("%s %s: not an executable in the image: %v", what, argv[0], err)
					continue
				}
				if !isStatic(t, bin) {
					t.Errorf("%s %s is dynamically linked", what, argv[0])
				}
			}
			version := exec.Command(img.root.path(img.entrypoint[0]), "-h")
			if out, _ := version.CombinedOutput(); svc != "gateway" && !strings.Contains(string(out), "-addr") {
				t.Errorf("the entrypoint is not the %s binary: -h printed\n%s", svc, out)
			}
			routes := img.root.path(img.env["ARCHWAY_CONFIG"])
			storefront := img.root.path(storefrontInImage)
			if svc != "gateway" {
				if _, err := os.Stat(storefront); err == nil {
					t.Errorf("the %s image holds the storefront", svc)
				}
				return
			}
			if _, err := os.Stat(filepath.Join(storefront, "index.html")); err != nil {
				t.Errorf("the storefront is not at %s: %v", storefrontInImage, err)
			}
			data, err := os.ReadFile(routes)
			if err != nil {
				t.Fatalf("ARCHWAY_CONFIG %s: %v", img.env["ARCHWAY_CONFIG"], err)
			}
			env := map[string]string{"ARCHWAY_ADMIN_TOKEN": strings.Repeat("t", 32), "ARCHWAY_ADVERTISE_ADDR": "10.0.0.1"}
			cfg, err := config.ParseWithEnv(data, "image:"+img.env["ARCHWAY_CONFIG"], func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatalf("the image's routes file is refused: %v", err)
			}
			for _, r := range cfg.Routes {
				if r.Static != nil && r.Static.Root != storefrontInImage {
					t.Errorf("route %s serves %s by default, the image holds the storefront at %s", r.Name, r.Static.Root, storefrontInImage)
				}
			}
		})
	}
}

// versionAtLeast compares dotted versions ("1.26" >= "1.26").
func versionAtLeast(have, want string) bool {
	var h, w [3]int
	fmt.Sscanf(have, "%d.%d.%d", &h[0], &h[1], &h[2])
	fmt.Sscanf(want, "%d.%d.%d", &w[0], &w[1], &w[2])
	return slices.Compare(h[:], w[:]) >= 0
}
