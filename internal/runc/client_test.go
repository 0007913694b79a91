package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseVersion(t *testing.T) {
	for out, want := range map[string]Version{
		"runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\n": {Major: 1, Minor: 1, Patch: 5},
		"runc version 1.5.3\ncommit: v1.5.3-0-g1\n":                              {Major: 1, Minor: 5, Patch: 3},
		"runc version 1.2.0-rc.1\n":                                              {Major: 1, Minor: 2},
		"runc version v1.3.7\n":                                                  {Major: 1, Minor: 3, Patch: 7},
		"runc version 1.12\n":                                                    {Major: 1, Minor: 12},
		"runc version 2.0.10-dev":                                                {Major: 2, Patch: 10},
	} {
		v, err := ParseVersion(out)
		if err != nil || v.Major != want.Major || v.Minor != want.Minor || v.Patch != want.Patch {
			t.Errorf("ParseVersion(%q) = %+v, %v", out, v, err)
		}
	}
	for _, out := range []string{"flag provided but not defined", "runc version 1\n", "runc version x.2\n", "runc version .1.2", ""} {
		if v, err := ParseVersion(out); err == nil {
			t.Errorf("ParseVersion(%q) = %+v, want an error", out, v)
		}
	}
	v11, v13, v15 := Version{Major: 1, Minor: 1}, Version{Major: 1, Minor: 3}, Version{Major: 1, Minor: 5}
	if !v11.HonoursCriuFlag() || v13.HonoursCriuFlag() || !v13.AcceptsCriuFlag() || v15.AcceptsCriuFlag() {
		t.Error("the --criu table is wrong")
	}
}

// fakeRunc writes a script that answers --version as the given runc and records its
// arguments and PATH for every other call.
func fakeRunc(t *testing.T, version string) (path, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "record")
	path = filepath.Join(dir, "runc")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'runc version " + version + "'; exit 0; fi\n" +
		"echo \"args: $*\" >> " + record + "\necho \"path: $PATH\" >> " + record + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, record
}

// The configured CRIU reaches every runc the way it accepts it: --criu only for 1.1, and a
// "criu" link first on PATH for every version (1.4 and later reject --criu on every command).
func TestCriuByVersion(t *testing.T) {
	for _, tt := range []struct {
		version  string
		criuFlag bool
	}{{"1.1.5", true}, {"1.3.0", false}, {"1.5.3", false}} {
		t.Run(tt.version, func(t *testing.T) {
			runc, record := fakeRunc(t, tt.version)
			criuDir := filepath.Join(t.TempDir(), "criu-bin")
			c := &Client{Path: runc, Criu: "/usr/local/sbin/tardis-criu", CriuDir: criuDir, Env: []string{"PATH=/usr/bin"},
				Global: Global{Root: "/run/r"}}
			ctx := context.Background()
			if err := c.Checkpoint(ctx, "c1", CheckpointOpts{ImagePath: "/i", WorkPath: "/w"}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.State(ctx, "c1"); err == nil {
				t.Fatal("the fake's empty output parsed as a state")
			}
			b, _ := os.ReadFile(record)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if got := strings.Contains(lines[0], "--criu=/usr/local/sbin/tardis-criu"); got != tt.criuFlag {
				t.Errorf("checkpoint args %q: --criu %v, want %v", lines[0], got, tt.criuFlag)
			}
			if lines[1] != "path: "+criuDir+":/usr/bin" {
				t.Errorf("checkpoint %s", lines[1])
			}
			if b, err := os.ReadFile(filepath.Join(criuDir, "criu")); err != nil || !strings.Contains(string(b), "exec '/usr/local/sbin/tardis-criu' \"$@\"") {
				t.Errorf("criu wrapper %q, %v", b, err)
			}
			if strings.Contains(lines[2], "--criu") || lines[2] != "args: --root=/run/r state c1" {
				t.Errorf("state must never carry --criu: %q", lines[2])
			}
		})
	}
}

func TestEnvDefaultPath(t *testing.T) {
	c := &Client{Env: []string{"XDG_RUNTIME_DIR=/run/user/0"}}
	env := c.env("")
	if !slices.Contains(env, "PATH="+DefaultPath) || !slices.Contains(env, GuardEnv+"=1") {
		t.Errorf("env %q", env)
	}
	c.Env = []string{"PATH="}
	if env := c.env("/x"); !slices.Contains(env, "PATH=/x:"+DefaultPath) {
		t.Errorf("empty PATH: %q", env)
	}
}

func TestRestoreArgs(t *testing.T) {
	got := RestoreOpts{Bundle: "/b", ImagePath: "/i", WorkPath: "/w", PidFile: "/p", ConsoleSocket: "/s", NoPivot: true,
		Extra: []string{"--tcp-established"}}.Args("c1")
	want := []string{"restore", "--detach", "--bundle=/b", "--image-path=/i", "--work-path=/w", "--pid-file=/p",
		"--console-socket=/s", "--no-pivot", "--tcp-established", "c1"}
	if !slices.Equal(got, want) {
		t.Errorf("Args = %q", got)
	}
}

// At a deadline, CRIU (here: the child of a "runc" that cleans up when its child dies) is
// stopped first, so that runc gets to undo what it did before it exits; only a runc that
// does not exit within its grace is killed.
func TestDeadlineStopsCriuFirst(t *testing.T) {
	dir := t.TempDir()
	cleaned := filepath.Join(dir, "cleaned")
	script := filepath.Join(dir, "runc")
	body := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'runc version 1.1.5'; exit 0; fi\n" +
		"sleep 1000 &\nwait $!\necho runc-cleaned-up > " + cleaned + "\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Client{Path: script, Grace: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var proc Proc
	calledAt := false
	err := c.Checkpoint(ctx, "c1", CheckpointOpts{ImagePath: "/i", WorkPath: "/w",
		Started: func(p Proc) { proc = p }, AtDeadline: func() { calledAt = proc.Alive() }})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "deadline exceeded after 300ms (stopped, CRIU first)") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(cleaned); string(b) != "runc-cleaned-up\n" {
		t.Fatal("runc was killed before it could clean up after its CRIU")
	}
	if !calledAt {
		t.Error("AtDeadline was not called while runc (and its CRIU) still ran")
	}
	if proc.Alive() || len(groupMembers(proc.Pid)) != 0 {
		t.Error("something of the group outlived the deadline")
	}
}

// A runc that does not exit after its CRIU is gone is killed after its grace.
func TestDeadlineKillsAStuckRunc(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "runc")
	body := "#!/bin/sh\ntrap '' TERM\nsleep 1000 &\nwait $!\nwhile :; do sleep 0.1; done\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Client{Path: script, Grace: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var proc Proc
	_, err := c.run(ctx, call{args: []string{"restore"}, started: func(p Proc) { proc = p }})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if proc.Alive() {
		t.Error("a runc stuck after its grace is still alive")
	}
}
