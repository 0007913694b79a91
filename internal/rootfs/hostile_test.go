package rootfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}

func mkdir(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func withPAX(e entry, k, v string) entry {
	e.hdr.PAXRecords = map[string]string{k: v}
	return e
}

// archive writes entries as Save would, with the TARDIS.end trailer unless
// trailer < 0 (then none) and with trailer as the count otherwise.
func archive(t testing.TB, trailer int, ents ...entry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		e.hdr.Format = tar.FormatPAX
		must(t, tw.WriteHeader(&e.hdr))
		_, err := tw.Write([]byte(e.body))
		must(t, err)
	}
	if trailer >= 0 {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Format: tar.FormatPAX,
			PAXRecords: map[string]string{paxEnd: strconv.Itoa(trailer)}}))
	}
	must(t, tw.Close())
	return b.Bytes()
}

func TestApplyHostile(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	write(t, filepath.Join(outside, "keep"), "outside", 0o644)
	write(t, filepath.Join(root, "existing"), "existing", 0o644)
	write(t, filepath.Join(root, "etc/passwd"), "root:x:0:0::/root:/bin/sh\n", 0o644)
	must(t, os.Symlink(outside, filepath.Join(root, "evil")))
	before, outsideBefore := snapshot(t, root, false), snapshot(t, outside, false)
	hostPasswd, err := os.ReadFile("/etc/passwd")
	must(t, err)

	ok := reg("ok.txt", "applied first, then rolled back")
	link := func(name, target string) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
	}
	cases := []struct {
		name string
		ents []entry
		n    int // trailer count, -1 for none
	}{
		{"dotdot", []entry{ok, reg("../x", "x")}, 2},
		{"dotdot inside", []entry{ok, mkdir("a/"), reg("a/../../x", "x")}, 3},
		{"absolute", []entry{ok, reg(filepath.Join(outside, "abs"), "x")}, 2},
		{"absolute etc", []entry{ok, reg("/etc/tardis-hostile-test", "x")}, 2},
		{"char device", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}}}, 2},
		{"block device", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}}}, 2},
		// No tar type is a socket: any other type is refused.
		{"socket or unknown type", []entry{ok, {hdr: tar.Header{Typeflag: 's', Name: "sock"}}}, 2},
		{"fifo then child", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "p", Mode: 0o644}}, reg("p/x", "x")}, 3},
		{"fifo under planted symlink", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "evil/p", Mode: 0o644}}}, 2},
		{"symlink then child", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "a", Linkname: "/etc"}}, reg("a/passwd", "pwned")}, 3},
		{"symlink to outside then child", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "a", Linkname: outside}}, reg("a/keep", "pwned")}, 3},
		{"child of planted symlink", []entry{ok, reg("evil/x", "pwned")}, 2},
		{"child of planted symlink, deeper", []entry{ok, mkdir("evil/sub/"), reg("evil/sub/x", "pwned")}, 3},
		{"hard link outside", []entry{ok, link("h", "../../etc/passwd")}, 2},
		{"hard link absolute", []entry{ok, link("h", "/etc/passwd")}, 2},
		{"hard link to non-archive file", []entry{ok, link("h", "existing")}, 2},
		{"hard link to symlink", []entry{ok, {hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "s", Linkname: filepath.Join(outside, "keep")}}, link("h", "s")}, 3},
		{"trusted xattr", []entry{ok, withPAX(reg("x", ""), "SCHILY.xattr.trusted.overlay.opaque", "y")}, 2},
		{"unknown record", []entry{ok, withPAX(reg("x", ""), "TARDIS.something", "1")}, 2},
		{"whiteout with content", []entry{ok, withPAX(reg("existing", "data"), paxWhiteout, "1")}, 2},
		{"no trailer", []entry{ok}, -1},
		{"wrong trailer count", []entry{ok}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Apply(root, bytes.NewReader(archive(t, tc.n, tc.ents...)), t.TempDir())
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("err = %v, want ErrDamaged", err)
			}
			t.Log(err)
			sameTree(t, "root", before, snapshot(t, root, false))
			sameTree(t, "outside", outsideBefore, snapshot(t, outside, false))
			if b, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(b, hostPasswd) {
				t.Fatal("/etc/passwd changed!")
			}
			if _, err := os.Lstat("/etc/tardis-hostile-test"); err == nil {
				t.Fatal("/etc/tardis-hostile-test written")
			}
		})
	}

	t.Run("entry after trailer", func(t *testing.T) {
		b := archive(t, 1, ok)
		b = append(b[:len(b)-1024], archive(t, -1, reg("late", "x"))...)
		if _, _, err := Apply(root, bytes.NewReader(b), t.TempDir()); !errors.Is(err, ErrDamaged) {
			t.Fatalf("err = %v, want ErrDamaged", err)
		}
		sameTree(t, "root", before, snapshot(t, root, false))
	})

	// A directory entry replaces the planted symlink: its child lands in
	// root, and the rollback brings the symlink back.
	t.Run("directory over planted symlink", func(t *testing.T) {
		u, _, err := Apply(root, bytes.NewReader(archive(t, 2, mkdir("evil/"), reg("evil/x", "inside"))), t.TempDir())
		must(t, err)
		sameTree(t, "outside", outsideBefore, snapshot(t, outside, false))
		if b, err := os.ReadFile(filepath.Join(root, "evil/x")); err != nil || string(b) != "inside" {
			t.Fatalf("root/evil/x: %q, %v", b, err)
		}
		must(t, u.Rollback())
		sameTree(t, "root", before, snapshot(t, root, false))
	})

	// A fifo entry replaces the planted symlink (never written through),
	// and the rollback brings the symlink back.
	t.Run("fifo over planted symlink", func(t *testing.T) {
		fifo := entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "evil", Mode: 0o640, Uid: 7, Gid: 8}}
		u, st, err := Apply(root, bytes.NewReader(archive(t, 1, fifo)), t.TempDir())
		must(t, err)
		sameTree(t, "outside", outsideBefore, snapshot(t, outside, false))
		var fst unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, "evil"), &fst))
		if fst.Mode != unix.S_IFIFO|0o640 || fst.Uid != 7 || fst.Gid != 8 || st.Fifos != 1 {
			t.Fatalf("evil: mode %o owner %d:%d, stats %+v", fst.Mode, fst.Uid, fst.Gid, st)
		}
		must(t, u.Rollback())
		sameTree(t, "root", before, snapshot(t, root, false))
	})

	// Relative paths are resolved against the working directory, the
	// check included.
	t.Run("relative paths", func(t *testing.T) {
		t.Chdir(base)
		must(t, os.MkdirAll("bk", 0o700))
		u, _, err := Apply("root", bytes.NewReader(archive(t, 1, ok)), "bk")
		must(t, err)
		must(t, u.Rollback())
		sameTree(t, "root", before, snapshot(t, root, false))
		if _, _, err := Apply("root", bytes.NewReader(archive(t, 1, ok)), "root/../root"); err == nil {
			t.Fatal("backup dir inside root (relative) accepted")
		}
	})

	t.Run("backup inside root", func(t *testing.T) {
		must(t, os.MkdirAll(filepath.Join(root, "bk"), 0o755))
		defer os.Remove(filepath.Join(root, "bk"))
		if _, _, err := Apply(root, bytes.NewReader(archive(t, 1, ok)), filepath.Join(root, "bk")); err == nil {
			t.Fatal("backup dir inside root accepted")
		}
	})
}

// TestRollbackAfterPlantedSymlink: between Apply and Rollback the restored
// container replaces a directory the journal refers to with a symlink to
// the host. Rollback must fail rather than write through it.
func TestRollbackAfterPlantedSymlink(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	write(t, filepath.Join(outside, "passwd"), "host", 0o644)
	write(t, filepath.Join(root, "etc/passwd"), "image", 0o644)
	outsideBefore := snapshot(t, outside, false)
	u, _, err := Apply(root, bytes.NewReader(archive(t, 2, mkdir("etc/"), reg("etc/passwd", "container"))), t.TempDir())
	must(t, err)
	must(t, os.RemoveAll(filepath.Join(root, "etc")))
	must(t, os.Symlink(outside, filepath.Join(root, "etc")))
	if err := u.Rollback(); err == nil {
		t.Fatal("Rollback through a planted symlink succeeded")
	} else {
		t.Log(err)
	}
	sameTree(t, "outside", outsideBefore, snapshot(t, outside, false))
	// Once the symlink is gone, the retried rollback completes.
	must(t, os.Remove(filepath.Join(root, "etc")))
	must(t, os.Mkdir(filepath.Join(root, "etc"), 0o755))
	must(t, u.Rollback())
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || string(b) != "image" {
		t.Fatalf("etc/passwd after rollback: %q, %v", b, err)
	}
}

// TestApplyDamagedFormat feeds Apply archives whose framing, headers or
// sparse maps are malformed: each is ErrDamaged, and root is as before.
func TestApplyDamagedFormat(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	write(t, filepath.Join(root, "existing"), "existing", 0o644)
	before := snapshot(t, root, false)
	ok := rawEntry(typeReg, "ok.txt", nil, []byte("applied first, then rolled back"))
	data := bytes.Repeat([]byte{'d'}, 1024)
	corrupt := func(b []byte, off int, c byte) []byte {
		b = bytes.Clone(b)
		b[off] = c
		return b
	}
	gnuMagic := rawEntry(typeReg, "gnu", nil, nil)
	copy(gnuMagic[offMagic:], "ustar  \x00")
	base256 := rawEntry(typeReg, "b256", nil, nil)
	base256[offUID] = 0x80
	putOctal(base256[offChksum:offChksum+7], checksum(base256))
	for _, tc := range []struct {
		name  string
		entry []byte
	}{
		{"bad checksum", corrupt(rawEntry(typeReg, "x", nil, []byte("x")), offName, 'y')},
		{"gnu header", gnuMagic},
		{"base-256 number", base256},
		{"two extended headers", append(rawEntry(typeXHeader, "h", nil, []byte(string(appendRecord(nil, "mtime", "1")))), rawEntry(typeReg, "x", [][2]string{{"mtime", "2"}}, nil)...)},
		{"extended header too big", rawEntry(typeXHeader, "h", nil, make([]byte, maxPAXHeader+1))},
		{"malformed record", rawEntry(typeXHeader, "h", nil, []byte("99 mtime=1\n"))},
		{"record without =", rawEntry(typeXHeader, "h", nil, []byte("9 mtime1\n"))},
		{"bad time", rawEntry(typeReg, "x", [][2]string{{"mtime", "1.x"}}, nil)},
		{"empty path record", rawEntry(typeReg, "x", [][2]string{{"path", ""}}, nil)},
		{"sparse out of order", sparseRaw("s", 8192, "2\n4096\n512\n0\n512\n", data)},
		{"sparse beyond size", sparseRaw("s", 1000, "1\n512\n1024\n", data)},
		{"sparse data mismatch", sparseRaw("s", 8192, "1\n0\n512\n", data)},
		{"sparse map malformed", sparseRaw("s", 8192, "1\n0x\n1024\n", data)},
		{"sparse map junk", sparseRaw("s", 8192, "1\n0\n1024\njunk", data)},
		{"sparse map cut", rawEntry(typeReg, "GNUSparseFile.0/s", [][2]string{{sparseMajor, "1"}, {sparseMinor, "0"},
			{sparseName, "s"}, {sparseRealSize, "8192"}}, []byte("3\n0\n"))},
		{"sparse too many regions", sparseRaw("s", 8192, "99999999\n", data)},
		{"sparse format 0.1", rawEntry(typeReg, "s", [][2]string{{sparseMajor, "0"}, {sparseMinor, "1"},
			{"GNU.sparse.map", "0,1024"}, {sparseRealSize, "8192"}}, data)},
		{"sparse without name", rawEntry(typeReg, "s", [][2]string{{sparseMajor, "1"}, {sparseMinor, "0"},
			{sparseRealSize, "8192"}}, append([]byte("1\n0\n1024\n"+string(make([]byte, 503))), data...))},
		{"sparse symlink", rawEntry(typeSymlink, "s", [][2]string{{sparseMajor, "1"}, {sparseMinor, "0"},
			{sparseName, "s"}, {sparseRealSize, "10"}}, nil)},
		{"block device", rawEntry(typeBlock, "sda", nil, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append(append(bytes.Clone(ok), tc.entry...), appendTrailer(nil, 2)...)
			_, _, err := Apply(root, bytes.NewReader(b), t.TempDir())
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("err = %v, want ErrDamaged", err)
			}
			t.Log(err)
			sameTree(t, "root", before, snapshot(t, root, false))
		})
	}
}
