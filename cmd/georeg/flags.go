package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// defaultDir is the mesh directory when --dir is not given.
const defaultDir = ".georeg"

// errFlagParse marks a flag error the flag package has already reported.
var errFlagParse = errors.New("bad flags")

// newFlagSet returns a FlagSet for "georeg GROUP VERB" whose usage message
// shows the positional arguments and summary.
func newFlagSet(e env, cmd, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("georeg "+cmd, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\n%s\n\nflags:\n", strings.TrimSpace("georeg "+cmd+" [flags] "+args), summary)
		fs.PrintDefaults()
	}
	return fs
}

// dirFlag adds --dir, which every verb takes.
func dirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", defaultDir, "directory of the mesh: its `DIR`/mesh.json, logs and data")
}

// parse parses args with flags and positional arguments in any order
// ("kill-zone westus/1 --dir d" as well as "kill-zone --dir d westus/1") and
// returns the positional ones. On --help it prints usage to stdout.
func parse(e env, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(e.stdout)
				fs.Usage()
				return nil, err
			}
			return nil, errFlagParse
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseNoArgs is parse for a command that takes flags only.
func parseNoArgs(e env, fs *flag.FlagSet, args []string) error {
	pos, err := parse(e, fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}
