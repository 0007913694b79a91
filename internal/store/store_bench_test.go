package store

import (
	"os"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
)

// BenchmarkCurrent is the lookup of a key's checkpoint on every opted-in create (a miss
// when the key has none, a hit when it is restored).
func BenchmarkCurrent(b *testing.B) {
	s := newStore(b)
	benchPublish(b, s, Ref{Tenant: "default", Key: "hit"}, 1)
	for _, key := range []string{"hit", "miss"} {
		b.Run(key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := s.Current(Ref{Tenant: "default", Key: key})
				if err != nil || (c == nil) != (key == "miss") {
					b.Fatalf("Current(%s) = %v, %v", key, c, err)
				}
			}
		})
	}
}

// BenchmarkValidate is the whole validation before a restore (manifest, every listed
// file's size, the CRIU images, node compatibility) of checkpoints whose memory is 4 KiB
// and 2 GiB (sparse pages file): the cost must not grow with the memory.
func BenchmarkValidate(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int64
	}{{"4KiB", 4 << 10}, {"2GiB", 2 << 30}} {
		b.Run("pages="+c.name, func(b *testing.B) {
			s := newStore(b)
			ck := benchPublish(b, s, k, int(c.bytes/int64(os.Getpagesize())))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Validate(ck, node); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchPublish(b *testing.B, s Store, key Ref, pages int) *Checkpoint {
	b.Helper()
	p, err := s.Begin(key)
	if err != nil {
		b.Fatal(err)
	}
	if err := criuimgtest.WriteFake(p.Images(), criuimgtest.FakeProcess{Pid: 1, Threads: 4, Pages: pages, Comm: "web", Children: 2}); err != nil {
		b.Fatal(err)
	}
	c, err := p.Publish(&Manifest{ContainerID: "c", Created: time.Now(), Node: node, Rootfs: "in-place"})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
