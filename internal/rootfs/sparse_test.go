package rootfs

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// region is a range of a test file that holds data.
type region struct{ off, len int64 }

// pattern is the data a test file holds at offset off: never zero, and
// different at each offset of a 4 KiB block and from block to block.
func pattern(off int64) byte { return byte(off*7+off>>12) | 1 }

func fillPattern(b []byte, off int64) {
	for i := range b {
		b[i] = pattern(off + int64(i))
	}
}

// sparseFile is a file of size bytes that holds data only in regions.
type sparseFile struct {
	name    string
	size    int64
	regions []region
	sparse  bool // Save should store it sparse
}

func (f sparseFile) dataLen() int64 {
	var n int64
	for _, r := range f.regions {
		n += r.len
	}
	return n
}

func (f sparseFile) make(t testing.TB, dir string) {
	t.Helper()
	fd, err := os.Create(filepath.Join(dir, f.name))
	must(t, err)
	defer fd.Close()
	for _, r := range f.regions {
		b := make([]byte, r.len)
		fillPattern(b, r.off)
		_, err := fd.WriteAt(b, r.off)
		must(t, err)
	}
	must(t, fd.Truncate(f.size))
}

// check compares the file in dir with f by reading its data regions and
// the bytes around them, and checks that it has no more blocks than its
// data needs (plus maxExtra bytes).
func (f sparseFile) check(t testing.TB, dir string, maxExtra int64) {
	t.Helper()
	p := filepath.Join(dir, f.name)
	fd, err := os.Open(p)
	must(t, err)
	defer fd.Close()
	var st unix.Stat_t
	must(t, unix.Fstat(int(fd.Fd()), &st))
	if st.Size != f.size {
		t.Fatalf("%s: size %d, want %d", f.name, st.Size, f.size)
	}
	if alloc := st.Blocks * 512; alloc > f.dataLen()+maxExtra {
		t.Errorf("%s: %d bytes allocated for %d bytes of data", f.name, alloc, f.dataLen())
	}
	inData := func(off int64) bool {
		for _, r := range f.regions {
			if off >= r.off && off < r.off+r.len {
				return true
			}
		}
		return false
	}
	// Each region, and a stretch of 64 KiB on both sides of it (in a hole
	// unless another region is there), and the middle of each gap.
	probes := []region{{0, min(f.size, 64<<10)}, {max(0, f.size-64<<10), min(f.size, 64<<10)}}
	prev := int64(0)
	for _, r := range f.regions {
		probes = append(probes, region{max(0, r.off-64<<10), 64 << 10}, r, region{r.off + r.len, 64 << 10},
			region{(prev + r.off) / 2, 4096})
		prev = r.off + r.len
	}
	for _, pr := range probes {
		pr.len = min(pr.len, f.size-pr.off)
		if pr.len <= 0 {
			continue
		}
		got := make([]byte, pr.len)
		if _, err := fd.ReadAt(got, pr.off); err != nil && err != io.EOF {
			t.Fatalf("%s: %v", f.name, err)
		}
		for i, c := range got {
			off := pr.off + int64(i)
			want := byte(0)
			if inData(off) {
				want = pattern(off)
			}
			if c != want {
				t.Fatalf("%s: byte %d is %#x, want %#x", f.name, off, c, want)
			}
		}
	}
}

// requireHoles skips the test if dir's file system does not keep holes.
func requireHoles(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, ".holes")
	f := sparseFile{name: ".holes", size: 64 << 20, regions: []region{{32 << 20, 4096}}}
	f.make(t, dir)
	defer os.Remove(p)
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if st.Blocks*512 > 1<<20 {
		t.Skipf("%s does not keep holes", dir)
	}
}

const gib = int64(1) << 30

// sparseFiles are files of 4 GiB (and one of 1 MiB) with data at the
// start, middle, end, ending in a hole, ending in data in a partial block,
// with no data at all, and a file with no hole.
var sparseFiles = []sparseFile{
	{"start-middle-end", 4 * gib, []region{{0, 4096}, {2 * gib, 8192}, {4*gib - 4096, 4096}}, true},
	{"ends-in-hole", 4 * gib, []region{{0, 4096}, {gib + 12345, 1000}}, true},
	{"ends-in-partial-data", 4*gib + 1000, []region{{1 << 20, 4096}, {4 * gib, 1000}}, true},
	{"all-hole", 4 * gib, nil, true},
	{"dense", 1 << 20, []region{{0, 1 << 20}}, false},
}

func TestSparse(t *testing.T) {
	upper := t.TempDir()
	requireHoles(t, upper)
	var want Stats
	for _, f := range sparseFiles {
		f.make(t, upper)
		want.Files++
		want.Bytes += f.size
		if f.sparse {
			want.SparseFiles++
		}
	}
	var archive bytes.Buffer
	st, err := Save(upper, &archive)
	must(t, err)
	t.Logf("%+v: %d bytes", st, archive.Len())
	if st.Files != want.Files || st.Bytes != want.Bytes || st.SparseFiles != want.SparseFiles {
		t.Errorf("stats %+v, want files, bytes and sparse files of %+v", st, want)
	}
	// The data, rounded out to 512-byte blocks, the dense file, headers.
	if st.DataBytes > (2<<20) || archive.Len() > 2<<20 {
		t.Fatalf("archive of %d bytes (%d of data) for about 1 MiB of data", archive.Len(), st.DataBytes)
	}
	plan, err := Precheck(upper)
	must(t, err)
	if plan.Stats != st || plan.ArchiveBytes != int64(archive.Len()) {
		t.Errorf("Precheck %+v, Save %+v in %d bytes", plan, st, archive.Len())
	}

	t.Run("apply", func(t *testing.T) {
		root := t.TempDir()
		u, ast, err := Apply(root, bytes.NewReader(archive.Bytes()), t.TempDir())
		must(t, err)
		defer u.Commit()
		if ast != st {
			t.Errorf("Apply stats %+v, Save stats %+v", ast, st)
		}
		for _, f := range sparseFiles {
			f.check(t, root, 64<<10)
		}
	})

	// archive/tar reads the same names, sizes and, for the dense file,
	// content; sparse content is checked on a smaller file below.
	t.Run("archive/tar", func(t *testing.T) {
		tr := tar.NewReader(bytes.NewReader(archive.Bytes()))
		var got []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			got = append(got, fmt.Sprintf("%s %d", h.Name, h.Size))
			if h.Name == "dense" {
				b, err := io.ReadAll(tr)
				must(t, err)
				want := make([]byte, 1<<20)
				fillPattern(want, 0)
				if !bytes.Equal(b, want) {
					t.Error("dense: content differs")
				}
			}
		}
		var want []string
		for _, f := range sparseFiles {
			want = append(want, fmt.Sprintf("%s %d", f.name, f.size))
		}
		sort.Strings(want)
		want = append(want, "GlobalHead.0.0 0")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("archive/tar reads\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("GNU tar", func(t *testing.T) {
		tarBin, err := exec.LookPath("tar")
		if err != nil {
			t.Skip("no tar")
		}
		dir := t.TempDir()
		ap := filepath.Join(dir, "a.tar")
		must(t, os.WriteFile(ap, archive.Bytes(), 0o600))
		out, err := exec.Command(tarBin, "-tvf", ap).CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tvf: %v\n%s", err, out)
		}
		t.Logf("tar -tvf:\n%s", out)
		for _, f := range sparseFiles {
			if !bytes.Contains(out, []byte(fmt.Sprintf(" %d ", f.size))) || !bytes.Contains(out, []byte(" "+f.name+"\n")) {
				t.Errorf("tar -tvf does not list %s of %d bytes", f.name, f.size)
			}
		}
		x := filepath.Join(dir, "x")
		must(t, os.Mkdir(x, 0o755))
		if out, err := exec.Command(tarBin, "--sparse", "-xf", ap, "-C", x).CombinedOutput(); err != nil {
			t.Fatalf("tar -xf: %v\n%s", err, out)
		}
		for _, f := range sparseFiles {
			f.check(t, x, 64<<10)
		}
	})
}

// TestSparseContent reads a whole sparse file back through Apply,
// archive/tar and GNU tar and compares every byte.
func TestSparseContent(t *testing.T) {
	upper := t.TempDir()
	requireHoles(t, upper)
	f := sparseFile{"s", 9<<20 + 7, []region{{4096, 3 * 4096}, {1 << 20, 100}, {5 << 20, 300 << 10}, {9 << 20, 7}}, true}
	f.make(t, upper)
	want, err := os.ReadFile(filepath.Join(upper, "s"))
	must(t, err)
	var archive bytes.Buffer
	st, err := Save(upper, &archive)
	must(t, err)
	if st.SparseFiles != 1 {
		t.Fatalf("stats %+v", st)
	}
	// From memory, and from a file (pread, sendfile region by region).
	ap := filepath.Join(t.TempDir(), "a.tar")
	must(t, os.WriteFile(ap, archive.Bytes(), 0o600))
	af, err := os.Open(ap)
	must(t, err)
	defer af.Close()
	for _, r := range []io.Reader{bytes.NewReader(archive.Bytes()), af} {
		root := t.TempDir()
		u, _, err := Apply(root, r, t.TempDir())
		must(t, err)
		defer u.Commit()
		got, err := os.ReadFile(filepath.Join(root, "s"))
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("Apply from %T: content differs", r)
		}
		f.check(t, root, 64<<10)
	}

	tr := tar.NewReader(bytes.NewReader(archive.Bytes()))
	h, err := tr.Next()
	must(t, err)
	got, err := io.ReadAll(tr)
	must(t, err)
	if h.Name != "s" || !bytes.Equal(got, want) {
		t.Errorf("archive/tar: %q, content equal: %v", h.Name, bytes.Equal(got, want))
	}

	if tarBin, err := exec.LookPath("tar"); err == nil {
		x := t.TempDir()
		cmd := exec.Command(tarBin, "-xf", "-", "-C", x)
		cmd.Stdin = bytes.NewReader(archive.Bytes())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tar -xf: %v\n%s", err, out)
		}
		got, err := os.ReadFile(filepath.Join(x, "s"))
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Error("GNU tar: content differs")
		}
	}
}

// BenchmarkSparse saves and applies a 4 GiB file holding 8 MiB of data in
// eight regions. Both should take about as long as 8 MiB would.
func BenchmarkSparse(b *testing.B) {
	requireRoot(b)
	upper := b.TempDir()
	requireHoles(b, upper)
	var regions []region
	for i := range int64(8) {
		regions = append(regions, region{i * gib / 2, 1 << 20})
	}
	f := sparseFile{"big", 4 * gib, regions, true}
	f.make(b, upper)
	archive := filepath.Join(b.TempDir(), "a.tar")
	save := func() {
		w, err := os.Create(archive)
		must(b, err)
		_, err = Save(upper, w)
		must(b, err)
		must(b, w.Close())
	}
	b.Run("save", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			save()
		}
		st, err := os.Stat(archive)
		must(b, err)
		b.ReportMetric(float64(st.Size()), "archive-bytes")
	})
	b.Run("apply", func(b *testing.B) {
		save()
		backup := b.TempDir()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			root := filepath.Join(b.TempDir(), "root")
			must(b, os.Mkdir(root, 0o755))
			r, err := os.Open(archive)
			must(b, err)
			b.StartTimer()
			u, _, err := Apply(root, r, backup)
			must(b, err)
			must(b, u.Commit())
			r.Close()
		}
	})
}

// TestSparseBackup: a sparse file that Apply replaces is backed up with its
// holes (the undo data stays small), and put back sparse by Rollback and,
// from the journal on disk, by Recover.
func TestSparseBackup(t *testing.T) {
	requireRoot(t)
	for _, how := range []string{"Rollback", "Recover"} {
		t.Run(how, func(t *testing.T) {
			root := t.TempDir()
			requireHoles(t, root)
			f := sparseFile{"big", 4 * gib, []region{{0, 4096}, {gib, 100}, {3 * gib, 8192}}, true}
			f.make(t, root)
			write(t, filepath.Join(root, "small"), "small", 0o644)
			before := snapshotNoContent(t, root)
			backup := t.TempDir()
			ents := []entry{reg("big", "now small"), reg("small", "replaced too")}
			u, _, err := Apply(root, bytes.NewReader(archive(t, 2, ents...)), backup)
			must(t, err)
			datas, _ := filepath.Glob(filepath.Join(backup, undoPrefix+"*", dataName))
			if len(datas) != 1 {
				t.Fatalf("undo data files: %v", datas)
			}
			var st unix.Stat_t
			must(t, unix.Stat(datas[0], &st))
			if st.Blocks*512 > 1<<20 {
				t.Errorf("undo data of %d bytes takes %d bytes", st.Size, st.Blocks*512)
			}
			if how == "Rollback" {
				must(t, u.Rollback())
			} else {
				u.j.close() // as if the process were gone
				got, err := Recover(backup)
				if err != nil || len(got) != 1 {
					t.Fatalf("Recover = %q, %v", got, err)
				}
			}
			f.check(t, root, 64<<10)
			if b, err := os.ReadFile(filepath.Join(root, "small")); err != nil || string(b) != "small" {
				t.Errorf("small: %q, %v", b, err)
			}
			sameTree(t, "root", before, snapshotNoContent(t, root))
		})
	}
}

// snapshotNoContent is snapshot for trees with huge sparse files: names,
// types, modes, owners, sizes and times, not contents.
func snapshotNoContent(t testing.TB, root string) tree {
	t.Helper()
	snap := tree{}
	ents, err := os.ReadDir(root)
	must(t, err)
	for _, e := range ents {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(root, e.Name()), &st))
		snap[e.Name()] = fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d.%09d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	}
	return snap
}
