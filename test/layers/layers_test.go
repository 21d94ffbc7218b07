// Package layers checks that the module's imports only point down: each
// top-level folder is one layer, and a package may import its own folder and
// the folders of lower layers, never a higher one. The README's
// "Architecture" section lists the same table; change both together.
package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/georeg/georeg"

// rank is each top-level folder's layer, bottom first. Folders of equal rank
// may not import each other.
var rank = map[string]int{
	"proto":       0,
	"internal":    0,
	"storage":     1,
	"base":        1,
	"replication": 2,
	"trafficmgr":  2,
	"region":      3,
	"zone":        4,
	"chaos":       5,
	"cmd":         6,
	"test":        7,
}

// TestImportsPointDown parses every Go file of the module (tests included)
// and fails on each import of a higher or sibling layer, and on any import
// of cmd.
func TestImportsPointDown(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var bad []string
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			// tools/ is its own module; dot folders and testdata hold no
			// packages of this one.
			if rel != "." && (rel == "tools" || rel == "bin" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		from := topFolder(filepath.ToSlash(rel))
		fromRank, ok := rank[from]
		if !ok {
			bad = append(bad, rel+": in folder "+from+", which is no layer (add it to the table)")
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module+"/") {
				continue
			}
			to := topFolder(strings.TrimPrefix(p, module+"/"))
			if to == from {
				continue
			}
			toRank, ok := rank[to]
			switch {
			case !ok:
				bad = append(bad, rel+" imports "+p+": folder "+to+" is no layer")
			case to == "cmd":
				bad = append(bad, rel+" imports "+p+": nothing imports cmd")
			case toRank >= fromRank:
				bad = append(bad, rel+" ("+from+", layer "+strconv.Itoa(fromRank)+") imports "+p+" ("+to+", layer "+strconv.Itoa(toRank)+")")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d files under %s: is this the module root?", checked, root)
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
	t.Logf("%d Go files, %d layers, %d upward imports", checked, len(rank), len(bad))
}

func topFolder(rel string) string {
	top, _, _ := strings.Cut(rel, "/")
	return top
}

func TestTopFolder(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"zone/api/handler.go", "zone"},
		{"proto", "proto"},
		{"base/meta", "base"},
	} {
		if got := topFolder(tc.in); got != tc.want {
			t.Errorf("topFolder(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := os.Stat("../../go.mod"); err != nil {
		t.Fatalf("the test runs from test/layers: %v", err)
	}
}
