package georep

import (
	"time"

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

func newClient() *client { return &client{ociclient.New(5 * time.Minute)} }
