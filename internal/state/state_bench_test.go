package state

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/fsys"
)

// BenchmarkLookup is the state-file lookup of every start, kill and delete (and of every
// kill or delete of a container that did not opt in: a miss), in a state directory that
// holds other containers' files.
func BenchmarkLookup(b *testing.B) {
	for _, others := range []int{0, 1000} {
		s := Store{FS: fsys.OS{}, Dir: b.TempDir()}
		for i := range others {
			if err := s.Write(&File{ID: fmt.Sprintf("other-%d", i), Root: "/run/runc", Key: "k", Started: StartedCreated}); err != nil {
				b.Fatal(err)
			}
		}
		now := time.Now()
		if err := s.Write(&File{ID: "c1", Root: "/run/containerd/runc/k8s.io", Key: "default_web-0_web", Bundle: "/b",
			Started: StartedRestored, Created: now, Checkpointed: &now, Timings: map[string]float64{"total": 1}}); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("hit/others=%d", others), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Read("/run/containerd/runc/k8s.io", "c1"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("miss/others=%d", others), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Read("/run/containerd/runc/k8s.io", "c2"); !errors.Is(err, fs.ErrNotExist) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWrite is the atomic state-file write of every opted-in create (temporary file,
// fsync, rename), on the test's temporary directory's filesystem.
func BenchmarkWrite(b *testing.B) {
	s := Store{FS: fsys.OS{}, Dir: b.TempDir()}
	f := &File{ID: "c1", Root: "/run/runc", Key: "k", Bundle: "/b", Started: StartedCreated, Created: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(f); err != nil {
			b.Fatal(err)
		}
	}
}
