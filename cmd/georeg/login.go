package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/georeg/georeg/proto/controlpb"
)

// CredentialsFile is where a mesh directory keeps the admin credential the
// management commands send (written by `mesh up --auth` and `login`).
const CredentialsFile = "credentials.json"

// credentials is the admin credential of a mesh.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// loadCredentials reads DIR/credentials.json; a missing file is no
// credential (a registry with authentication off needs none).
func loadCredentials(dir string) (*credentials, error) {
	b, err := os.ReadFile(filepath.Join(dir, CredentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CredentialsFile), err)
	}
	return &c, nil
}

func saveCredentials(dir string, c credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, CredentialsFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, CredentialsFile))
}

// withCredentials adds the mesh's admin credential, if any, to the
// outgoing gRPC metadata.
func withCredentials(ctx context.Context, dir string) (context.Context, error) {
	c, err := loadCredentials(dir)
	if err != nil || c == nil {
		return ctx, err
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password))
	return metadata.AppendToOutgoingContext(ctx, "authorization", auth), nil
}

func loginRun(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "login", "", "Check the admin credential and store it in DIR/credentials.json for the management commands.")
	dir := dirFlag(fs)
	user := fs.String("username", "", "admin user `name`")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	pass := fs.String("password", "", "the `password` (prefer --password-stdin: a flag shows in the process list)")
	if _, err := parse(e, fs, args); err != nil {
		return err
	}
	if *user == "" || (*pass == "") == !*stdin {
		return usagef("--username and one of --password or --password-stdin are required")
	}
	if *stdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		*pass = strings.TrimRight(line, "\r\n")
	}
	prev, err := loadCredentials(*dir)
	if err != nil {
		return err
	}
	if err := saveCredentials(*dir, credentials{Username: *user, Password: *pass}); err != nil {
		return err
	}
	err = homeClient(ctx, *dir, func(ctx context.Context, c controlpb.ControlClient) error {
		_, err := c.ListTokens(ctx, &controlpb.ListAccessRequest{})
		return err
	})
	if err != nil {
		// Keep what worked before rather than a credential that does not.
		if prev != nil {
			saveCredentials(*dir, *prev)
		} else {
			os.Remove(filepath.Join(*dir, CredentialsFile))
		}
		return fmt.Errorf("login refused: %w", err)
	}
	fmt.Fprintf(e.stdout, "logged in as %s (stored in %s)\n", *user, filepath.Join(*dir, CredentialsFile))
	return nil
}
