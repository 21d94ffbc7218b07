package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/oci"
)

// Docker token scope actions (the "pull,push" of
// "repository:samples/app:pull,push"), and the ACR metadata actions.
const (
	pull          = "pull"
	push          = "push"
	del           = "delete"
	metadataRead  = "metadata_read"
	metadataWrite = "metadata_write"
	every         = "*"
)

// grants lists, for each scope action, the repository action a token's
// scope map must allow for the scope action to be granted.
var grants = map[string]access.Action{
	pull:          access.ContentRead,
	push:          access.ContentWrite,
	del:           access.ContentDelete,
	metadataRead:  access.MetadataRead,
	metadataWrite: access.MetadataWrite,
}

// covers lists the scope actions that let a bearer token do a repository
// action. Listing tags or referrers is part of pulling and tagging part of
// pushing, so pull and push cover metadata reads and writes, as registries
// have always treated them.
var covers = map[access.Action][]string{
	access.ContentRead:   {pull},
	access.MetadataRead:  {pull, metadataRead},
	access.ContentWrite:  {push},
	access.MetadataWrite: {push, metadataWrite},
	access.ContentDelete: {del},
}

// Scope is one resource of a token request: "repository:NAME:ACTIONS" or
// "registry:catalog:*".
type Scope struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// maxScopes bounds the scopes of one token request.
const maxScopes = 64

// parseScopes parses the space-separated scopes of a token request's scope
// parameters. Unknown resource types are dropped (the token endpoint grants
// a subset of what is asked); malformed ones are an error.
func parseScopes(params []string) ([]Scope, error) {
	var out []Scope
	for _, p := range params {
		for _, f := range strings.Fields(p) {
			if len(out) == maxScopes {
				return nil, fmt.Errorf("more than %d scopes", maxScopes)
			}
			s, err := parseScope(f)
			if err != nil {
				return nil, err
			}
			if s.Type == "repository" || s.Type == "registry" {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func parseScope(f string) (Scope, error) {
	typ, rest, ok := strings.Cut(f, ":")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return Scope{}, fmt.Errorf("scope %q: want TYPE:NAME:ACTIONS", f)
	}
	name, acts := rest[:i], rest[i+1:]
	// A resource type may carry a class, "repository(plugin)".
	typ, _, _ = strings.Cut(typ, "(")
	s := Scope{Type: typ, Name: name}
	for _, a := range strings.Split(acts, ",") {
		if a != "" && !slices.Contains(s.Actions, a) {
			s.Actions = append(s.Actions, a)
		}
	}
	switch typ {
	case "repository":
		if err := oci.ValidateName(name); err != nil {
			return Scope{}, fmt.Errorf("scope %q: %v", f, err)
		}
	case "registry":
		if name != "catalog" {
			return Scope{}, fmt.Errorf("scope %q: the only registry resource is catalog", f)
		}
	}
	return s, nil
}

// grant returns the part of s that m allows: the repository actions the
// scope map grants, or the catalog for any identity (its listing is
// filtered per repository). Nothing granted returns ok false.
func grant(s Scope, m access.ScopeMap) (Scope, bool) {
	out := Scope{Type: s.Type, Name: s.Name}
	if s.Type == "registry" {
		out.Actions = []string{every}
		return out, true
	}
	for _, a := range s.Actions {
		if a == every {
			for _, sa := range []string{pull, push, del, metadataRead, metadataWrite} {
				if m.Allows(s.Name, grants[sa]) {
					out.Actions = append(out.Actions, sa)
				}
			}
			continue
		}
		if want, ok := grants[a]; ok && m.Allows(s.Name, want) && !slices.Contains(out.Actions, a) {
			out.Actions = append(out.Actions, a)
		}
	}
	return out, len(out.Actions) > 0
}

// scopeCovers reports whether the granted scopes let a bearer do action on
// repository name.
func scopeCovers(granted []Scope, name string, action access.Action) bool {
	for _, s := range granted {
		if s.Type != "repository" || s.Name != name {
			continue
		}
		for _, a := range covers[action] {
			if slices.Contains(s.Actions, a) {
				return true
			}
		}
	}
	return false
}

// challengeActions are the scope actions a client should ask for to do
// action.
func challengeActions(action access.Action) string {
	switch action {
	case access.ContentRead, access.MetadataRead:
		return pull
	case access.ContentDelete:
		return del
	}
	return pull + "," + push
}
