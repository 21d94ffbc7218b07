package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestListFlags(t *testing.T) {
	cases := []struct {
		args      string
		wantLists map[string][]string
		wantRest  string
		err       string
	}{
		{"--name f1 --repository a b/* --mode ReadOnly", map[string][]string{"repository": {"a", "b/*"}}, "--name f1 --mode ReadOnly", ""},
		{"--repository a --client-tokens t1 t2 --repository c", map[string][]string{"repository": {"a", "c"}, "client-tokens": {"t1", "t2"}}, "", ""},
		{"--name f1", map[string][]string{}, "--name f1", ""},
		{"--repository --name f1", nil, "", "--repository needs at least one value"},
		{"--repository", nil, "", "--repository needs at least one value"},
	}
	for _, tc := range cases {
		lists, rest, err := listFlags(strings.Fields(tc.args), "repository", "client-tokens")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(lists, tc.wantLists) || strings.Join(rest, " ") != tc.wantRest {
			t.Errorf("%q: %v %q %v; want %v %q", tc.args, lists, rest, err, tc.wantLists, tc.wantRest)
		}
	}
}
