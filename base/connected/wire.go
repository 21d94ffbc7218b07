package connected

import (
	"fmt"
	"strings"
	"time"

	"github.com/georeg/georeg/base/access"
	"github.com/georeg/georeg/base/oci"
)

// The sync protocol between a connected registry (the child) and its
// parent. Only the child dials: a site sits behind NAT and firewalls, so
// every exchange is a request the child makes to its parent's endpoint, over
// HTTP(S), with the sync token as HTTP Basic credentials. Content (tags,
// manifests, blobs) moves with the ordinary OCI Distribution API at the same
// endpoint and with the same credentials; the sync token's scope map lets it
// read the connected registry's repositories and nothing else. The three
// calls below carry what the Distribution API does not:
//
//	POST APIPrefix/NAME/activate  body Hello   -> Config  (409 while another instance is Active)
//	GET  APIPrefix/NAME/events?since=CURSOR&wait=SECONDS -> Events (a long poll)
//	POST APIPrefix/NAME/status    body Status  -> 204
//	POST APIPrefix/NAME/write     body Write   -> WriteResult (ReadWrite only)
//
// Errors are the Distribution API's error envelope ({"errors":[{"code",
// "message"}]}): UNAUTHORIZED for a wrong sync token, DENIED for a token
// that is not NAME's sync token, NAME_UNKNOWN for an unknown connected
// registry, and UNAVAILABLE (503) when the home region, which keeps the
// connected registries' definitions, cannot be reached (events still work
// then: they come from the region that answers).
const APIPrefix = "/_georeg/connected/v1"

// Limits of the protocol.
const (
	// MaxWait bounds the long poll of an events call.
	MaxWait = 30 * time.Second
	// MaxEvents bounds the events of one answer.
	MaxEvents = 500
)

// Hello is what an instance says when it activates: who it is. Instance
// is a random ID the instance keeps in its data directory, so that its own
// restarts are not "a second instance".
type Hello struct {
	Instance string `json:"instance"`
	// Version is the instance's georeg version, for the cloud's records.
	Version string `json:"version,omitempty"`
}

// Config is what a connected registry needs from the cloud to serve its
// site: its definition, and its client tokens with the scope maps they use
// (password hashes included: the site checks its clients' passwords
// itself, also while cut off). Built-in scope maps are not listed.
//
// A connected registry with children of its own (nesting) serves their
// sync calls as the cloud serves its own: Children are the connected
// registries below it (their definitions, so that it knows whom it relays
// activations and status reports for), and SyncTokens the sync tokens of
// its direct children, whose scope maps are in ScopeMaps, so that it checks
// its children's credentials itself, also while cut off.
type Config struct {
	Registry     Registry          `json:"registry"`
	ClientTokens []access.Token    `json:"clientTokens"`
	ScopeMaps    []access.ScopeMap `json:"scopeMaps"`
	Children     []Registry        `json:"children,omitempty"`
	SyncTokens   []access.Token    `json:"syncTokens,omitempty"`
}

// Event is one change of a repository the connected registry syncs, as the
// answering region recorded it: an image that became available (push) or
// was deleted there (delete).
type Event struct {
	Seq       uint64 `json:"seq"`
	Action    string `json:"action"` // "push" or "delete"
	Repo      string `json:"repo"`
	Tag       string `json:"tag,omitempty"`
	Digest    string `json:"digest,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
}

// Events answers an events call. The cursor it returns (Region:Last)
// covers every event up to Last in Region, including those of other
// repositories, which are left out. Resync says that the events since the
// child's cursor are not available (another region answered, or they were
// trimmed): the child compares its repositories with the parent's whole
// (tags and manifests through the Distribution API) and then goes on from
// the returned cursor.
type Events struct {
	Region string  `json:"region"`
	Last   uint64  `json:"last"`
	Resync bool    `json:"resync,omitempty"`
	Events []Event `json:"events"`
}

// Cursor returns the answer's cursor, for the next call's since.
func (e Events) Cursor() Cursor { return Cursor{Region: e.Region, Seq: e.Last} }

// Cursor is how far a child has synced: the last event of Region it has
// applied. The zero Cursor asks for a resync.
type Cursor struct {
	Region string
	Seq    uint64
}

// String is the cursor as the since parameter spells it: "REGION:SEQ", or
// "" for the zero cursor.
func (c Cursor) String() string {
	if c.Region == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", c.Region, c.Seq)
}

// ParseCursor parses a since parameter; "" is the zero cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	region, seq, ok := strings.Cut(s, ":")
	var c Cursor
	if _, err := fmt.Sscan(seq, &c.Seq); !ok || region == "" || err != nil || fmt.Sprint(c.Seq) != seq {
		return Cursor{}, fmt.Errorf("%w: cursor %q: want REGION:SEQ", ErrInvalid, s)
	}
	c.Region = region
	return c, nil
}

// The connection states the cloud shows, after ACR's.
const (
	Online    = "Online"
	Offline   = "Offline"
	Syncing   = "Syncing"
	Unhealthy = "Unhealthy"
)

// Status is what an instance reports, every StatusInterval and whenever
// it has notifications to send.
type Status struct {
	Instance string `json:"instance"`
	// State is Online (in sync, following events), Syncing (a resync
	// running) or Unhealthy (it cannot store what it syncs).
	State     string    `json:"state"`
	LastSync  time.Time `json:"lastSync,omitzero"`
	LastError string    `json:"lastError,omitempty"`
	// Notifications are the site's own events that match the connected
	// registry's notification patterns, oldest first, at most
	// MaxReportNotifications. The cloud announces each once to its
	// webhooks (it keeps the highest Seq it took); the instance sends
	// them again until a report is accepted.
	Notifications []Notification `json:"notifications,omitempty"`
	// Pending counts the local writes of a ReadWrite instance not synced
	// up yet (its outbox); Conflicts the tags it wrote that the parent
	// had meanwhile moved elsewhere (WriteResult.Conflict), since it
	// started.
	Pending   int64 `json:"pending,omitempty"`
	Conflicts int64 `json:"conflicts,omitempty"`
}

// MaxReportNotifications bounds the notifications of one status report.
const MaxReportNotifications = 100

// Notification is an event at the site, for the cloud's webhooks: an image
// became available there (pushed by a local client, or synced from the
// parent) or was deleted there. Seq is its place in the site's own notice
// log.
type Notification struct {
	Seq       uint64    `json:"seq"`
	Action    string    `json:"action"` // "push" or "delete"
	Repo      string    `json:"repo"`
	Tag       string    `json:"tag,omitempty"`
	Digest    string    `json:"digest,omitempty"`
	MediaType string    `json:"mediaType,omitempty"`
	Size      int64     `json:"size,omitempty"`
	Time      time.Time `json:"time"`
}

// Validate checks a notification as the cloud takes it.
func (n Notification) Validate() error {
	if n.Seq == 0 {
		return fmt.Errorf("%w: notification without a sequence", ErrInvalid)
	}
	if n.Action != "push" && n.Action != "delete" {
		return fmt.Errorf("%w: notification %d: action %q: want push or delete", ErrInvalid, n.Seq, n.Action)
	}
	if err := oci.ValidateName(n.Repo); err != nil {
		return fmt.Errorf("%w: notification %d: %v", ErrInvalid, n.Seq, err)
	}
	if n.Tag == "" && n.Digest == "" {
		return fmt.Errorf("%w: notification %d: neither tag nor digest", ErrInvalid, n.Seq)
	}
	if n.Tag != "" {
		if err := oci.ValidateTag(n.Tag); err != nil {
			return fmt.Errorf("%w: notification %d: %v", ErrInvalid, n.Seq, err)
		}
	}
	if n.Digest != "" {
		if _, err := oci.ParseDigest(n.Digest); err != nil {
			return fmt.Errorf("%w: notification %d: %v", ErrInvalid, n.Seq, err)
		}
	}
	if len(n.MediaType) > 255 || n.Size < 0 {
		return fmt.Errorf("%w: notification %d: malformed media type or size", ErrInvalid, n.Seq)
	}
	return nil
}

// The ops of a Write.
const (
	// WriteTag sets a tag (Digest) or deletes it (Deleted).
	WriteTag = "tag"
	// WriteDeleteManifest deletes a manifest with its tags.
	WriteDeleteManifest = "delete-manifest"
)

// Write is a local write of a ReadWrite connected registry that it syncs
// up, once the content it names is at the parent (blobs and manifests go
// through the Distribution API first): the parent merges it as regions
// merge each other's writes, last writer wins by (Clock, Origin), and,
// when it wins, forwards it to every region with that stamp.
type Write struct {
	Op     string `json:"op"`
	Repo   string `json:"repo"`
	Tag    string `json:"tag,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Deleted, with WriteTag, deletes the tag.
	Deleted bool `json:"deleted,omitempty"`
	// Clock is the write's hybrid logical clock at the site and Origin
	// the region (connected registry) where a client made it.
	Clock  uint64 `json:"clock"`
	Origin string `json:"origin"`
	// Prev is the digest the tag pointed at, at the site, before the
	// write: the parent holding another one means the tag was written
	// elsewhere meanwhile (a conflict).
	Prev string `json:"prev,omitempty"`
}

// WriteResult answers a Write: what the tag is at the parent after it.
type WriteResult struct {
	Digest  string `json:"digest,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
	// Won says that the write is the tag's state now; Conflict that the
	// parent's tag had been moved to another digest than Prev, by a write
	// made elsewhere (whichever won).
	Won      bool `json:"won"`
	Conflict bool `json:"conflict,omitempty"`
}

// MaxClockSkew bounds how far ahead of the parent's wall clock a Write's
// clock may be: a clock far in the future would win every later write.
const MaxClockSkew = time.Hour

// StatusInterval is how often an instance reports its status; the cloud
// shows a connected registry Offline once OfflineAfter has passed without
// one.
const (
	StatusInterval = 5 * time.Second
	OfflineAfter   = 20 * time.Second
)

// ConnectionString is what `georeg connected-registry get-settings` prints
// and an instance starts with.
type ConnectionString struct {
	Name           string
	SyncToken      string
	SyncPassword   string
	ParentEndpoint string // host:port
	Protocol       string // http or https
}

// String spells the connection string as ACR does.
func (c ConnectionString) String() string {
	return fmt.Sprintf("ConnectedRegistryName=%s;SyncTokenName=%s;SyncTokenPassword=%s;ParentGatewayEndpoint=%s;ParentEndpointProtocol=%s",
		c.Name, c.SyncToken, c.SyncPassword, c.ParentEndpoint, c.Protocol)
}

// ParseConnectionString parses a connection string; every field is
// required.
func ParseConnectionString(s string) (ConnectionString, error) {
	var c ConnectionString
	for _, kv := range strings.Split(strings.TrimSpace(s), ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("%w: connection string: %q is not KEY=VALUE", ErrInvalid, kv)
		}
		switch k {
		case "ConnectedRegistryName":
			c.Name = v
		case "SyncTokenName":
			c.SyncToken = v
		case "SyncTokenPassword":
			c.SyncPassword = v
		case "ParentGatewayEndpoint":
			c.ParentEndpoint = v
		case "ParentEndpointProtocol":
			c.Protocol = v
		default:
			return c, fmt.Errorf("%w: connection string: unknown key %q", ErrInvalid, k)
		}
	}
	switch {
	case c.Name == "" || c.SyncToken == "" || c.SyncPassword == "" || c.ParentEndpoint == "":
		return c, fmt.Errorf("%w: connection string: want ConnectedRegistryName, SyncTokenName, SyncTokenPassword and ParentGatewayEndpoint", ErrInvalid)
	case c.Protocol != "http" && c.Protocol != "https":
		return c, fmt.Errorf("%w: connection string: ParentEndpointProtocol %q: want http or https", ErrInvalid, c.Protocol)
	}
	return c, ValidateName(c.Name)
}

// BaseURL is the parent endpoint's base URL.
func (c ConnectionString) BaseURL() string { return c.Protocol + "://" + c.ParentEndpoint }
