package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The crash tests run Apply (or Recover) in a child process, this test binary
// re-executed in helper mode, which SIGKILLs itself at the k-th change to
// root (crashAfter) or, if it gets to the end, right after Apply (or Commit,
// or Recover) returned. The parent then runs Recover and compares trees.

const helperEnv = "TARDIS_ROOTFS_HELPER" // mode: apply, commit, recover

// TestHelperProcess is the child side; it does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	crashAfter, _ = strconv.Atoi(os.Getenv("HELPER_CRASH_AFTER"))
	if n, _ := strconv.Atoi(os.Getenv("HELPER_BATCH")); n > 0 {
		batchSize = n
	}
	fail := func(err error) {
		fmt.Printf("HELPER:error: %v\n", err)
		os.Exit(3)
	}
	backup := os.Getenv("HELPER_BACKUP")
	switch mode {
	case "apply", "commit":
		f, err := os.Open(os.Getenv("HELPER_ARCHIVE"))
		if err != nil {
			fail(err)
		}
		u, _, err := Apply(os.Getenv("HELPER_ROOT"), f, backup)
		if err != nil {
			fail(err)
		}
		if mode == "commit" {
			if err := u.Commit(); err != nil {
				fail(err)
			}
		}
	case "recover":
		if _, err := Recover(backup); err != nil {
			fail(err)
		}
	}
	fmt.Println("HELPER:done")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// helper runs the child in mode, crashing at change k (0: never), and
// reports whether it got to the end.
func helper(t *testing.T, mode string, k, batch int, root, archive, backup string) (finished bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HELPER_CRASH_AFTER="+strconv.Itoa(k),
		"HELPER_BATCH="+strconv.Itoa(batch), "HELPER_ROOT="+root, "HELPER_ARCHIVE="+archive, "HELPER_BACKUP="+backup)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper %s k=%d: %v, want SIGKILL; output:\n%s", mode, k, err, out)
	}
	return bytes.Contains(out, []byte("HELPER:done"))
}

// crashSetup builds, like TestTruncated, an archive of mutate's changes
// (replaced files, whiteouts, opaque dirs, new dirs, symlinks, hard links,
// xattrs) and a root to apply it to, with state of its own (a file where the
// archive has a directory, a directory with other metadata). It returns the
// archive path and the lower directory.
func crashSetup(t *testing.T) (dir, archivePath, lower string) {
	requireRoot(t)
	dir = t.TempDir()
	lower = filepath.Join(dir, "lower")
	makeLower(t, lower)
	old, oldUpper := mountOverlay(t, lower, filepath.Join(dir, "old"))
	mutate(t, old)
	var archive bytes.Buffer
	_, err := Save(oldUpper, &archive)
	must(t, err)
	must(t, unix.Unmount(old, 0))
	archivePath = filepath.Join(dir, "archive.tar")
	must(t, os.WriteFile(archivePath, archive.Bytes(), 0o600))
	return dir, archivePath, lower
}

func prepareRoot(t *testing.T, root string) {
	must(t, os.Chmod(filepath.Join(root, "keep"), 0o711))
	write(t, filepath.Join(root, "newdir"), "in the way", 0o600)
}

func emptyDir(t *testing.T, dir string) {
	t.Helper()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%s not empty: %v", dir, ents)
	}
}

// TestCrashApply kills Apply after each of its changes in turn, and after it
// returned (before Commit): Recover must put root back exactly each time.
func TestCrashApply(t *testing.T) {
	dir, archive, lower := crashSetup(t)
	for _, tc := range []struct {
		name    string
		overlay bool
		batch   int
	}{{"overlay", true, 0}, {"plain, batches of 1", false, 1}, {"plain, batches of 3", false, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			var root string
			if tc.overlay {
				root, _ = mountOverlay(t, lower, filepath.Join(dir, "new"))
			} else {
				root = filepath.Join(t.TempDir(), "plain")
				copyTree(t, lower, root)
			}
			prepareRoot(t, root)
			before := snapshot(t, root, false)
			backup := t.TempDir()
			k := 1
			for ; ; k++ {
				finished := helper(t, "apply", k, tc.batch, root, archive, backup)
				got, err := Recover(backup)
				if err != nil {
					t.Fatalf("k=%d: Recover: %v", k, err)
				}
				if len(got) != 1 || got[0] != root {
					t.Fatalf("k=%d: Recover returned %q, want [%s]", k, got, root)
				}
				sameTree(t, fmt.Sprintf("after crash at change %d and Recover", k), before, snapshot(t, root, false))
				emptyDir(t, backup)
				if finished {
					break
				}
			}
			t.Logf("crashed at each of %d changes, then after Apply returned", k-1)
		})
	}
}

// TestCrashAfterCommit: once committed, Recover leaves root applied.
func TestCrashAfterCommit(t *testing.T) {
	dir, archive, lower := crashSetup(t)
	root := filepath.Join(dir, "plain")
	copyTree(t, lower, root)
	prepareRoot(t, root)
	backup := t.TempDir()
	if !helper(t, "commit", 0, 0, root, archive, backup) {
		t.Fatal("helper did not finish")
	}
	applied := snapshot(t, root, true)
	got, err := Recover(backup)
	if err != nil || len(got) != 0 {
		t.Fatalf("Recover = %q, %v; want nothing", got, err)
	}
	sameTree(t, "after Recover", applied, snapshot(t, root, true))
	emptyDir(t, backup)

	// Killed between the durable commit mark and the removal of the journal.
	f, err := os.Open(archive)
	must(t, err)
	defer f.Close()
	u, _, err := Apply(root, f, backup)
	must(t, err)
	must(t, u.j.end(markCommitted))
	u.j.close() // as if the process were gone
	applied = snapshot(t, root, true)
	if got, err := Recover(backup); err != nil || len(got) != 0 {
		t.Fatalf("Recover = %q, %v; want nothing", got, err)
	}
	sameTree(t, "after Recover of a committed journal", applied, snapshot(t, root, true))
	emptyDir(t, backup)
}

// TestRecoverLiveApply: an Undo still open in this process is left alone.
func TestRecoverLiveApply(t *testing.T) {
	dir, archive, lower := crashSetup(t)
	root := filepath.Join(dir, "plain")
	copyTree(t, lower, root)
	before := snapshot(t, root, false)
	backup := t.TempDir()
	f, err := os.Open(archive)
	must(t, err)
	defer f.Close()
	u, _, err := Apply(root, f, backup)
	must(t, err)
	applied := snapshot(t, root, true)
	if got, err := Recover(backup); err != nil || len(got) != 0 {
		t.Fatalf("Recover = %q, %v; want nothing", got, err)
	}
	sameTree(t, "after Recover", applied, snapshot(t, root, true))
	must(t, u.Rollback())
	sameTree(t, "after Rollback", before, snapshot(t, root, false))
	emptyDir(t, backup)
}

// TestCrashRecover kills Recover itself after each of its changes: the next
// Recover finishes the job. The journal also gets a torn last line.
func TestCrashRecover(t *testing.T) {
	dir, archive, lower := crashSetup(t)
	root := filepath.Join(dir, "plain")
	copyTree(t, lower, root)
	prepareRoot(t, root)
	before := snapshot(t, root, false)
	backup := t.TempDir()
	m := 1
	for ; ; m++ {
		if helper(t, "apply", 0, 0, root, archive, backup) != true {
			t.Fatal("apply helper did not finish")
		}
		if m == 1 {
			// A torn append (killed in the middle of a write).
			js, _ := filepath.Glob(filepath.Join(backup, undoPrefix+"*", journalName))
			if len(js) != 1 {
				t.Fatalf("journals: %v", js)
			}
			jf, err := os.OpenFile(js[0], os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = jf.WriteString(`{"op":"saved","path":"x","node":{"mo`)
			must(t, err)
			must(t, jf.Close())
		}
		finished := helper(t, "recover", m, 0, root, archive, backup)
		got, err := Recover(backup)
		if err != nil {
			t.Fatalf("m=%d: Recover: %v", m, err)
		}
		if finished && len(got) != 0 || !finished && (len(got) != 1 || got[0] != root) {
			t.Fatalf("m=%d (finished %v): Recover returned %q", m, finished, got)
		}
		sameTree(t, fmt.Sprintf("after Recover killed at change %d and Recover", m), before, snapshot(t, root, false))
		emptyDir(t, backup)
		if finished {
			break
		}
	}
	t.Logf("crashed Recover at each of %d changes", m-1)
}

// TestRecoverSymlinkRoot: if the recorded root has become a symlink, Recover
// refuses, changing nothing, and succeeds once it is a directory again.
func TestRecoverSymlinkRoot(t *testing.T) {
	dir, archive, lower := crashSetup(t)
	root := filepath.Join(dir, "plain")
	copyTree(t, lower, root)
	before := snapshot(t, root, false)
	backup := t.TempDir()
	if helper(t, "apply", 12, 0, root, archive, backup) {
		t.Fatal("helper did not crash")
	}
	moved := filepath.Join(dir, "elsewhere")
	must(t, os.Rename(root, moved))
	must(t, os.Symlink(moved, root))
	half := snapshot(t, moved, true)
	if got, err := Recover(backup); err == nil || len(got) != 0 {
		t.Fatalf("Recover through a symlinked root = %q, %v; want an error", got, err)
	} else {
		t.Log(err)
	}
	sameTree(t, "target of the symlink", half, snapshot(t, moved, true))
	if ents, _ := os.ReadDir(backup); len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), undoPrefix) {
		t.Fatalf("journal not kept: %v", ents)
	}
	must(t, os.Remove(root))
	must(t, os.Rename(moved, root))
	if got, err := Recover(backup); err != nil || len(got) != 1 {
		t.Fatalf("Recover = %q, %v", got, err)
	}
	sameTree(t, "after Recover", before, snapshot(t, root, false))
	emptyDir(t, backup)
}
