package rootfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPrecheckMatchesSave: on an overlay upper with every kind of entry
// (files, hard links, symlinks, fifos, whiteouts, opaque directories,
// xattrs, sparse files, a skipped socket), Precheck predicts Save's stats,
// entries and archive size exactly.
func TestPrecheckMatchesSave(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower := filepath.Join(dir, "lower")
	makeLower(t, lower)
	merged, upper := mountOverlay(t, lower, filepath.Join(dir, "c"))
	mutate(t, merged)
	must(t, unix.Mknod(filepath.Join(merged, "sock"), unix.S_IFSOCK|0o755, 0))
	sparse := sparseFile{"sparse", 1 << 30, []region{{4096, 8192}, {600 << 20, 100}}, true}
	sparse.make(t, merged)
	// Long and odd names and link targets, big ids, times before 1970.
	long := filepath.Join(merged, string(bytes.Repeat([]byte("x"), 150)))
	write(t, long, "long name", 0o644)
	must(t, os.Symlink(string(bytes.Repeat([]byte("t/"), 80)), filepath.Join(merged, "longlink")))
	must(t, os.Lchown(long, 3000000, 4000000))
	must(t, os.Chtimes(long, time.Unix(-1e9, 5e8), time.Unix(-5, 0)))

	plan, err := Precheck(upper)
	must(t, err)
	var archive bytes.Buffer
	st, err := Save(upper, &archive)
	must(t, err)
	t.Logf("plan %+v; archive %d bytes", plan, archive.Len())
	if plan.Stats != st {
		t.Errorf("Precheck stats %+v, Save stats %+v", plan.Stats, st)
	}
	if plan.ArchiveBytes != int64(archive.Len()) {
		t.Errorf("Precheck says %d bytes, Save wrote %d", plan.ArchiveBytes, archive.Len())
	}
	if st.Sockets != 1 || st.SparseFiles != 1 || st.Fifos != 1 || st.HardLinks != 1 {
		t.Errorf("stats %+v: the tree is not what the test means", st)
	}
	// The trailer counts the entries.
	ar := newArReader(bytes.NewReader(archive.Bytes()))
	for {
		h, err := ar.next()
		must(t, err)
		if h.typ == typeXGlobal {
			if h.recs[paxEnd] != strconv.Itoa(plan.Entries) {
				t.Errorf("archive has %s entries, Precheck says %d", h.recs[paxEnd], plan.Entries)
			}
			break
		}
	}
}

// TestPrecheckReadsNoContent: Precheck leaves the access times of files
// alone (it reads no file), where reading them would change them.
func TestPrecheckReadsNoContent(t *testing.T) {
	upper := t.TempDir()
	old := time.Unix(1e9, 0)
	probe := filepath.Join(upper, "probe")
	write(t, probe, "probe", 0o644)
	must(t, os.Chtimes(probe, old, time.Now()))
	if b, err := os.ReadFile(probe); err != nil || string(b) != "probe" {
		t.Fatal(err)
	}
	if atime(t, probe).Equal(old) {
		t.Skip("this file system does not update access times on read")
	}
	must(t, os.Chtimes(probe, old, time.Now()))
	sparse := sparseFile{"sparse", 64 << 20, []region{{1 << 20, 4096}}, true}
	sparse.make(t, upper)
	must(t, os.Chtimes(filepath.Join(upper, "sparse"), old, time.Now()))
	_, err := Precheck(upper)
	must(t, err)
	for _, p := range []string{probe, filepath.Join(upper, "sparse")} {
		if a := atime(t, p); !a.Equal(old) {
			t.Errorf("%s: access time %v after Precheck, was %v", p, a, old)
		}
	}
}

func atime(t testing.TB, p string) time.Time {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return time.Unix(st.Atim.Sec, st.Atim.Nsec)
}

// BenchmarkPrecheck runs Precheck over 20,000 files of 1-8 KiB in 200
// directories (on tmpfs), and Save for comparison.
func BenchmarkPrecheck(b *testing.B) {
	requireRoot(b)
	dir := b.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=768m"); err != nil {
		b.Fatalf("mount tmpfs: %v", err)
	}
	b.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	src := filepath.Join(dir, "src")
	benchTree(b, src, 200, 20000, 1<<10, 8<<10)
	b.Run("precheck", func(b *testing.B) {
		var p Plan
		for i := 0; i < b.N; i++ {
			var err error
			p, err = Precheck(src)
			must(b, err)
		}
		b.ReportMetric(float64(p.ArchiveBytes), "archive-bytes")
	})
	b.Run("save", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			f, err := os.Create(filepath.Join(dir, "a.tar"))
			must(b, err)
			_, err = Save(src, f)
			must(b, err)
			must(b, f.Close())
		}
	})
}
