package region

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"
)

func TestChunkQueue(t *testing.T) {
	errWriter := errors.New("local write failed")
	tests := []struct {
		name    string
		writes  []int // sizes of the writer's puts
		werr    error // the writer's close error
		wantErr error // what the reader gets after the data
	}{
		{"empty", nil, nil, io.EOF},
		{"small writes", []int{1, 2, 3}, nil, io.EOF},
		{"writes across buffers", []int{chunkBufSize - 1, chunkBufSize + 1, 3 * chunkBufSize}, nil, io.EOF},
		{"more than the bound", []int{queueBytes, queueBytes + 7}, nil, io.EOF},
		{"the writer fails", []int{100, chunkBufSize}, errWriter, errWriter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newChunkQueue()
			var want bytes.Buffer
			go func() {
				for _, n := range tt.writes {
					p := make([]byte, n)
					rand.Read(p)
					want.Write(p)
					q.put(p)
				}
				q.closeWrite(tt.werr)
			}()
			var got bytes.Buffer
			_, err := io.CopyBuffer(&got, struct{ io.Reader }{q}, make([]byte, 1000))
			if tt.wantErr == io.EOF {
				if err != nil {
					t.Fatalf("copy: %v", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("copy ended with %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("read %d bytes that differ from the %d written", got.Len(), want.Len())
			}
		})
	}

	t.Run("the writer waits at the bound, and no longer once the reader is gone", func(t *testing.T) {
		q := newChunkQueue()
		q.put(make([]byte, queueBytes))
		put := make(chan struct{})
		go func() {
			q.put(make([]byte, 10))
			q.put(make([]byte, 2*queueBytes))
			close(put)
		}()
		select {
		case <-put:
			t.Fatal("put past the bound did not wait")
		case <-time.After(50 * time.Millisecond):
		}
		q.Close()
		select {
		case <-put:
		case <-time.After(10 * time.Second):
			t.Fatal("put still waits after the reader closed")
		}
	})
}
