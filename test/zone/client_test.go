package zone

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/georeg/georeg/test/harness"
	"github.com/georeg/georeg/test/ociclient"
)

// client is the shared OCI client plus pushes and pulls of the tests'
// single-layer images. It talks to one node per call; callers choose the
// node.
type client struct{ *ociclient.Client }

// newClient returns a client of mesh m (sending its credential) whose
// requests give up after timeout.
func newClient(m *harness.Mesh, timeout time.Duration) *client { return &client{m.Client(timeout)} }

// image is a single-layer OCI image with random content and the repository
// and tag it is pushed as.
type image struct {
	ociclient.Image
	Repo, Tag string
}

// newImage returns an image with a random layer of layerSize bytes, tagged
// tag in repo.
func newImage(repo, tag string, layerSize int) *image {
	layer := ociclient.NewBlob(ociclient.MediaLayer, ociclient.RandomBytes(rand.Uint64(), layerSize))
	return &image{Image: ociclient.NewImage(repo+":"+tag, layer), Repo: repo, Tag: tag}
}

// pushImage pushes img's blobs and manifest (by tag) through base, the
// layer in chunks when chunked.
func (c *client) pushImage(ctx context.Context, base string, img *image, chunked bool) error {
	var err error
	if chunked {
		err = c.UploadChunked(ctx, base, img.Repo, img.Layers[0].Data, 2)
	} else {
		err = c.PushBlob(ctx, base, img.Repo, img.Layers[0])
	}
	if err != nil {
		return err
	}
	if err := c.PushBlob(ctx, base, img.Repo, img.Config); err != nil {
		return err
	}
	return c.PutManifest(ctx, base, img.Repo, img.Tag, img.Manifest)
}

// pullImage pulls img by ref (its tag or digest) from base and checks that
// the manifest is img's and that both blobs match their digests.
func (c *client) pullImage(ctx context.Context, base string, img *image, ref string) error {
	d, _, err := c.GetManifest(ctx, base, img.Repo, ref)
	if err != nil {
		return err
	}
	if d != img.Digest {
		return fmt.Errorf("%w: %s:%s on %s is %s, the push was acknowledged as %s", ociclient.ErrWrongBytes, img.Repo, ref, base, d, img.Digest)
	}
	if _, err := c.GetBlob(ctx, base, img.Repo, img.Config.Digest); err != nil {
		return err
	}
	_, err = c.GetBlob(ctx, base, img.Repo, img.Layers[0].Digest)
	return err
}
