package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func exe(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	d := t.TempDir()
	self := filepath.Join(d, "a", "runc") // tardis installed under runc's name
	real := filepath.Join(d, "b", "runc")
	exe(t, self)
	exe(t, real)
	isSelf := func(p string) bool { return p == self }
	path := filepath.Join(d, "a") + ":" + filepath.Join(d, "b")

	got, err := Resolve("", path, isSelf)
	if err != nil || got != real {
		t.Errorf("Resolve from PATH = %q, %v; want the runc that is not tardis, %q", got, err, real)
	}
	if _, err := Resolve("", filepath.Join(d, "a"), isSelf); err == nil || !strings.Contains(err.Error(), "no runc found") {
		t.Errorf("only tardis on PATH: %v", err)
	}
	if _, err := Resolve(self, path, isSelf); !errors.Is(err, ErrSelf) {
		t.Errorf("configured as tardis: %v", err)
	}
	if _, err := Resolve(filepath.Join(d, "nope"), path, isSelf); err == nil {
		t.Error("a missing configured runc was accepted")
	}
	if got, err := Resolve(real, "", isSelf); err != nil || got != real {
		t.Errorf("configured: %q, %v", got, err)
	}
}

func TestSameFile(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	link := filepath.Join(t.TempDir(), "runc")
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	if !SameFile(link) {
		t.Error("a symlink to this program is not recognised as this program")
	}
	other := filepath.Join(t.TempDir(), "runc")
	exe(t, other)
	if SameFile(other) {
		t.Error("another file is taken for this program")
	}
}

func TestLastError(t *testing.T) {
	for in, want := range map[string]string{
		`time="2026-11-25T18:12:23Z" level=error msg="container does not exist"` + "\n": "container does not exist",
		`{"level":"error","msg":"criu failed: type NOTIFY errno 0","time":"x"}`:         "criu failed: type NOTIFY errno 0",
		"plain words\n\n": "plain words",
		"":                "",
	} {
		if got := lastError(in); got != want {
			t.Errorf("lastError(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPs reads `runc ps --format json` as runc writes it: a list of host pids, null for a
// container with no process left, and "does not exist" for one it does not know.
func TestPs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "runc")
	script := `#!/bin/sh
[ "$1 $2 $3" = "ps --format json" ] || { echo "unexpected: $*" >&2; exit 2; }
case $4 in
a) echo '[4242,4250]' ;;
b) echo 'null' ;;
*) echo 'time="2026-11-30T10:00:00Z" level=error msg="container does not exist"' >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Client{Path: p}
	ctx := context.Background()
	if pids, err := c.Ps(ctx, "a"); err != nil || len(pids) != 2 || pids[0] != 4242 || pids[1] != 4250 {
		t.Errorf("Ps(a) = %v, %v", pids, err)
	}
	if pids, err := c.Ps(ctx, "b"); err != nil || len(pids) != 0 {
		t.Errorf("Ps(b) = %v, %v", pids, err)
	}
	if _, err := c.Ps(ctx, "c"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Ps(c) = %v, want ErrNotExist", err)
	}
}
