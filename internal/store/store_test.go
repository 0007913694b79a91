package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
)

var node = Node{Name: "n1", Arch: "x86_64", CriuVersion: "4.1.1", CPUFlags: []string{"fpu", "sse2"}}

// publish makes a real-looking checkpoint for key: fake CRIU images and a manifest.
func publish(t *testing.T, s Store, key string) *Checkpoint {
	t.Helper()
	p, err := s.Begin(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := criuimg.WriteFake(p.Images(), criuimg.FakeProcess{Pid: 1, Threads: 1, Pages: 2, Comm: "sh"}); err != nil {
		t.Fatal(err)
	}
	c, err := p.Publish(&Manifest{Key: key, ContainerID: "c", Created: time.Now(), Node: node, Rootfs: "in-place"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPublishReplacesAndValidates(t *testing.T) {
	s := Store{Root: t.TempDir()}
	first := publish(t, s, "k")
	second := publish(t, s, "k")
	cur, err := s.Current("k")
	if err != nil || cur == nil || cur.Name != second.Name {
		t.Fatalf("current = %+v, %v; want %s", cur, err, second.Name)
	}
	if _, err := os.Stat(first.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("previous checkpoint still there: %v", err)
	}
	if _, err := Validate(cur, node); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, d := range []string{s.Root, s.KeyDir("k"), cur.Dir, cur.Images()} {
		if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", d, st.Mode().Perm())
		}
	}
	_ = filepath.Walk(cur.Dir, func(p string, info os.FileInfo, err error) error {
		if info.Mode().IsRegular() && info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, info.Mode().Perm())
		}
		return nil
	})
}

func TestValidateRefuses(t *testing.T) {
	for name, tt := range map[string]struct {
		damage func(c *Checkpoint)
		node   Node
		msg    string
	}{
		"manifest missing": {damage: func(c *Checkpoint) { os.Remove(filepath.Join(c.Dir, ManifestName)) }, msg: "manifest"},
		"torn file": {damage: func(c *Checkpoint) {
			f, _ := os.OpenFile(filepath.Join(c.Images(), "pstree.img"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("x"))
			f.Close()
		}, msg: "images/pstree.img has"},
		"file missing":  {damage: func(c *Checkpoint) { os.Remove(filepath.Join(c.Images(), "descriptors.json")) }, msg: "descriptors.json"},
		"bad image":     {damage: func(c *Checkpoint) { criuimg.Damage(c.Images(), "missing-core") }, msg: "core-"},
		"other arch":    {node: Node{Arch: "aarch64", CriuVersion: "4.1.1"}, msg: "made on x86_64, this node is aarch64"},
		"older criu":    {node: Node{Arch: "x86_64", CriuVersion: "3.17.1", CPUFlags: []string{"fpu", "sse2"}}, msg: "older 3.17.1"},
		"unknown criu":  {node: Node{Arch: "x86_64", CPUFlags: []string{"fpu", "sse2"}}, msg: "version is unknown"},
		"missing flags": {node: Node{Arch: "x86_64", CriuVersion: "4.2", CPUFlags: []string{"fpu"}}, msg: "lacks sse2"},
		"unsafe path": {damage: func(c *Checkpoint) {
			m, _ := ReadManifest(c.Dir)
			m.Files = append(m.Files, File{Path: "../../etc/passwd", Size: 1})
			writeManifest(filepath.Join(c.Dir, ManifestName), m)
		}, msg: "unsafe path"},
	} {
		t.Run(name, func(t *testing.T) {
			s := Store{Root: t.TempDir()}
			c := publish(t, s, "k")
			if tt.damage != nil {
				tt.damage(c)
			}
			n := node
			if tt.node.Arch != "" {
				n = tt.node
			}
			_, err := Validate(c, n)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Validate = %v, want ErrInvalid with %q", err, tt.msg)
			}
		})
	}
}

func TestConsumeSetAsideRemove(t *testing.T) {
	s := Store{Root: t.TempDir()}
	c := publish(t, s, "k")
	aside, err := s.SetAside(c, "validate: broken")
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.Current("k"); cur != nil {
		t.Errorf("set-aside checkpoint is still current")
	}
	if b, _ := os.ReadFile(filepath.Join(aside, ReasonFile)); string(b) != "validate: broken\n" {
		t.Errorf("REASON = %q", b)
	}

	c = publish(t, s, "k")
	if err := s.Consume(c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Error("consumed checkpoint still there")
	}

	// A checkpoint newer than the container belongs to another incarnation: kept.
	before := time.Now().Add(-time.Hour)
	c = publish(t, s, "k")
	if removed, err := s.RemoveOlderThan("k", before); err != nil || len(removed) != 0 {
		t.Errorf("RemoveOlderThan(before) removed %v, %v", removed, err)
	}
	os.MkdirAll(filepath.Join(s.KeyDir("k"), ".tmp-x"), 0o700)
	removed, err := s.RemoveOlderThan("k", time.Now().Add(time.Hour))
	if err != nil || len(removed) != 2 {
		t.Errorf("RemoveOlderThan(after) removed %v, %v", removed, err)
	}
	if cur, _ := s.Current("k"); cur != nil {
		t.Error("checkpoint of a container that ended on its own still current")
	}
}

func TestCurrentRefusesForeignLink(t *testing.T) {
	s := Store{Root: t.TempDir()}
	os.MkdirAll(s.KeyDir("k"), 0o700)
	os.Symlink("../../etc", filepath.Join(s.KeyDir("k"), "current"))
	if _, err := s.Current("k"); err == nil {
		t.Fatal("a current link leaving the key's directory was accepted")
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"4.1.1", "4.1.1", 0}, {"4.1", "4.1.0", 0}, {"3.17.1", "4.0", -1}, {"4.10", "4.9", 1}} {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%s, %s) = %d", tt.a, tt.b, got)
		}
	}
}

// FuzzManifest feeds arbitrary manifests to the restore-time validation: it must never
// panic, never accept a file outside the checkpoint, and only accept what it verified.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"key":"k","rootfs":"in-place","files":[{"path":"images/inventory.img","size":1}],"node":{"arch":"x86_64"}}`))
	f.Add([]byte(`{"version":1,"key":"k","rootfs":"overlay","files":[{"path":"../x","size":0}]}`))
	f.Add([]byte(`{"files":[{"path":"/etc/passwd","size":0}]}`))
	f.Add([]byte(`[]`))
	s := Store{Root: f.TempDir()}
	var c *Checkpoint
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if c == nil { // one real checkpoint per fuzzing process; only its manifest changes
			c = publish(t, s, "k")
		}
		if err := os.WriteFile(filepath.Join(c.Dir, ManifestName), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := Validate(c, node)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		for _, f := range m.Files {
			if strings.HasPrefix(f.Path, "/") || strings.Contains(f.Path, "..") {
				t.Fatalf("accepted %q", f.Path)
			}
		}
	})
}

func TestClaimReclaim(t *testing.T) {
	s := Store{Root: t.TempDir()}
	c := publish(t, s, "k")
	got, err := s.Claim("k", "n1")
	if err != nil || got == nil || got.Name != c.Name || got.Claim == "" {
		t.Fatalf("Claim = %+v, %v", got, err)
	}
	if cur, _ := s.Current("k"); cur != nil {
		t.Error("a claimed checkpoint is still current")
	}
	if again, err := s.Claim("k", "n2"); again != nil || err != nil {
		t.Errorf("second Claim = %+v, %v; want nothing: the first holds it", again, err)
	}
	// Another owner's claim is not taken back; one's own is.
	if back, err := s.Reclaim("k", "n2"); len(back) != 0 || err != nil {
		t.Errorf("Reclaim by n2 = %v, %v", back, err)
	}
	if back, err := s.Reclaim("k", "n1"); len(back) != 1 || err != nil {
		t.Fatalf("Reclaim by n1 = %v, %v", back, err)
	}
	if cur, _ := s.Current("k"); cur == nil || cur.Name != c.Name {
		t.Fatalf("after Reclaim current = %+v", cur)
	}
	// A claim that ends in Retire leaves neither current nor the claim link.
	got, _ = s.Claim("k", "n1")
	retired, err := s.Retire(got)
	if err != nil || !s.IsRetired(retired) {
		t.Fatalf("Retire = %q, %v", retired, err)
	}
	if links, _ := filepath.Glob(filepath.Join(s.KeyDir("k"), ".claimed-*")); len(links) != 0 {
		t.Errorf("claim links left: %v", links)
	}
	// A stale claim behind a newer checkpoint is removed, not restored.
	old := publish(t, s, "k")
	_, _ = s.Claim("k", "n1")
	newer := publish(t, s, "k")
	if back, err := s.Reclaim("k", "n1"); len(back) != 1 || err != nil {
		t.Fatalf("Reclaim = %v, %v", back, err)
	}
	if cur, _ := s.Current("k"); cur == nil || cur.Name != newer.Name {
		t.Errorf("current = %+v, want the newer %s", cur, newer.Name)
	}
	if _, err := os.Stat(old.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale claimed checkpoint kept: %v", err)
	}
}
