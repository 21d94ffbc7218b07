package ociclient

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// RepoMap is what a registry serves: repository -> tag -> manifest
// digest. Tests compare the maps of a mesh's nodes; String makes a
// difference readable.
type RepoMap map[string]map[string]digest.Digest

// String prints the map one repository a line, for failure messages.
func (r RepoMap) String() string {
	var b strings.Builder
	for _, repo := range slices.Sorted(maps.Keys(r)) {
		fmt.Fprintf(&b, "%s:", repo)
		for _, tag := range slices.Sorted(maps.Keys(r[repo])) {
			fmt.Fprintf(&b, " %s=%.19s", tag, r[repo][tag])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Tags counts the tags of the map.
func (r RepoMap) Tags() int {
	n := 0
	for _, t := range r {
		n += len(t)
	}
	return n
}
