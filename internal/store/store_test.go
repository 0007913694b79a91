package store

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/optin"
)

var node = Node{Name: "n1", Arch: "x86_64", CriuVersion: "4.1.1", CPUFlags: []string{"fpu", "sse2"}}

// k is the key most tests use, in the default tenant.
var k = Ref{Tenant: "default", Key: "k"}

func newStore(t testing.TB) Store {
	t.Helper()
	root := filepath.Join(t.TempDir(), "ckpt")
	return New(root, nil)
}

func keyDir(t testing.TB, s Store, r Ref) string {
	t.Helper()
	d, err := s.KeyDir(r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// publish makes a real-looking checkpoint for a key: fake CRIU images and a manifest.
func publish(t testing.TB, s Store, r Ref) *Checkpoint {
	t.Helper()
	p, err := s.Begin(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := criuimgtest.WriteFake(p.Images(), criuimgtest.FakeProcess{Pid: 1, Threads: 1, Pages: 2, Comm: "sh"}); err != nil {
		t.Fatal(err)
	}
	c, err := p.Publish(&Manifest{ContainerID: "c", Created: time.Now(), Node: node, Rootfs: "in-place",
		Identity: optin.Identity{Args: []string{"sh"}, Cwd: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rewriteManifest(t *testing.T, c *Checkpoint, change func(*Manifest)) {
	t.Helper()
	m, err := ReadManifest(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	change(m)
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(c.Dir, ManifestName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPublishReplacesAndValidates(t *testing.T) {
	s := newStore(t)
	first := publish(t, s, k)
	second := publish(t, s, k)
	cur, err := s.Current(k)
	if err != nil || cur == nil || cur.Name != second.Name {
		t.Fatalf("current = %+v, %v; want %s", cur, err, second.Name)
	}
	if _, err := os.Stat(first.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("previous checkpoint still there: %v", err)
	}
	m, err := s.Validate(cur, node)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if m.Tenant != "default" || m.Key != "k" || m.Signature != "" {
		t.Errorf("manifest tenant %q key %q signature %q", m.Tenant, m.Key, m.Signature)
	}
	for _, d := range []string{filepath.Join(s.Root, "default"), keyDir(t, s, k), cur.Dir, cur.Images()} {
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

// A checkpoint with CUDA state is written as version 3, so that a tardis without GPU
// support refuses it by its version; dropping the state from it is refused too.
func TestPublishGPU(t *testing.T) {
	s := newStore(t)
	p, err := s.Begin(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := criuimgtest.WriteFake(p.Images(), criuimgtest.FakeProcess{Pid: 1, Threads: 1, Pages: 2, Comm: "sh"}); err != nil {
		t.Fatal(err)
	}
	rec := &gpu.Checkpoint{Driver: "580.159.04", GPUModel: "NVIDIA H200", GPUCount: 1, TotalBytes: 1 << 30,
		Processes: []gpu.Process{{PID: 4242, NSPID: 1, Comm: "python3", Bytes: 1 << 30}}}
	c, err := p.Publish(&Manifest{ContainerID: "c", Created: time.Now(), Node: node, Rootfs: "in-place", GPU: rec})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Validate(c, node)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 3 || m.GPU == nil || m.GPU.Processes[0].Comm != "python3" || m.GPU.TotalBytes != 1<<30 {
		t.Fatalf("manifest version %d, GPU %+v", m.Version, m.GPU)
	}
	rewriteManifest(t, c, func(m *Manifest) { m.GPU = nil })
	if _, err := s.Validate(c, node); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "manifest version 3, want 2") {
		t.Fatalf("a version 3 manifest without its CUDA state: %v", err)
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, tt := range map[string]struct {
		damage func(t *testing.T, c *Checkpoint)
		node   Node
		msg    string
	}{
		"manifest missing": {damage: func(t *testing.T, c *Checkpoint) { os.Remove(filepath.Join(c.Dir, ManifestName)) }, msg: "manifest"},
		"torn file": {damage: func(t *testing.T, c *Checkpoint) {
			f, _ := os.OpenFile(filepath.Join(c.Images(), "pstree.img"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("x"))
			f.Close()
		}, msg: `"images/pstree.img" has`},
		"file missing":  {damage: func(t *testing.T, c *Checkpoint) { os.Remove(filepath.Join(c.Images(), "descriptors.json")) }, msg: "descriptors.json"},
		"bad image":     {damage: func(t *testing.T, c *Checkpoint) { criuimgtest.Damage(c.Images(), "missing-core") }, msg: "core-"},
		"other arch":    {node: Node{Arch: "aarch64", CriuVersion: "4.1.1"}, msg: "made on x86_64, this node is aarch64"},
		"older criu":    {node: Node{Arch: "x86_64", CriuVersion: "3.17.1", CPUFlags: []string{"fpu", "sse2"}}, msg: "older 3.17.1"},
		"unknown criu":  {node: Node{Arch: "x86_64", CPUFlags: []string{"fpu", "sse2"}}, msg: "version is unknown"},
		"missing flags": {node: Node{Arch: "x86_64", CriuVersion: "4.2", CPUFlags: []string{"fpu"}}, msg: "lacks sse2"},
		"unsafe path": {damage: func(t *testing.T, c *Checkpoint) {
			rewriteManifest(t, c, func(m *Manifest) { m.Files = append(m.Files, File{Path: "../../etc/passwd", Size: 1}) })
		}, msg: "unsafe path"},
		"another tenant's manifest": {damage: func(t *testing.T, c *Checkpoint) {
			rewriteManifest(t, c, func(m *Manifest) { m.Tenant = "k8s-attacker" })
		}, msg: `manifest is of tenant "k8s-attacker", not "default"`},
		"another key's manifest": {damage: func(t *testing.T, c *Checkpoint) {
			rewriteManifest(t, c, func(m *Manifest) { m.Key = "other" })
		}, msg: `manifest is for key "other"`},
		"a file the manifest does not list": {damage: func(t *testing.T, c *Checkpoint) {
			os.WriteFile(filepath.Join(c.Images(), "pages-9.img"), []byte("planted"), 0o600)
		}, msg: `"images/pages-9.img" is not in the manifest`},
		"a symlink in place of an image": {damage: func(t *testing.T, c *Checkpoint) {
			p := filepath.Join(c.Images(), "descriptors.json")
			os.Rename(p, p+".real")
			os.Symlink("/etc/hostname", p)
		}, msg: "is a symlink"},
		"a symlinked images dir": {damage: func(t *testing.T, c *Checkpoint) {
			real := filepath.Join(t.TempDir(), "images")
			os.Rename(c.Images(), real)
			os.Symlink(real, c.Images())
		}, msg: "is a symlink"},
		"a file others may read": {damage: func(t *testing.T, c *Checkpoint) {
			os.Chmod(filepath.Join(c.Images(), "inventory.img"), 0o644)
		}, msg: "group or others may read"},
		"a directory others may enter": {damage: func(t *testing.T, c *Checkpoint) { os.Chmod(c.Images(), 0o755) }, msg: "mode 0755"},
		"CUDA state under version 2": {damage: func(t *testing.T, c *Checkpoint) {
			rewriteManifest(t, c, func(m *Manifest) { m.GPU = &gpu.Checkpoint{Driver: "580.159.04"} })
		}, msg: "manifest version 2, want 3"},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			c := publish(t, s, k)
			if tt.damage != nil {
				tt.damage(t, c)
			}
			n := node
			if tt.node.Arch != "" {
				n = tt.node
			}
			_, err := s.Validate(c, n)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Validate = %v, want ErrInvalid with %q", err, tt.msg)
			}
		})
	}
}

// TestValidateRefusesOtherOwners: a checkpoint planted by another user (a world-writable
// checkpoint root on shared storage) is refused, however well-formed.
func TestValidateRefusesOtherOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	s := newStore(t)
	c := publish(t, s, k)
	if err := os.Lchown(filepath.Join(c.Images(), "pstree.img"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Validate(c, node); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("Validate = %v, want the owner named", err)
	}
	if err := os.Lchown(keyDir(t, s, k), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current(k); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Current under a key directory of another user = %v", err)
	}
}

func TestUnsafeRootRefused(t *testing.T) {
	s := newStore(t)
	publish(t, s, k)
	if err := os.Chmod(s.Root, 0o777); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"Current": func() error { _, err := s.Current(k); return err },
		"Begin":   func() error { _, err := s.Begin(k); return err },
		"Claim":   func() error { _, err := s.Claim(k, "n1"); return err },
	} {
		if err := f(); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "group or others may write") {
			t.Errorf("%s in a world-writable root = %v", name, err)
		}
	}
}

// TestSymlinkedKeyDirNeverFollowed: a key directory that is a symlink to a host directory
// is neither chmod'ed nor written into, and its current is not read.
func TestSymlinkedKeyDirNeverFollowed(t *testing.T) {
	s := newStore(t)
	publish(t, s, Ref{Tenant: "default", Key: "other"}) // makes the root and tenant dirs
	host := t.TempDir()
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, keyDir(t, s, k)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(k); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Begin through a symlinked key dir = %v", err)
	}
	if _, err := s.Current(k); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Current through a symlinked key dir = %v", err)
	}
	if st, _ := os.Stat(host); st.Mode().Perm() != 0o755 {
		t.Errorf("host dir chmod'ed to %v", st.Mode().Perm())
	}
	if es, _ := os.ReadDir(host); len(es) != 0 {
		t.Errorf("written into the host dir: %v", es)
	}
}

// TestCurrentToHostDirNeverWritten: a current link that names a host directory (or anything
// but a ckpt-<stamp> of its own key) is refused; nothing is written where it points, and no
// name read from it reaches a path.
func TestCurrentToHostDirNeverWritten(t *testing.T) {
	for _, target := range []string{"../../../etc", "/etc", "ckpt-x", "ckpt-20250102T030405.123456789Z-abcd0123/../.."} {
		s := newStore(t)
		publish(t, s, k)
		link := filepath.Join(keyDir(t, s, k), CurrentLink)
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Current(k); !errors.Is(err, ErrUnsafe) {
			t.Errorf("current -> %s: Current = %+v, %v", target, c, err)
		}
		if c, err := s.Claim(k, "n1"); err == nil || c != nil {
			t.Errorf("current -> %s: Claim = %+v, %v", target, c, err)
		}
	}
	// A ckpt-<stamp> name that is itself a symlink out.
	s := newStore(t)
	c := publish(t, s, k)
	host := t.TempDir()
	os.RemoveAll(c.Dir)
	os.Symlink(host, c.Dir)
	if got, err := s.Current(k); !errors.Is(err, ErrUnsafe) {
		t.Errorf("current -> symlinked ckpt dir: %+v, %v", got, err)
	}
	if es, _ := os.ReadDir(host); len(es) != 0 {
		t.Errorf("written into the host dir: %v", es)
	}
}

func TestConsumeSetAsideForget(t *testing.T) {
	s := newStore(t)
	c := publish(t, s, k)
	aside, err := s.SetAside(c, "validate: broken")
	if err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.Current(k); cur != nil {
		t.Errorf("set-aside checkpoint is still current")
	}
	if b, _ := os.ReadFile(filepath.Join(aside, ReasonFile)); string(b) != "validate: broken\n" {
		t.Errorf("REASON = %q", b)
	}

	c = publish(t, s, k)
	if err := s.Consume(c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Error("consumed checkpoint still there")
	}

	// A checkpoint newer than the container belongs to another incarnation: kept.
	before := time.Now().Add(-time.Hour)
	c = publish(t, s, k)
	if removed, err := s.ForgetBefore(k, before); err != nil || len(removed) != 0 {
		t.Errorf("ForgetBefore(before) removed %v, %v", removed, err)
	}
	os.Mkdir(filepath.Join(keyDir(t, s, k), ".tmp-20200101T000000.000000000Z-00000000"), 0o700)
	removed, err := s.ForgetBefore(k, time.Now().Add(time.Hour))
	if err != nil || len(removed) != 2 {
		t.Errorf("ForgetBefore(after) removed %v, %v", removed, err)
	}
	if cur, _ := s.Current(k); cur != nil {
		t.Error("checkpoint of a container that ended on its own still current")
	}
	// A claimed checkpoint is never forgotten: a restore holds it.
	publish(t, s, k)
	claimed, _ := s.Claim(k, "n1")
	if removed, err := s.ForgetBefore(k, time.Now().Add(time.Hour)); err != nil || len(removed) != 0 {
		t.Errorf("ForgetBefore removed %v (%v) while a restore holds the checkpoint", removed, err)
	}
	if _, err := os.Stat(claimed.Dir); err != nil {
		t.Error(err)
	}
}

func TestTenantsAreApart(t *testing.T) {
	s := newStore(t)
	victim := Ref{Tenant: "k8s-db", Key: "db_store-0_counter"}
	attacker := Ref{Tenant: "k8s-evil", Key: "db_store-0_counter"}
	v := publish(t, s, victim)
	if c, err := s.Current(attacker); c != nil || err != nil {
		t.Fatalf("attacker's Current = %+v, %v", c, err)
	}
	if c, err := s.Claim(attacker, "n1"); c != nil || err != nil {
		t.Fatalf("attacker's Claim = %+v, %v", c, err)
	}
	a := publish(t, s, attacker)
	if cur, _ := s.Current(victim); cur == nil || cur.Name != v.Name {
		t.Fatalf("the attacker's checkpoint %s replaced the victim's: %+v", a.Name, cur)
	}
	// A checkpoint moved under another tenant's directory by hand is refused there.
	moved := keyDir(t, s, Ref{Tenant: "k8s-db", Key: "stolen"})
	os.MkdirAll(moved, 0o700)
	os.Rename(a.Dir, filepath.Join(moved, a.Name))
	os.Symlink(a.Name, filepath.Join(moved, CurrentLink))
	c, err := s.Current(Ref{Tenant: "k8s-db", Key: "stolen"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Validate(c, node); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Fatalf("Validate of a moved checkpoint = %v", err)
	}
	refs, err := s.Refs()
	if err != nil || len(refs) != 3 {
		t.Errorf("Refs = %v, %v", refs, err)
	}
}

func TestRefsRefuseUnsafeNames(t *testing.T) {
	s := newStore(t)
	for _, r := range []Ref{{"default", "../x"}, {"..", "k"}, {"a/b", "k"}, {"default", ""}, {"", "k"}} {
		if _, err := s.Begin(r); err == nil {
			t.Errorf("Begin(%+v) accepted", r)
		}
		if _, err := s.KeyDir(r); err == nil {
			t.Errorf("KeyDir(%+v) accepted", r)
		}
	}
}

func TestSigned(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	root := filepath.Join(t.TempDir(), "ckpt")
	signed := New(root, key)
	c := publish(t, signed, k)
	m, err := signed.Validate(c, node)
	if err != nil {
		t.Fatal(err)
	}
	if m.Signature == "" || m.Files[0].SHA256 == "" {
		t.Fatalf("not signed: %+v", m)
	}
	// Another key, or none on the writer's side, is refused.
	if _, err := New(root, []byte("another key, also 32 bytes long!")).Validate(c, node); !errors.Is(err, ErrSignature) {
		t.Errorf("Validate with another key = %v", err)
	}
	unsigned := publish(t, New(root, nil), Ref{Tenant: "default", Key: "u"})
	if _, err := signed.Validate(unsigned, node); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("unsigned = %v", err)
	}
	// A changed manifest, or a changed file of the same size, is refused.
	rewriteManifest(t, c, func(m *Manifest) { m.ContainerID = "someone-else" })
	if _, err := signed.Validate(c, node); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered manifest = %v", err)
	}
	c = publish(t, signed, k)
	p := filepath.Join(c.Images(), "descriptors.json")
	b, _ := os.ReadFile(p)
	b[len(b)-2] ^= 1
	os.WriteFile(p, b, 0o600)
	if _, err := signed.Validate(c, node); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "digest") {
		t.Errorf("tampered file = %v", err)
	}
}

func TestReadSigningKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	os.WriteFile(good, []byte(strings.Repeat("k", 32)), 0o600)
	if _, err := ReadSigningKey(good); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte(strings.Repeat("k", 32)), 0o644)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("k"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	for _, p := range []string{loose, short, link, filepath.Join(dir, "none")} {
		if _, err := ReadSigningKey(p); err == nil {
			t.Errorf("ReadSigningKey(%s) accepted", p)
		}
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
	f.Add([]byte(`{"version":2,"tenant":"default","key":"k","rootfs":"in-place","files":[{"path":"images/inventory.img","size":1}],"node":{"arch":"x86_64"}}`))
	f.Add([]byte(`{"version":2,"key":"k","rootfs":"overlay","files":[{"path":"../x","size":0}]}`))
	f.Add([]byte(`{"files":[{"path":"/etc/passwd","size":0}]}`))
	f.Add([]byte(`[]`))
	s := newStore(f)
	var c *Checkpoint
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if c == nil { // one real checkpoint per fuzzing process; only its manifest changes
			c = publish(t, s, k)
		}
		if err := os.WriteFile(filepath.Join(c.Dir, ManifestName), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := s.Validate(c, node)
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
	s := newStore(t)
	c := publish(t, s, k)
	got, err := s.Claim(k, "n1")
	if err != nil || got == nil || got.Name != c.Name || got.Claim == "" {
		t.Fatalf("Claim = %+v, %v", got, err)
	}
	if cur, _ := s.Current(k); cur != nil {
		t.Error("a claimed checkpoint is still current")
	}
	if again, err := s.Claim(k, "n2"); again != nil || err != nil {
		t.Errorf("second Claim = %+v, %v; want nothing: the first holds it", again, err)
	}
	// Another owner's claim is not taken back; one's own is.
	if back, err := s.Reclaim(k, "n2"); len(back) != 0 || err != nil {
		t.Errorf("Reclaim by n2 = %v, %v", back, err)
	}
	if back, err := s.Reclaim(k, "n1"); len(back) != 1 || err != nil {
		t.Fatalf("Reclaim by n1 = %v, %v", back, err)
	}
	if cur, _ := s.Current(k); cur == nil || cur.Name != c.Name {
		t.Fatalf("after Reclaim current = %+v", cur)
	}
	// Unclaim gives it back as well.
	got, _ = s.Claim(k, "n1")
	if err := s.Unclaim(got); err != nil {
		t.Fatal(err)
	}
	if cur, _ := s.Current(k); cur == nil || cur.Name != c.Name {
		t.Fatalf("after Unclaim current = %+v", cur)
	}
	// A claim that ends in Retire leaves neither current nor the claim link.
	got, _ = s.Claim(k, "n1")
	retired, err := s.Retire(got)
	if err != nil || !s.IsRetired(retired) {
		t.Fatalf("Retire = %q, %v", retired, err)
	}
	if links, _ := filepath.Glob(filepath.Join(keyDir(t, s, k), ".claimed-*")); len(links) != 0 {
		t.Errorf("claim links left: %v", links)
	}
	// A stale claim behind a newer checkpoint is removed, not restored.
	old := publish(t, s, k)
	_, _ = s.Claim(k, "n1")
	newer := publish(t, s, k)
	if back, err := s.Reclaim(k, "n1"); len(back) != 1 || err != nil {
		t.Fatalf("Reclaim = %v, %v", back, err)
	}
	if cur, _ := s.Current(k); cur == nil || cur.Name != newer.Name {
		t.Errorf("current = %+v, want the newer %s", cur, newer.Name)
	}
	if _, err := os.Stat(old.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale claimed checkpoint kept: %v", err)
	}
	// A claim whose checkpoint is gone is removed, and never becomes current.
	got, _ = s.Claim(k, "n1")
	os.RemoveAll(got.Dir)
	if back, err := s.Reclaim(k, "n1"); len(back) != 1 || err != nil {
		t.Fatalf("Reclaim of a dangling claim = %v, %v", back, err)
	}
	if cur, err := s.Current(k); cur != nil || err != nil {
		t.Errorf("current after a dangling claim = %+v, %v", cur, err)
	}
	if links, _ := filepath.Glob(filepath.Join(keyDir(t, s, k), ".claimed-*")); len(links) != 0 {
		t.Errorf("dangling claim left: %v", links)
	}
}

func TestClassify(t *testing.T) {
	const st = "20250102T030405.123456789Z-abcd0123"
	for _, tt := range []struct {
		name  string
		typ   fs.FileMode
		kind  NameKind
		owner string
	}{
		{"current", fs.ModeSymlink, NameCurrent, ""},
		{"current", fs.ModeDir, NameUnknown, ""},
		{"ckpt-" + st, fs.ModeDir, NameCheckpoint, ""},
		{"ckpt-" + st, fs.ModeSymlink, NameUnknown, ""},
		{"ckpt-" + st, 0, NameUnknown, ""},
		{".tmp-" + st, fs.ModeDir, NameTemp, ""},
		{".current-" + st, fs.ModeSymlink, NameTempLink, ""},
		{"aside-" + st, fs.ModeDir, NameAside, ""},
		{"consumed-" + st, fs.ModeDir, NameConsumed, ""},
		{".claimed-node-a-1a2b3c4d-" + st, fs.ModeSymlink, NameClaim, "node-a-1a2b3c4d"},
		{".claimed-" + st, fs.ModeSymlink, NameUnknown, ""},
		{".claimed-../x-" + st, fs.ModeSymlink, NameUnknown, ""},
		{"ckpt-nonsense", fs.ModeDir, NameUnknown, ""},
		{"ckpt-" + st + "x", fs.ModeDir, NameUnknown, ""},
		{"ckpt-20250102T030405.123456789Z-ABCD0123", fs.ModeDir, NameUnknown, ""}, // upper-case hex: not ours
		{"ckpt-20250102T030405.123456789Z-abcd012g", fs.ModeDir, NameUnknown, ""},
		{"ckpt-20250102T030405.123456789Z_abcd0123", fs.ModeDir, NameUnknown, ""},
		{"ckpt-20251302T030405.123456789Z-abcd0123", fs.ModeDir, NameUnknown, ""}, // month 13
		{"ckpt-2025010xT030405.123456789Z-abcd0123", fs.ModeDir, NameUnknown, ""},
		{"ckpt-20250102T030405.12345678Z-abcd01234", fs.ModeDir, NameUnknown, ""}, // 8 fraction digits
		{"ckpt-" + newStamp(), fs.ModeDir, NameCheckpoint, ""},
		{"stray", 0, NameUnknown, ""},
	} {
		n := Classify(tt.name, tt.typ)
		if n.Kind != tt.kind || n.Owner != tt.owner {
			t.Errorf("Classify(%q, %v) = %+v, want kind %d owner %q", tt.name, tt.typ, n, tt.kind, tt.owner)
		}
	}
}
