package zone

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

// fakeMeta is a metadata store whose digest is that of its applied index.
type fakeMeta struct {
	index  uint64
	hashes int
	err    error
}

func (f *fakeMeta) AppliedIndex() uint64 { return f.index }

func (f *fakeMeta) DigestAt() (digest.Digest, uint64, error) {
	f.hashes++
	if f.err != nil {
		return "", 0, f.err
	}
	return digest.FromString(string(rune(f.index))), f.index, nil
}

func TestDigestCache(t *testing.T) {
	f := &fakeMeta{index: 1}
	var c digestCache
	steps := []struct {
		name       string
		index      uint64
		err        error
		wantHashes int
		wantErr    bool
	}{
		{"first call hashes", 1, nil, 1, false},
		{"same index: cached", 1, nil, 1, false},
		{"again: cached", 1, nil, 1, false},
		{"index moved: hashes again", 2, nil, 2, false},
		{"failure is not cached", 3, errors.New("disk"), 3, true},
		{"next call hashes", 3, nil, 4, false},
		{"then cached", 3, nil, 4, false},
	}
	for _, st := range steps {
		f.index, f.err = st.index, st.err
		d, idx, err := c.get(f)
		if (err != nil) != st.wantErr || f.hashes != st.wantHashes {
			t.Fatalf("%s: err %v, %d hashes; want err %v, %d hashes", st.name, err, f.hashes, st.wantErr, st.wantHashes)
		}
		if err == nil {
			want, _, _ := (&fakeMeta{index: st.index}).DigestAt()
			if d != want || idx != st.index {
				t.Fatalf("%s: digest of index %d, want %d", st.name, idx, st.index)
			}
		}
	}
}
