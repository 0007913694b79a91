package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/internal/rootfs"
)

// e2e-signal NAME SIGNAL: sends SIGNAL (KILL, TERM, ...) to the background program NAME
// (e2e-bg) itself, not to what it started: as when a caller's timeout kills tardis.
func cmdE2ESignal(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: e2e-signal NAME SIGNAL")
	}
	sigs := map[string]syscall.Signal{"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT}
	sig, ok := sigs[args[1]]
	if !ok {
		ts.Fatalf("e2e-signal: unknown signal %s", args[1])
	}
	c := cleanupOf(ts)
	c.mu.Lock()
	cmd, ok := c.named[args[0]]
	c.mu.Unlock()
	if !ok {
		ts.Fatalf("no background program %s", args[0])
	}
	ts.Check(cmd.Process.Signal(sig))
}

// e2e-tree DIR: prints every entry under DIR (not following symlinks) with its type, mode,
// owner, size, modification time and, for files, the SHA-256 of their content: two trees
// print the same exactly when they are the same byte for byte.
func cmdE2ETree(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: e2e-tree DIR")
	}
	root := ts.MkAbs(args[0])
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %o %d:%d %d %d", rel, info.Mode().Type(), info.Mode().Perm(), st.Uid, st.Gid,
			info.Size(), info.ModTime().UnixNano())
		switch {
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += " " + hex.EncodeToString(h.Sum(nil))
		case info.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			line += " -> " + t
		}
		lines = append(lines, line)
		return nil
	})
	ts.Check(err)
	sort.Strings(lines)
	fmt.Fprintln(ts.Stdout(), strings.Join(lines, "\n"))
}

// e2e-mounts DIR: prints the mount points below DIR, one a line; `! e2e-mounts DIR` checks
// there is none.
func cmdE2EMounts(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: e2e-mounts DIR")
	}
	dir := ts.MkAbs(args[0])
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	points, err := rootfs.MountsUnder(dir)
	ts.Check(err)
	if neg && len(points) > 0 {
		ts.Fatalf("mounts under %s: %v", dir, points)
	}
	if !neg && len(points) == 0 {
		ts.Fatalf("no mount under %s", dir)
	}
	fmt.Fprintln(ts.Stdout(), strings.Join(points, "\n"))
}
