package georep

import (
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// Names the tests use from the shared client, kept short.
const (
	mediaManifest = ociclient.MediaManifest
	mediaLayer    = ociclient.MediaLayer
	MiB           = ociclient.MiB
)

type (
	blob  = ociclient.Blob
	image = ociclient.Image
)

// client talks to any node of any region; every call names the node.
type client struct{ *ociclient.Client }

// newClient returns a client of mesh m, sending its credential.
func newClient(m *harness.Mesh) *client { return &client{m.Client(5 * time.Minute)} }
