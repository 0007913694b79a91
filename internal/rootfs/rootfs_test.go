package rootfs

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// makeLower builds the image layer both container incarnations share.
func makeLower(t testing.TB, lower string) {
	write(t, filepath.Join(lower, "a.txt"), "hello", 0o644)
	write(t, filepath.Join(lower, "mod.txt"), "original", 0o644)
	write(t, filepath.Join(lower, "del.txt"), "to be deleted", 0o600)
	write(t, filepath.Join(lower, "gone/x"), "x", 0o644)
	write(t, filepath.Join(lower, "gone/y/z"), "z", 0o644)
	write(t, filepath.Join(lower, "repl/old1"), "old1", 0o644)
	write(t, filepath.Join(lower, "repl/sub/old2"), "old2", 0o644)
	write(t, filepath.Join(lower, "keep/k1"), "k1", 0o644)
	write(t, filepath.Join(lower, "d/f"), "f", 0o644)
	write(t, filepath.Join(lower, "f2d"), "file becoming a dir", 0o644)
	write(t, filepath.Join(lower, "d2f/inner"), "dir becoming a file", 0o644)
	must(t, os.Symlink("a.txt", filepath.Join(lower, "lnk")))
	must(t, unix.Lsetxattr(filepath.Join(lower, "keep/k1"), "user.lower", []byte("L"), 0))
}

// mutate makes in root the changes an old container would have made.
func mutate(t testing.TB, root string) {
	p := func(s string) string { return filepath.Join(root, s) }
	write(t, p("new.txt"), "new file", 0o640)
	must(t, os.Lchown(p("new.txt"), 1234, 5678))
	must(t, unix.Lsetxattr(p("new.txt"), "user.x", []byte("1\x00binary"), 0))
	must(t, os.Chtimes(p("new.txt"), time.Unix(1e9, 123456789), time.Unix(1.2e9, 987654321)))
	write(t, p("bin"), "#!/bin/sh\n", 0o755)
	must(t, os.Chmod(p("bin"), 0o4751|os.ModeSetuid))
	must(t, unix.Chmod(p("bin"), 0o4751))
	// File capability CAP_NET_BIND_SERVICE (v2 format): binary security.* xattr.
	capData := make([]byte, 20)
	binary.LittleEndian.PutUint32(capData[0:], 0x02000001)
	binary.LittleEndian.PutUint32(capData[4:], 1<<10)
	must(t, unix.Lsetxattr(p("bin"), "security.capability", capData, 0))
	must(t, os.Mkdir(p("tmp"), 0o755))
	must(t, unix.Chmod(p("tmp"), 0o1777))
	must(t, os.Symlink("/etc/passwd", p("newlink")))
	write(t, p("newdir/sub/h1"), "hard", 0o600)
	must(t, os.Link(p("newdir/sub/h1"), p("newdir/sub/h2")))
	must(t, os.Lchown(p("newdir/sub/h1"), 42, 43))
	write(t, p("mod.txt"), "modified!", 0o644)
	must(t, os.Remove(p("del.txt")))
	must(t, os.RemoveAll(p("gone")))
	must(t, os.RemoveAll(p("repl")))
	write(t, p("repl/new"), "new in opaque dir", 0o644)
	must(t, os.Chmod(p("d"), 0o700))
	write(t, p(".wh.fake"), "a real file with a whiteout-looking name", 0o644)
	must(t, os.Remove(p("f2d")))
	write(t, p("f2d/inner"), "now a dir", 0o644)
	must(t, os.RemoveAll(p("d2f")))
	write(t, p("d2f"), "now a file", 0o644)
	must(t, unix.Lsetxattr(p("keep"), "user.y", []byte("dir xattr"), 0))
	write(t, p("empty"), "", 0o444)
	must(t, unix.Mkfifo(p("newdir/pipe"), 0o600))
	must(t, unix.Chmod(p("newdir/pipe"), 0o620))
	must(t, os.Lchown(p("newdir/pipe"), 99, 98))
	write(t, p("ünï cödé\nname"), "odd name", 0o644)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	write(t, p("big"), string(big), 0o644)
}

func TestRoundTripOverlay(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	makeLower(t, lower)
	old, oldUpper := mountOverlay(t, lower, filepath.Join(dir, "old"))
	mutate(t, old)
	want := snapshot(t, old, true)

	var archive bytes.Buffer
	saved, err := Save(oldUpper, &archive)
	must(t, err)
	t.Logf("saved %+v, %d bytes", saved, archive.Len())
	// Whiteouts: del.txt, gone. Opaque: repl, f2d (a dir made over a whiteout).
	if saved.Whiteouts != 2 || saved.OpaqueDirs != 2 || saved.Symlinks != 1 || saved.Fifos != 1 || saved.HardLinks != 1 {
		t.Errorf("unexpected stats %+v", saved)
	}
	must(t, unix.Unmount(old, 0)) // the old incarnation is gone

	newRoot, _ := mountOverlay(t, lower, filepath.Join(dir, "new"))
	backup := t.TempDir()
	u, applied, err := Apply(newRoot, bytes.NewReader(archive.Bytes()), backup)
	must(t, err)
	if applied != saved {
		t.Errorf("Apply stats %+v, Save stats %+v", applied, saved)
	}
	sameTree(t, "new overlay after Apply", want, snapshot(t, newRoot, true))
	must(t, u.Commit())
	if ents, _ := os.ReadDir(backup); len(ents) != 0 {
		t.Errorf("backup dir not empty after Commit: %v", ents)
	}

	// Without overlay: a plain copy of the image, the archive read from a
	// file (pread, sendfile for the large file).
	plain := filepath.Join(dir, "plain")
	copyTree(t, lower, plain)
	ap := filepath.Join(dir, "archive.tar")
	must(t, os.WriteFile(ap, archive.Bytes(), 0o600))
	af, err := os.Open(ap)
	must(t, err)
	defer af.Close()
	u, _, err = Apply(plain, af, backup)
	must(t, err)
	sameTree(t, "plain dir after Apply", want, snapshot(t, plain, true))
	must(t, u.Commit())
}

func TestUndo(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	makeLower(t, lower)
	old, oldUpper := mountOverlay(t, lower, filepath.Join(dir, "old"))
	mutate(t, old)
	var archive bytes.Buffer
	_, err := Save(oldUpper, &archive)
	must(t, err)

	for _, overlay := range []bool{true, false} {
		var root string
		if overlay {
			root, _ = mountOverlay(t, lower, filepath.Join(dir, "new"))
		} else {
			root = filepath.Join(dir, "plain")
			copyTree(t, lower, root)
		}
		before := snapshot(t, root, false)
		backup := t.TempDir()
		u, _, err := Apply(root, bytes.NewReader(archive.Bytes()), backup)
		must(t, err)
		if diffTrees(before, snapshot(t, root, false)) == "" {
			t.Fatal("Apply changed nothing")
		}
		must(t, u.Rollback())
		sameTree(t, "after Rollback", before, snapshot(t, root, false))
		must(t, u.Rollback()) // idempotent
		sameTree(t, "after second Rollback", before, snapshot(t, root, false))
		if ents, _ := os.ReadDir(backup); len(ents) != 0 {
			t.Errorf("backup dir not empty after Rollback: %v", ents)
		}
		must(t, u.Commit())
		if u.Rollback() == nil {
			t.Error("Rollback after Commit succeeded")
		}
	}
}

// TestTruncated cuts an archive at every 512-byte block and checks that
// Apply refuses it and leaves root exactly as it was, on an overlay whose
// lower has the files the archive replaces, deletes and hides (opaque dir).
func TestTruncated(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	makeLower(t, lower)
	old, oldUpper := mountOverlay(t, lower, filepath.Join(dir, "old"))
	mutate(t, old)
	var archive bytes.Buffer
	_, err := Save(oldUpper, &archive)
	must(t, err)
	full := archive.Bytes()

	root, _ := mountOverlay(t, lower, filepath.Join(dir, "new"))
	// Give root state of its own so that the rollback has work: a lower dir
	// copied up with new metadata, a new file where the archive puts a dir.
	must(t, os.Chmod(filepath.Join(root, "keep"), 0o711))
	write(t, filepath.Join(root, "newdir"), "in the way", 0o600)
	before := snapshot(t, root, false)
	beforeDirs := snapshot(t, root, true)
	backup := t.TempDir()
	cuts := 0
	// The archive ends with the trailer's header block, its PAX record block
	// and two zero blocks. Once the record itself is in, nothing is missing
	// (tar does not check the padding or zero blocks after it): cut anywhere
	// before the record block, at block boundaries and inside blocks.
	for cut := 100; cut < len(full)-1536; cut += 256 {
		if len(full)-cut > 8192 && cut%(64*256) != 100 {
			continue // the big file's body: a few cuts are enough
		}
		cuts++
		_, _, err := Apply(root, bytes.NewReader(full[:cut]), backup)
		if !errors.Is(err, ErrDamaged) {
			t.Fatalf("cut at %d of %d: err = %v, want ErrDamaged", cut, len(full), err)
		}
		sameTree(t, "after failed Apply", before, snapshot(t, root, false))
		if ents, _ := os.ReadDir(backup); len(ents) != 0 {
			t.Fatalf("backup dir not empty after rollback: %v", ents)
		}
	}
	t.Logf("%d cuts of a %d-byte archive", cuts, len(full))
	// An archive file is read otherwise (pread, large files with
	// sendfile): cut it in and around the big file's body too.
	for _, cut := range []int{len(full) / 2, len(full) - 8192, len(full) - 2100, len(full) - 1600} {
		p := filepath.Join(t.TempDir(), "cut.tar")
		must(t, os.WriteFile(p, full[:cut], 0o600))
		f, err := os.Open(p)
		must(t, err)
		_, _, err = Apply(root, f, backup)
		f.Close()
		if !errors.Is(err, ErrDamaged) {
			t.Fatalf("file cut at %d of %d: err = %v, want ErrDamaged", cut, len(full), err)
		}
		sameTree(t, "after failed Apply from a file", before, snapshot(t, root, false))
	}
	// Directories present before keep their times through the rollbacks,
	// except root itself (not compared by snapshot).
	if d := diffTrees(beforeDirs, snapshot(t, root, true)); d != "" {
		t.Logf("directory times changed (allowed):\n%s", d)
	}
}

// TestSaveSpecialFiles: device nodes (other than whiteouts) and overlay
// features whose data is elsewhere are refused, naming the path, by Save and
// Precheck alike; fifos are saved; sockets are skipped and counted.
func TestSaveSpecialFiles(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name   string
		make   func(string) error
		refuse bool
		want   Stats
	}{
		{"char device", func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) }, true, Stats{}},
		{"block device", func(p string) error { return unix.Mknod(p, unix.S_IFBLK|0o644, int(unix.Mkdev(8, 0))) }, true, Stats{}},
		{"redirect", func(p string) error {
			must(t, os.Mkdir(p, 0o755))
			return unix.Lsetxattr(p, "trusted.overlay.redirect", []byte("/elsewhere"), 0)
		}, true, Stats{}},
		{"metacopy", func(p string) error {
			write(t, p, "", 0o644)
			return unix.Lsetxattr(p, "trusted.overlay.metacopy", nil, 0)
		}, true, Stats{}},
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o640) }, false, Stats{Files: 1, Dirs: 1, Bytes: 2, DataBytes: 2, Fifos: 1}},
		{"socket", func(p string) error { return unix.Mknod(p, unix.S_IFSOCK|0o644, 0) }, false, Stats{Files: 1, Dirs: 1, Bytes: 2, DataBytes: 2, Sockets: 1}},
		{"bound socket", func(p string) error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if err := unix.Bind(fd, &unix.SockaddrUnix{Name: p}); err != nil {
				return err
			}
			return unix.Listen(fd, 1)
		}, false, Stats{Files: 1, Dirs: 1, Bytes: 2, DataBytes: 2, Sockets: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upper := t.TempDir()
			write(t, filepath.Join(upper, "ok"), "ok", 0o644)
			bad := filepath.Join(upper, "sub", "bad-"+strings.ReplaceAll(tc.name, " ", "-"))
			must(t, os.MkdirAll(filepath.Dir(bad), 0o755))
			must(t, tc.make(bad))
			var b bytes.Buffer
			st, err := Save(upper, &b)
			plan, perr := Precheck(upper)
			if !tc.refuse {
				must(t, err)
				must(t, perr)
				if st != tc.want || plan.Stats != tc.want {
					t.Fatalf("Save stats %+v, Precheck stats %+v, want %+v", st, plan.Stats, tc.want)
				}
				return
			}
			for what, err := range map[string]error{"Save": err, "Precheck": perr} {
				if !errors.Is(err, ErrUnsaveable) || !strings.Contains(err.Error(), bad) {
					t.Fatalf("%s: err = %v, want ErrUnsaveable naming %s", what, err, bad)
				}
			}
			t.Log(err)
		})
	}
}

// TestSpecialFilesInArchive: a fifo becomes a TypeFifo entry with its mode,
// owner and times, and Apply makes it again; a socket leaves no entry.
func TestSpecialFilesInArchive(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	fifo := filepath.Join(upper, "d", "fifo")
	must(t, os.Mkdir(filepath.Dir(fifo), 0o755))
	must(t, unix.Mkfifo(fifo, 0o600))
	must(t, unix.Chmod(fifo, 0o2741))
	must(t, os.Lchown(fifo, 1234, 5678))
	must(t, os.Chtimes(fifo, time.Unix(1e9, 5), time.Unix(1.5e9, 123456789)))
	must(t, unix.Mknod(filepath.Join(upper, "d", "sock"), unix.S_IFSOCK|0o755, 0))
	var archive bytes.Buffer
	st, err := Save(upper, &archive)
	must(t, err)
	if st.Fifos != 1 || st.Sockets != 1 || st.Dirs != 1 || st.Files != 0 {
		t.Fatalf("stats %+v", st)
	}
	tr := tar.NewReader(bytes.NewReader(archive.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, fmt.Sprintf("%c %s", h.Typeflag, h.Name))
		if h.Name == "d/fifo" && (h.Mode != 0o2741 || h.Uid != 1234 || h.Gid != 5678 || !h.ModTime.Equal(time.Unix(1.5e9, 123456789))) {
			t.Errorf("fifo header %+v", h)
		}
	}
	if want := "5 d/ 6 d/fifo g GlobalHead.0.0"; strings.Join(names, " ") != want {
		t.Fatalf("entries %q, want %q", strings.Join(names, " "), want)
	}
	root := t.TempDir()
	u, ast, err := Apply(root, bytes.NewReader(archive.Bytes()), t.TempDir())
	must(t, err)
	if ast.Fifos != 1 {
		t.Errorf("Apply stats %+v", ast)
	}
	got := snapshot(t, root, false)
	if want := snapshot(t, upper, false); got["d/fifo"] != want["d/fifo"] {
		t.Fatalf("fifo: got %s, want %s", got["d/fifo"], want["d/fifo"])
	}
	must(t, u.Rollback())
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("root after Rollback: %v", ents)
	}
}

// TestSaveOverlayMarkers checks the whiteout and opaque conventions on a
// hand-made upper directory: char 0/0 and xattr whiteouts, opaque "y" vs "x".
func TestSaveOverlayMarkers(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	must(t, unix.Mknod(filepath.Join(upper, "wh-dev"), unix.S_IFCHR, 0))
	write(t, filepath.Join(upper, "wh-xattr"), "", 0o644)
	must(t, unix.Lsetxattr(filepath.Join(upper, "wh-xattr"), "trusted.overlay.whiteout", nil, 0))
	must(t, os.Mkdir(filepath.Join(upper, "opaque"), 0o755))
	must(t, unix.Lsetxattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, os.Mkdir(filepath.Join(upper, "notopaque"), 0o755))
	must(t, unix.Lsetxattr(filepath.Join(upper, "notopaque"), "trusted.overlay.opaque", []byte("x"), 0))
	must(t, unix.Lsetxattr(filepath.Join(upper, "notopaque"), "trusted.overlay.origin", []byte("junk"), 0))
	var archive bytes.Buffer
	st, err := Save(upper, &archive)
	must(t, err)
	if st != (Stats{Dirs: 2, Whiteouts: 2, OpaqueDirs: 1}) {
		t.Fatalf("stats %+v", st)
	}
	if bytes.Contains(archive.Bytes(), []byte("trusted.overlay")) {
		t.Fatal("overlay internals leaked into the archive")
	}
	root := t.TempDir()
	write(t, filepath.Join(root, "wh-dev"), "deleted", 0o644)
	write(t, filepath.Join(root, "wh-xattr/sub"), "deleted", 0o644)
	write(t, filepath.Join(root, "opaque/gone"), "hidden", 0o644)
	write(t, filepath.Join(root, "notopaque/kept"), "kept", 0o644)
	u, _, err := Apply(root, &archive, t.TempDir())
	must(t, err)
	defer u.Commit()
	got := snapshot(t, root, false)
	for _, p := range []string{"wh-dev", "wh-xattr", "opaque/gone"} {
		if _, ok := got[p]; ok {
			t.Errorf("%s not deleted", p)
		}
	}
	if _, ok := got["notopaque/kept"]; !ok {
		t.Error("non-opaque dir emptied")
	}
}

// TestApplyOwners: files get the owner and group of the archive whoever
// makes them: in a set-group-ID directory (which would give its group to a
// new file) too, and in a directory the image already has.
func TestApplyOwners(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	must(t, os.Mkdir(filepath.Join(root, "kept"), 0o755))
	must(t, os.Chown(filepath.Join(root, "kept"), 0, 66))
	must(t, unix.Chmod(filepath.Join(root, "kept"), 0o2775))
	file := func(name string, uid, gid int) entry {
		e := reg(name, "x")
		e.hdr.Uid, e.hdr.Gid = uid, gid
		return e
	}
	sgid := mkdir("sgid/")
	sgid.hdr.Mode, sgid.hdr.Gid = 0o2775, 55
	kept := mkdir("kept/")
	kept.hdr.Mode, kept.hdr.Gid = 0o2775, 66
	ents := []entry{sgid, file("sgid/root", 0, 0), file("sgid/other", 7, 8), file("sgid/group", 0, 55),
		kept, file("kept/root", 0, 0), file("plain", 0, 0), file("mine", 1000, 1000)}
	u, _, err := Apply(root, bytes.NewReader(archive(t, len(ents), ents...)), t.TempDir())
	must(t, err)
	defer u.Commit()
	for name, want := range map[string][2]uint32{"sgid/root": {0, 0}, "sgid/other": {7, 8}, "sgid/group": {0, 55},
		"kept/root": {0, 0}, "plain": {0, 0}, "mine": {1000, 1000}} {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, name), &st))
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, want[0], want[1])
		}
	}
}

// TestApplyModes: files get the archive's mode whatever the umask and a
// default ACL of their directory would make of it (Apply creates most files
// with their mode, when neither changes it).
func TestApplyModes(t *testing.T) {
	requireRoot(t)
	for _, umask := range []int{0o022, 0o027, 0} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			old := unix.Umask(umask)
			defer unix.Umask(old)
			root := t.TempDir()
			// A default ACL user::rwx group::--- other::--- (Linux's
			// xattr form: version 2, then tag, perm, id entries).
			acl := []byte{2, 0, 0, 0}
			for _, e := range [][2]uint16{{0x01, 7}, {0x04, 0}, {0x20, 0}} {
				acl = binary.LittleEndian.AppendUint16(acl, e[0])
				acl = binary.LittleEndian.AppendUint16(acl, e[1])
				acl = binary.LittleEndian.AppendUint32(acl, 0xffffffff)
			}
			must(t, os.Mkdir(filepath.Join(root, "acl"), 0o755))
			if err := unix.Setxattr(filepath.Join(root, "acl"), "system.posix_acl_default", acl, 0); err != nil {
				t.Skipf("no ACLs here: %v", err)
			}
			modes := []int64{0o644, 0o640, 0o755, 0o666, 0o777, 0o600, 0o4755, 0o1644, 0o444}
			ents := []entry{mkdir("acl/"), mkdir("plain/")}
			for _, d := range []string{"acl", "plain"} {
				for _, m := range modes {
					e := reg(fmt.Sprintf("%s/%04o", d, m), "x")
					e.hdr.Mode = m
					ents = append(ents, e)
				}
			}
			u, _, err := Apply(root, bytes.NewReader(archive(t, len(ents), ents...)), t.TempDir())
			must(t, err)
			defer u.Commit()
			for _, d := range []string{"acl", "plain"} {
				for _, m := range modes {
					var st unix.Stat_t
					p := fmt.Sprintf("%s/%04o", d, m)
					must(t, unix.Lstat(filepath.Join(root, p), &st))
					if int64(st.Mode&0o7777) != m {
						t.Errorf("%s: mode %04o", p, st.Mode&0o7777)
					}
				}
			}
		})
	}
}

// TestSaveToFile: saving to a file (large files then go with sendfile)
// writes the same archive as saving to anything else.
func TestSaveToFile(t *testing.T) {
	upper := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16+7) // 3 MiB and a bit
	write(t, filepath.Join(upper, "a"), "small", 0o644)
	write(t, filepath.Join(upper, "big"), string(big), 0o644)
	sparse := sparseFile{"sparse", 64 << 20, []region{{4096, 3 << 20}, {40 << 20, 2<<20 + 100}}, true}
	sparse.make(t, upper)
	write(t, filepath.Join(upper, "z"), "after", 0o644)
	// Access times that reading leaves alone (relatime), as the two
	// archives must be the same.
	for _, n := range []string{"a", "big", "sparse", "z"} {
		must(t, os.Chtimes(filepath.Join(upper, n), time.Now().Add(time.Hour), time.Now().Add(-time.Hour)))
	}
	var want bytes.Buffer
	wst, err := Save(upper, &want)
	must(t, err)
	p := filepath.Join(t.TempDir(), "a.tar")
	f, err := os.Create(p)
	must(t, err)
	_, err = f.Write([]byte("prefix")) // Save writes from the file's offset
	must(t, err)
	st, err := Save(upper, f)
	must(t, err)
	must(t, f.Close())
	got, err := os.ReadFile(p)
	must(t, err)
	if st != wst || !bytes.Equal(got, append([]byte("prefix"), want.Bytes()...)) {
		t.Fatalf("archive written to a file differs (%d bytes, want %d; stats %+v, %+v)", len(got)-6, want.Len(), st, wst)
	}
}
