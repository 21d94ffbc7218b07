package access

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"samples/app", true},
		{"samples/*", true},
		{"sam*", true},
		{"*", true},
		{"a", true},
		{"de*mo", false},
		{"*demo", false},
		{"samples/**", false},
		{"Samples/*", false},
		{"samples//*", false},
		{"samples/-*", false},
		{"UPPER", false},
		{"", false},
		{"a/", false},
	}
	for _, tc := range tests {
		err := ValidatePattern(tc.pattern)
		if (err == nil) != tc.ok {
			t.Errorf("ValidatePattern(%q) = %v, want ok=%v", tc.pattern, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePattern(%q) = %v, not ErrInvalid", tc.pattern, err)
		}
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"samples/*", "samples/app", true},
		{"samples/*", "samples/a/b", true},
		{"samples/*", "samples", false},
		{"samples/*", "other/x", false},
		{"samples/app", "samples/app", true},
		{"samples/app", "samples/app2", false},
		{"*", "anything/at/all", true},
		{"sam*", "samples/x", true},
	}
	for _, tc := range tests {
		if got := Matches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestScopeMapAllows(t *testing.T) {
	m := ScopeMap{Name: "samples-pull", Permissions: []Permission{
		{Pattern: "samples/*", Actions: []Action{ContentRead, MetadataRead}},
		{Pattern: "team/app", Actions: []Action{ContentWrite}},
	}}
	tests := []struct {
		repo   string
		action Action
		want   bool
	}{
		{"samples/a", ContentRead, true},
		{"samples/a", ContentWrite, false},
		{"other/x", ContentRead, false},
		{"team/app", ContentWrite, true},
		{"team/app", ContentRead, false},
	}
	for _, tc := range tests {
		if got := m.Allows(tc.repo, tc.action); got != tc.want {
			t.Errorf("Allows(%q, %s) = %v, want %v", tc.repo, tc.action, got, tc.want)
		}
	}
	if !m.Reads("team/app") || m.Reads("other/x") {
		t.Errorf("Reads: team/app should be visible, other/x not")
	}
}

func TestScopeMapValidate(t *testing.T) {
	perm := func(p string, as ...Action) Permission { return Permission{Pattern: p, Actions: as} }
	many := func(n int) []Permission {
		ps := make([]Permission, n)
		for i := range ps {
			ps[i] = perm(fmt.Sprintf("repo%d", i), ContentRead)
		}
		return ps
	}
	tests := []struct {
		name string
		m    ScopeMap
		want error
	}{
		{"ok", ScopeMap{Name: "pull-samples", Permissions: []Permission{perm("samples/*", ContentRead)}}, nil},
		{"500 permissions", ScopeMap{Name: "big-map", Permissions: many(500)}, nil},
		{"501 permissions", ScopeMap{Name: "big-map", Permissions: many(501)}, ErrLimit},
		{"unknown action", ScopeMap{Name: "bad-action", Permissions: []Permission{perm("a", "content/erase")}}, ErrInvalid},
		{"wildcard inside", ScopeMap{Name: "bad-pattern", Permissions: []Permission{perm("de*mo", ContentRead)}}, ErrInvalid},
		{"bad repo", ScopeMap{Name: "bad-repo", Permissions: []Permission{perm("Bad Name", ContentRead)}}, ErrInvalid},
		{"no actions", ScopeMap{Name: "empty-act", Permissions: []Permission{perm("a")}}, ErrInvalid},
		{"no permissions", ScopeMap{Name: "empty-map"}, ErrInvalid},
		{"duplicate repo", ScopeMap{Name: "dup-repos", Permissions: []Permission{perm("a", ContentRead), perm("a", ContentWrite)}}, ErrInvalid},
		{"short name", ScopeMap{Name: "abc", Permissions: []Permission{perm("a", ContentRead)}}, ErrInvalid},
		{"builtin-like name", ScopeMap{Name: "_repositories_mine", Permissions: []Permission{perm("a", ContentRead)}}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBuiltIns(t *testing.T) {
	want := map[string][]Action{
		PullScopeMap:  {ContentRead, MetadataRead},
		PushScopeMap:  {ContentRead, ContentWrite, MetadataRead, MetadataWrite},
		AdminScopeMap: Actions(),
	}
	for _, m := range BuiltIns() {
		as, ok := want[m.Name]
		if !ok {
			t.Fatalf("unexpected built-in %q", m.Name)
		}
		for _, a := range Actions() {
			wantAllowed := false
			for _, w := range as {
				wantAllowed = wantAllowed || w == a
			}
			if got := m.Allows("any/repo", a); got != wantAllowed {
				t.Errorf("%s allows %s = %v, want %v", m.Name, a, got, wantAllowed)
			}
		}
	}
}

func TestPassword(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	secret, p, err := NewPassword(Password1, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 40 {
		t.Fatalf("secret %q is short", secret)
	}
	if string(p.Hash) == secret || len(p.Hash) == 0 {
		t.Fatal("the hash is the secret")
	}
	tests := []struct {
		secret string
		want   bool
	}{
		{secret, true},
		{secret + "x", false},
		{"", false},
		{string(make([]byte, 100)), false},
	}
	for _, tc := range tests {
		if got := p.Matches(tc.secret); got != tc.want {
			t.Errorf("Matches(%.8q...) = %v, want %v", tc.secret, got, tc.want)
		}
	}
	if p.Expired(now) || !p.Expired(now.Add(time.Hour)) {
		t.Error("expiry is not honoured")
	}
	if _, _, err := NewPassword(Password2, now, now.Add(-time.Second)); !errors.Is(err, ErrInvalid) {
		t.Errorf("expiry in the past: %v, want ErrInvalid", err)
	}
	if _, _, err := NewPassword("password3", now, time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("password3: %v, want ErrInvalid", err)
	}
}

func TestParse(t *testing.T) {
	if _, err := ParseAction("content/erase"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseAction: %v", err)
	}
	if a, err := ParseAction("metadata/write"); err != nil || a != MetadataWrite {
		t.Errorf("ParseAction(metadata/write) = %q, %v", a, err)
	}
	if _, err := ParseStatus("paused"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseStatus: %v", err)
	}
}

func TestVerifier(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	secret, p, err := NewPassword(Password1, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{Name: "ci-bot", Status: Enabled, Passwords: []Password{p}, Version: 1}
	var v Verifier
	ctx := context.Background()
	tests := []struct {
		name   string
		tok    Token
		secret string
		at     time.Time
		want   bool
	}{
		{"right", tok, secret, now, true},
		{"right again (cached)", tok, secret, now, true},
		{"wrong", tok, secret + "x", now, false},
		{"expired, though cached", tok, secret, now.Add(time.Hour), false},
		{"password removed in a new version", Token{Name: "ci-bot", Version: 2}, secret, now, false},
	}
	for _, tc := range tests {
		got, ok := v.Check(ctx, tc.tok, tc.secret, tc.at)
		if ok != tc.want || ok && got.Name != Password1 {
			t.Errorf("%s: Check = %v, %v; want %v", tc.name, got.Name, ok, tc.want)
		}
	}
	for _, bad := range []string{"%%%", base64.StdEncoding.EncodeToString([]byte("nocolon")), strings.Repeat("A", 600)} {
		if _, _, err := ParseBasic(bad); err == nil {
			t.Errorf("ParseBasic(%.10q...) accepted", bad)
		}
	}
	if u, pw, err := ParseBasic(base64.StdEncoding.EncodeToString([]byte("ci-bot:a:b"))); err != nil || u != "ci-bot" || pw != "a:b" {
		t.Errorf("ParseBasic = %q %q %v", u, pw, err)
	}
}
