package deploy

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"go/version"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, COPY, ...
	Args string
	Line int
}

// parseDockerfile reads instructions, skipping comments and parser
// directives and joining lines that end in a backslash.
func parseDockerfile(t testing.TB) []instruction {
	t.Helper()
	data, err := os.ReadFile(repoPath("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " "), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile ends inside a continued instruction: %q", cur.String())
	}
	return out
}

// image is what the Dockerfile says about the image and how its binary is
// built.
type image struct {
	builderGo  string // the golang image's version tag
	base       string // the final stage's image
	buildOut   string // hack/build.sh's output path in the builder
	copyFrom   string // the path copied from the builder
	binary     string // where the final stage puts it
	user       string
	entrypoint []string
}

func readImage(t testing.TB) image {
	t.Helper()
	var img image
	var stages []string
	for _, in := range parseDockerfile(t) {
		switch in.Cmd {
		case "FROM":
			f := strings.Fields(in.Args)
			stages = append(stages, f[0])
			if len(stages) == 1 {
				name, tag, _ := strings.Cut(f[0], ":")
				if name != "golang" || len(f) != 3 || !strings.EqualFold(f[1], "AS") {
					t.Fatalf("Dockerfile:%d: the first stage should be `FROM golang:<version> AS <name>`, got %q", in.Line, in.Args)
				}
				img.builderGo = strings.SplitN(tag, "-", 2)[0] // 1.26.8 of 1.26.8-bookworm
			}
		case "RUN":
			if m := regexp.MustCompile(`(?:^|\s)(?:sh\s+)?(?:\./)?hack/build\.sh\s+(\S+)`).FindStringSubmatch(in.Args); m != nil {
				img.buildOut = m[1]
			} else if strings.Contains(in.Args, "go build") {
				t.Errorf("Dockerfile:%d: builds with its own `go build`; call hack/build.sh so tests build the same way", in.Line)
			}
		case "COPY":
			if f := strings.Fields(in.Args); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				img.copyFrom, img.binary = f[1], f[2]
			}
		case "USER":
			img.user = in.Args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.Args), &img.entrypoint); err != nil {
				t.Errorf("Dockerfile:%d: ENTRYPOINT %s: want the exec (JSON) form: %v", in.Line, in.Args, err)
			}
		}
	}
	if len(stages) != 2 {
		t.Fatalf("Dockerfile has %d stages, want 2 (builder, final)", len(stages))
	}
	img.base = stages[1]
	return img
}

// TestDockerfile checks the image's shape: a builder on the Go that go.mod
// asks for, hack/build.sh, a static base, the binary as entrypoint, and
// the same user as the DaemonSet.
func TestDockerfile(t *testing.T) {
	img := readImage(t)

	mod, err := os.ReadFile(repoPath("go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindSubmatch(mod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	// golang images set GOTOOLCHAIN=local: an older Go fails the build.
	if version.Compare("go"+img.builderGo, "go"+string(goLine[1])) < 0 {
		t.Errorf("builder golang:%s is older than go.mod's go %s", img.builderGo, goLine[1])
	}
	if !strings.HasPrefix(img.base, "gcr.io/distroless/static") && img.base != "scratch" {
		t.Errorf("final stage FROM %s: want gcr.io/distroless/static* or scratch (the binary is static, nothing else is needed)", img.base)
	}
	if img.buildOut == "" {
		t.Fatal("no RUN hack/build.sh OUTPUT in the builder stage")
	}
	if img.copyFrom != img.buildOut {
		t.Errorf("COPY --from copies %q, hack/build.sh writes %q", img.copyFrom, img.buildOut)
	}
	if len(img.entrypoint) != 1 || img.entrypoint[0] != img.binary {
		t.Errorf("ENTRYPOINT %q, want [%q]", img.entrypoint, img.binary)
	}

	m := loadManifests(t)
	sc := m.container(t).SecurityContext
	uid, _, _ := strings.Cut(img.user, ":")
	if sc == nil || sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != uid {
		t.Errorf("Dockerfile USER %q and DaemonSet runAsUser %v differ: one decision, in both places", img.user, deref(sc.RunAsUser))
	}
}

// TestImageBinary builds the binary the way `docker build` does: from a
// copy of the build context with .dockerignore applied, by hack/build.sh,
// offline from the module cache. It must build (nothing the build needs is
// ignored), be static and stripped, hold no local paths, and run.
func TestImageBinary(t *testing.T) {
	img := readImage(t)
	ctx := t.TempDir()
	n := copyContext(t, repoRoot(), ctx, readDockerignore(t))
	t.Logf("build context: %d files", n)

	out := filepath.Join(t.TempDir(), filepath.Base(img.buildOut))
	build := exec.Command("sh", "hack/build.sh", out)
	build.Dir = ctx
	// As in the golang image: no GOFLAGS, no workspace, this Go only. No
	// network: the module cache of the TestMain build has every module.
	build.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "GOPROXY=off")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("hack/build.sh in the build context (is something it needs in .dockerignore?): %v\n%s", err, b)
	}

	checkStatic(t, out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{ctx, repoRoot()} {
		if bytes.Contains(data, []byte(dir)) {
			t.Errorf("binary contains the path %s: not built with -trimpath", dir)
		}
	}

	// The settings really used, as the Go toolchain recorded them, for the
	// image's build and the tests' (TestMain) build alike. (With -trimpath
	// Go does not record -ldflags; checkStatic sees their effect.)
	want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"}
	for _, bin := range []string{out, nodednsBin} {
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		got := map[string]string{}
		for _, s := range bi.Settings {
			got[s.Key] = s.Value
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: build setting %s=%q, want %q", bin, k, got[k], v)
			}
		}
	}

	help := exec.Command(out, "--help")
	if b, err := help.CombinedOutput(); err != nil {
		t.Errorf("%s --help: %v\n%s", out, err, b)
	} else if !bytes.Contains(b, []byte("-listen")) {
		t.Errorf("--help does not list -listen:\n%s", b)
	}
}

// checkStatic fails unless bin is an ELF executable with no interpreter,
// no dynamic section, no shared libraries and no symbol table.
func checkStatic(t testing.TB, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
		return // for fakeT, whose Fatal returns
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			t.Errorf("%s has PT_INTERP: dynamically linked (cgo?)", bin)
		case elf.PT_DYNAMIC:
			t.Errorf("%s has PT_DYNAMIC: dynamically linked", bin)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s imports libraries %v (%v)", bin, libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a .symtab: not stripped (-ldflags -s)", bin)
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			t.Errorf("%s has DWARF section %s: built without -ldflags -w", bin, s.Name)
			break
		}
	}
}

func TestStaticCheckCatchesDynamic(t *testing.T) {
	// The check itself must be able to fail: a dynamically linked binary of
	// this system has PT_INTERP.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sh, _ = filepath.EvalSymlinks(sh)
	ft := &fakeT{TB: t}
	checkStatic(ft, sh)
	if !ft.failed {
		t.Errorf("checkStatic(%s) passed; it is dynamically linked on Debian", sh)
	}
}

// fakeT records failures instead of failing the test. Its Fatal and
// Fatalf return: callers must return after them.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Error(...any)          { f.failed = true }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatal(...any)          { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
func (f *fakeT) Helper()               {}

// ignoreRule is one .dockerignore pattern.
type ignoreRule struct {
	pattern string
	re      *regexp.Regexp
}

// readDockerignore parses .dockerignore as Docker does for the patterns
// used there: paths relative to the context root (a leading / is dropped),
// * and ? within one path element, ** across elements. Exceptions (!)
// are not supported here: the test fails if one is added.
func readDockerignore(t testing.TB) []ignoreRule {
	t.Helper()
	data, err := os.ReadFile(repoPath(".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []ignoreRule
	for _, line := range strings.Split(string(data), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		if strings.HasPrefix(p, "!") {
			t.Fatalf(".dockerignore exception %q: teach readDockerignore about exceptions first", p)
		}
		p = path.Clean(strings.TrimPrefix(p, "/"))
		rules = append(rules, ignoreRule{p, globRegexp(p)})
	}
	return rules
}

// globRegexp turns a .dockerignore pattern into an anchored regexp.
func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// ignored reports whether rel (slash-separated, relative to the context)
// or one of its parent directories matches a rule.
func ignored(rules []ignoreRule, rel string) bool {
	parts := strings.Split(rel, "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		for _, r := range rules {
			if r.re.MatchString(prefix) {
				return true
			}
		}
	}
	return false
}

func TestDockerignoreMatching(t *testing.T) {
	rules := []ignoreRule{}
	for _, p := range []string{"test", "**/*_test.go", "*.md", "nodedns", "**/testdata"} {
		rules = append(rules, ignoreRule{p, globRegexp(p)})
	}
	for rel, want := range map[string]bool{
		"test/e2e/x.go":           true,
		"pkg/a/b_test.go":         true,
		"b_test.go":               true,
		"README.md":               true,
		"pkg/README.md":           false, // * stays in one element, anchored at the root
		"nodedns":                 true,
		"cmd/nodedns/main.go":     false,
		"pkg/zone/testdata/a.yml": true,
		"pkg/tests/x.go":          false,
		"go.mod":                  false,
	} {
		if got := ignored(rules, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
}

// copyContext copies src to dst without what rules ignore, and returns the
// number of files copied.
func copyContext(t testing.TB, src, dst string, rules []ignoreRule) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(rules, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode().IsRegular():
			n++
			return copyFile(p, target, info.Mode().Perm())
		}
		return nil // sockets, symlinks: not part of a Go build
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
