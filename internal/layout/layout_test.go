package layout

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// root is the module's directory.
func root(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// sip/, media/ and crm/ never import gateway/, in code or in tests.
func TestLowerFloorsDoNotImportGateway(t *testing.T) {
	for _, dep := range goList(t, "-test", "-deps", "./sip/...", "./media/...", "./crm/...") {
		if dep == "callgate/gateway" || strings.HasPrefix(dep, "callgate/gateway/") {
			t.Errorf("a package under sip/, media/ or crm/ depends on %s", dep)
		}
	}
}

// The demo builds the product through the gateway's public constructor
// and uses nothing else of the gateway root.
func TestDemoUsesOnlyTheGatewayConstructor(t *testing.T) {
	dir := filepath.Join(root(t), "gateway", "demo")
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	used := map[string]bool{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		pkgName := ""
		for _, imp := range f.Imports {
			if imp.Path.Value == `"callgate/gateway"` {
				pkgName = "gateway"
				if imp.Name != nil {
					pkgName = imp.Name.Name
				}
			}
		}
		if pkgName == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == pkgName {
					used[sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	if !used["New"] {
		t.Errorf("the demo does not build the gateway with gateway.New (uses %v)", used)
	}
	for name := range used {
		if name != "New" {
			t.Errorf("the demo uses gateway.%s; only the constructor is its to use", name)
		}
	}
}

// docs/architecture.md names every package of the module.
func TestArchitectureNamesEveryPackage(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root(t), "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range goList(t, "./...") {
		rel := strings.TrimPrefix(p, "callgate/")
		if p == "callgate" {
			continue
		}
		if !bytes.Contains(doc, []byte("`"+rel+"`")) {
			t.Errorf("docs/architecture.md does not name %s", rel)
		}
	}
}

// lines counts a file's lines.
func lines(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		n++
	}
	return n
}

// goFiles are the module's Go files, relative to its root.
func goFiles(t *testing.T) []string {
	r := root(t)
	var out []string
	err := filepath.WalkDir(r, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") && path != r {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			rel, _ := filepath.Rel(r, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The gateway root is wiring: its code stays around 600 lines; no other
// source file is longer than 600 lines.
func TestFilesStaySmall(t *testing.T) {
	const most = 600
	rootLines := 0
	for _, f := range goFiles(t) {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		n := lines(t, filepath.Join(root(t), f))
		if n > most {
			t.Errorf("%s has %d lines (at most %d: split it by responsibility)", f, n, most)
		}
		if filepath.Dir(f) == "gateway" {
			rootLines += n
		}
	}
	if rootLines == 0 || rootLines > most {
		t.Errorf("the gateway root package has %d lines of code; it wires the parts and should stay within %d", rootLines, most)
	}
}

// File names say what a file holds: no "calls2.go" or "console3_test.go".
// Names whose digits belong to a standard's name are not numbered copies.
func TestNoNumberedFileNames(t *testing.T) {
	standards := []string{"g711", "rfc4475", "rfc3261", "e164"}
	numbered := regexp.MustCompile(`^([a-z_]*?)([0-9]+)(_test)?\.go$`)
	for _, f := range goFiles(t) {
		m := numbered.FindStringSubmatch(filepath.Base(f))
		if m == nil || slices.Contains(standards, m[1]+m[2]) {
			continue
		}
		t.Errorf("%s: a numbered file name; name it for what it holds", f)
	}
}
