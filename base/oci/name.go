package oci

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"

	// Register the hash functions go-digest validates and computes.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// MaxNameLength is the longest repository name georeg accepts. The spec notes
// that clients limit hostname plus name to 255 characters; georeg limits the
// name alone, so every name it accepts can be pulled by some client.
const MaxNameLength = 255

// Errors returned by the parsers. Callers map them to OCI error codes.
var (
	ErrNameInvalid   = errors.New("invalid repository name")
	ErrTagInvalid    = errors.New("invalid tag")
	ErrDigestInvalid = errors.New("invalid digest")
)

var (
	// nameComponent is the distribution-spec grammar of one path component.
	nameComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	tagPattern    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// ValidateName reports whether name is a repository name of the
// distribution-spec grammar
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
// no longer than MaxNameLength.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrNameInvalid)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%w: %d characters, at most %d", ErrNameInvalid, len(name), MaxNameLength)
	}
	for _, c := range strings.Split(name, "/") {
		if !nameComponent.MatchString(c) {
			return fmt.Errorf("%w: component %q must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*", ErrNameInvalid, c)
		}
	}
	return nil
}

// ValidateTag reports whether tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if !tagPattern.MatchString(tag) {
		return fmt.Errorf("%w: %q must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", ErrTagInvalid, tag)
	}
	return nil
}

// ParseDigest parses a digest of a supported algorithm (sha256, sha384,
// sha512) with a well-formed hex part.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrDigestInvalid, s, err)
	}
	return d, nil
}

// Reference is the <reference> of a manifest URL: a tag or a digest.
type Reference struct {
	Tag    string
	Digest digest.Digest
}

// IsDigest reports whether the reference names a digest.
func (r Reference) IsDigest() bool { return r.Digest != "" }

// String returns the tag or the digest.
func (r Reference) String() string {
	if r.IsDigest() {
		return r.Digest.String()
	}
	return r.Tag
}

// ParseReference parses a tag or a digest. Anything containing ':' is taken
// as a digest, since ':' cannot appear in a tag.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d, err := ParseDigest(s)
		if err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}
