package state

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tardis-runtime/tardis/internal/fsys"
)

func TestWriteReadListRemove(t *testing.T) {
	s := Store{FS: fsys.OS{}, Dir: filepath.Join(t.TempDir(), "run-tardis")}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	a := &File{ID: "a", Root: "/run/containerd/runc/k8s.io", Bundle: "/b/a", Key: "ka", Started: StartedCreated, Created: now}
	b := &File{ID: "b", Bundle: "/b/b", Key: "kb", Started: StartedRestored, Checkpoint: "ckpt-1", Created: now}
	// The same id under another runc root (another containerd namespace) is another container.
	a2 := &File{ID: "a", Root: "/run/containerd/runc/default", Key: "ka2", Created: now}
	for _, f := range []*File{a, b, a2} {
		if err := s.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Read("/run/containerd/runc/k8s.io", "a")
	if err != nil || got.Key != "ka" || got.Version != 2 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if got, err := s.Read("", "b"); err != nil || got.Root != DefaultRoot {
		t.Fatalf("Read default root = %+v, %v", got, err)
	}
	all, err := s.List()
	if err != nil || len(all) != 3 {
		t.Fatalf("List = %d, %v", len(all), err)
	}
	if diff := cmp.Diff([]string{"a", "a", "b"}, []string{all[0].ID, all[1].ID, all[2].ID}); diff != "" {
		t.Error(diff)
	}
	if err := s.Remove("/run/containerd/runc/k8s.io", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read("/run/containerd/runc/k8s.io", "a"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: %v", err)
	}
	if err := s.Remove("/run/containerd/runc/k8s.io", "a"); err != nil {
		t.Errorf("removing a missing state file: %v", err)
	}
}

func TestListReportsUnreadable(t *testing.T) {
	s := Store{FS: fsys.OS{}, Dir: t.TempDir()}
	_ = s.Write(&File{ID: "ok", Key: "k"})
	_ = s.FS.WriteFile(filepath.Join(s.Dir, "bad.12345678.json"), []byte("{not json"), 0o644)
	all, err := s.List()
	if len(all) != 1 || err == nil {
		t.Fatalf("List = %d files, %v; want the good one and an error naming the bad one", len(all), err)
	}
}

func TestNameIsStable(t *testing.T) {
	if Name("/run/runc", "c1") != Name("", "c1") || Name("/run/runc/", "c1") != Name("/run/runc", "c1") {
		t.Error("default and spelled-out root must name the same file")
	}
}
