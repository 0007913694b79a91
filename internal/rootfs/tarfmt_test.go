package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawEntry formats an entry by hand, for what archive/tar will not write:
// an extended header with recs (none if nil), a ustar block of type typ,
// then body padded to a block.
func rawEntry(typ byte, name string, recs [][2]string, body []byte) []byte {
	var b []byte
	if recs != nil {
		var r []byte
		for _, kv := range recs {
			r = appendRecord(r, kv[0], kv[1])
		}
		b = appendBlock(b)
		putUstar(b[len(b)-blockSize:], typeXHeader, paxHeaderName, "", 0o644, 0, 0, int64(len(r)), 0)
		b = append(append(b, r...), make([]byte, blockPad(int64(len(r))))...)
	}
	b = appendBlock(b)
	putUstar(b[len(b)-blockSize:], typ, name, "", 0o644, 0, 0, int64(len(body)), 0)
	return append(append(b, body...), make([]byte, blockPad(int64(len(body))))...)
}

// sparseRaw is a GNU sparse 1.0 entry for name of size size with the given
// map text (padded here) and data.
func sparseRaw(name string, size int64, smap string, data []byte) []byte {
	body := append([]byte(smap), make([]byte, blockPad(int64(len(smap))))...)
	return rawEntry(typeReg, "GNUSparseFile.0/"+name, [][2]string{{sparseMajor, "1"}, {sparseMinor, "0"},
		{sparseName, name}, {sparseRealSize, strconv.FormatInt(size, 10)}}, append(body, data...))
}

func TestChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var blk [blockSize]byte
	for range 1000 {
		for i := range blk {
			blk[i] = byte(rng.Uint32())
			if rng.IntN(3) == 0 {
				blk[i] = 0xff
			}
		}
		var want int64
		for i, c := range blk {
			if i >= offChksum && i < offChksum+lenChksum {
				c = ' '
			}
			want += int64(c)
		}
		if got := checksum(blk[:]); got != want {
			t.Fatalf("checksum %d, want %d", got, want)
		}
	}
}

// codecEntry is an entry to write with the codec: a header and, for a
// regular file, its data (its regions back to back if sparse).
type codecEntry struct {
	h    hdr
	data []byte
}

// writeArchive writes entries and the trailer with the codec.
func writeArchive(t testing.TB, ents []codecEntry) []byte {
	t.Helper()
	var b []byte
	var hb headerBuf
	for _, e := range ents {
		n, err := hb.entrySize(&e.h)
		must(t, err)
		start := len(b)
		if b, err = hb.appendHeader(b, &e.h); err != nil {
			t.Fatal(err)
		}
		b = append(b, e.data...)
		b = append(b, zeroBlock[:blockPad(int64(len(e.data)))]...)
		if int64(len(b)-start) != n {
			t.Fatalf("%s: entrySize %d, written %d", e.h.name, n, len(b)-start)
		}
	}
	return appendTrailer(b, len(ents))
}

func tspec(sec, nsec int64) unix.Timespec { return unix.Timespec{Sec: sec, Nsec: nsec} }

// codecEntries covers what the format must carry: long and non-ASCII names
// and targets, numbers beyond the octal fields, times before 1970 and with
// nanoseconds, binary and empty xattr values, markers, sparse files.
func codecEntries() []codecEntry {
	long := strings.Repeat("d/", 60) + "file"
	sparseData := bytes.Repeat([]byte("sparse!"), 1000)
	return []codecEntry{
		{h: hdr{typ: typeDir, name: "d/", mode: 0o755, mtime: tspec(1e9, 123456789), atime: tspec(1e9, 5)}},
		{h: hdr{typ: typeReg, name: "d/f", mode: 0o4755, uid: 1000, gid: 100, size: 5, mtime: tspec(1, 0), atime: tspec(2, 0)}, data: []byte("hello")},
		{h: hdr{typ: typeReg, name: strings.Repeat("n", 100), mode: 0o644, mtime: tspec(3, 0)}},
		{h: hdr{typ: typeReg, name: strings.Repeat("n", 101), mode: 0o644, mtime: tspec(3, 0)}},
		{h: hdr{typ: typeReg, name: long, mode: 0o600, mtime: tspec(-1e9, 5e8), atime: tspec(-1, 999999999)}},
		{h: hdr{typ: typeReg, name: "ünï cödé\nname", mode: 0o644, uid: 2097151, gid: 2097152, mtime: tspec(-5, 0)}},
		{h: hdr{typ: typeReg, name: "big-ids", mode: 0o644, uid: 1<<32 - 2, gid: 1 << 31, mtime: tspec(1<<33+5, 1)}},
		{h: hdr{typ: typeSymlink, name: "l", link: strings.Repeat("t/", 80), mode: 0o777, mtime: tspec(4, 0)}},
		{h: hdr{typ: typeSymlink, name: "l2", link: "/ünï", mode: 0o777, mtime: tspec(4, 0)}},
		{h: hdr{typ: typeLink, name: "hard", link: "d/f", mode: 0o4755, mtime: tspec(1, 0)}},
		{h: hdr{typ: typeFifo, name: "fifo", mode: 0o620, uid: 7, gid: 8, mtime: tspec(5, 6)}},
		{h: hdr{typ: typeReg, name: "x", mode: 0o644, mtime: tspec(6, 0), xattrs: []xattr{
			{"security.capability", []byte("\x01\x00\x00\x02=\n\x00bin")}, {"user.empty", []byte{}}, {"user.z", []byte("z")}}}},
		{h: hdr{typ: typeReg, name: "wh", whiteout: true}},
		{h: hdr{typ: typeDir, name: "opaque/", mode: 0o700, opaque: true, mtime: tspec(7, 0)}},
		{h: hdr{typ: typeReg, name: "sparse", mode: 0o644, size: 10 << 20, mtime: tspec(8, 0),
			sparse: []span{{4096, 3000}, {1 << 20, 4000}, {10 << 20, 0}}}, data: sparseData[:7000]},
		{h: hdr{typ: typeReg, name: "all-hole", mode: 0o644, size: 1 << 20, mtime: tspec(8, 0), sparse: []span{{1 << 20, 0}}}},
		{h: hdr{typ: typeReg, name: "huge-sparse", mode: 0o644, size: 20 << 30, mtime: tspec(8, 0),
			sparse: []span{{0, 512}, {20<<30 - 100, 100}}}, data: sparseData[:612]},
	}
}

// logical is the content of a regular file entry, holes filled in.
func logical(h *hdr, data []byte) []byte {
	if h.sparse == nil {
		return data
	}
	b := make([]byte, h.size)
	off := int64(0)
	for _, s := range h.sparse {
		copy(b[s.off:s.off+s.len], data[off:off+s.len])
		off += s.len
	}
	return b
}

func TestCodecRoundTrip(t *testing.T) {
	ents := codecEntries()
	archive := writeArchive(t, ents)

	t.Run("our reader", func(t *testing.T) {
		ar := newArReader(bytes.NewReader(archive))
		for _, e := range ents {
			h, err := ar.next()
			must(t, err)
			data, err := io.ReadAll(ar)
			must(t, err)
			want := e.h
			if want.typ != typeReg {
				want.size = 0
			}
			got := *h
			got.atimeSet, got.recs = false, nil
			if h.recs[paxWhiteout] == "1" {
				got.whiteout = true
			}
			if h.recs[paxOpaque] == "1" {
				got.opaque = true
			}
			for _, x := range want.xattrs {
				if v, ok := h.recs[paxXattr+x.name]; !ok || v != string(x.value) {
					t.Errorf("%s: xattr %s = %q, want %q", want.name, x.name, v, x.value)
				}
				got.xattrs = append(got.xattrs, x)
			}
			if !equalHdr(got, want) || !bytes.Equal(data, e.data) {
				t.Errorf("read\n%+v %q\nwant\n%+v %q", got, data, want, e.data)
			}
		}
		h, err := ar.next()
		must(t, err)
		if h.typ != typeXGlobal || h.recs[paxEnd] != "17" {
			t.Errorf("trailer %+v", h)
		}
		if _, err := ar.next(); err != io.EOF {
			t.Errorf("after the trailer: %v, want EOF", err)
		}
	})

	t.Run("archive/tar", func(t *testing.T) {
		tr := tar.NewReader(bytes.NewReader(archive))
		for _, e := range ents {
			h, err := tr.Next()
			must(t, err)
			wantSize := e.h.size
			if e.h.typ != typeReg {
				wantSize = 0
			}
			mt, at := time.Unix(e.h.mtime.Sec, e.h.mtime.Nsec), time.Unix(e.h.atime.Sec, e.h.atime.Nsec)
			if h.Name != e.h.name || h.Linkname != e.h.link || h.Typeflag != e.h.typ || h.Size != wantSize ||
				h.Mode != e.h.mode || int64(h.Uid) != e.h.uid || int64(h.Gid) != e.h.gid ||
				!h.ModTime.Equal(mt) || !h.AccessTime.Equal(at) {
				t.Errorf("archive/tar reads %+v\nwant %+v", h, e.h)
			}
			for _, x := range e.h.xattrs {
				if v := h.PAXRecords[paxXattr+x.name]; v != string(x.value) {
					t.Errorf("%s: xattr %s = %q", e.h.name, x.name, v)
				}
			}
			if e.h.typ == typeReg && e.h.size <= 64<<20 {
				data, err := io.ReadAll(tr)
				must(t, err)
				if !bytes.Equal(data, logical(&e.h, e.data)) {
					t.Errorf("%s: content differs", e.h.name)
				}
			}
		}
		h, err := tr.Next()
		must(t, err)
		if h.Typeflag != tar.TypeXGlobalHeader || h.PAXRecords[paxEnd] != "17" {
			t.Errorf("trailer %+v", h)
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Errorf("after the trailer: %v", err)
		}
	})
}

func equalHdr(a, b hdr) bool {
	if len(a.xattrs) != len(b.xattrs) || len(a.sparse) != len(b.sparse) {
		return false
	}
	for i := range a.xattrs {
		if a.xattrs[i].name != b.xattrs[i].name || !bytes.Equal(a.xattrs[i].value, b.xattrs[i].value) {
			return false
		}
	}
	for i := range a.sparse {
		if a.sparse[i] != b.sparse[i] {
			return false
		}
	}
	a.xattrs, b.xattrs, a.sparse, b.sparse = nil, nil, nil, nil
	return a.typ == b.typ && a.name == b.name && a.link == b.link && a.mode == b.mode && a.uid == b.uid &&
		a.gid == b.gid && a.size == b.size && a.mtime == b.mtime && a.atime == b.atime &&
		a.whiteout == b.whiteout && a.opaque == b.opaque
}

// TestReadArchiveTarOutput: archives written with archive/tar, as Save
// wrote them before it had its own codec, still read the same.
func TestReadArchiveTarOutput(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755, ModTime: time.Unix(1e9, 123456789), AccessTime: time.Unix(1e9, 5e8)},
		{Typeflag: tar.TypeReg, Name: "d/" + strings.Repeat("x", 120), Mode: 0o644, Size: 3, Uid: 3000000, ModTime: time.Unix(-7, 5e8),
			PAXRecords: map[string]string{"SCHILY.xattr.user.a": "1\x00b", paxOpaque + "x": "1"}},
		{Typeflag: tar.TypeReg, Name: "wh", ModTime: time.Unix(10, 0), PAXRecords: map[string]string{paxWhiteout: "1"}},
		{Typeflag: tar.TypeSymlink, Name: "s", Linkname: "ünï", ModTime: time.Unix(1<<34, 0)},
	}
	for _, h := range hdrs {
		h.Format = tar.FormatPAX
		must(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte("abc"))
			must(t, err)
		}
	}
	must(t, tw.Close())
	ar := newArReader(&b)
	for _, want := range hdrs {
		h, err := ar.next()
		must(t, err)
		data, err := io.ReadAll(ar)
		must(t, err)
		if h.name != want.Name || h.link != want.Linkname || h.typ != want.Typeflag || h.size != want.Size ||
			h.mode != want.Mode || h.uid != int64(want.Uid) || !time.Unix(h.mtime.Sec, h.mtime.Nsec).Equal(want.ModTime) ||
			int64(len(data)) != want.Size {
			t.Errorf("read %+v\nwant %+v", h, want)
		}
		if h.atimeSet != !want.AccessTime.IsZero() || h.atimeSet && !time.Unix(h.atime.Sec, h.atime.Nsec).Equal(want.AccessTime) {
			t.Errorf("%s: atime %v (set %v), want %v", want.Name, h.atime, h.atimeSet, want.AccessTime)
		}
		for k, v := range want.PAXRecords {
			if h.recs[k] != v {
				t.Errorf("%s: record %s = %q, want %q", want.Name, k, h.recs[k], v)
			}
		}
	}
	if _, err := ar.next(); err != io.EOF {
		t.Errorf("end: %v", err)
	}
}

// TestHeaderRefusals: what the format cannot carry is ErrUnsaveable.
func TestHeaderRefusals(t *testing.T) {
	var hb headerBuf
	for _, h := range []hdr{
		{typ: typeReg, name: "x", xattrs: []xattr{{"user.a=b", nil}}},
		{typ: typeReg, name: "x", xattrs: []xattr{{"user.big", make([]byte, maxPAXHeader)}}},
		{typ: typeReg, name: "a\x00b"},
	} {
		if _, err := hb.appendHeader(nil, &h); !errors.Is(err, ErrUnsaveable) {
			t.Errorf("%+v: err = %v, want ErrUnsaveable", h.name, err)
		}
		if _, err := hb.entrySize(&h); !errors.Is(err, ErrUnsaveable) {
			t.Errorf("%+v: entrySize err = %v, want ErrUnsaveable", h.name, err)
		}
	}
}

// FuzzArReader: the reader never panics, and whatever entries it reads
// archive/tar reads the same (name, type, link, size, times, content).
// archive/tar is more lenient (GNU and old formats, base-256 numbers,
// signed checksums): the comparison stops at the first entry either
// refuses.
func FuzzArReader(f *testing.F) {
	f.Add(writeArchive(f, codecEntries()))
	f.Add(writeArchive(f, codecEntries()[:3]))
	f.Add(append(sparseRaw("s", 8192, "1\n0\n1024\n", bytes.Repeat([]byte{'d'}, 1024)), appendTrailer(nil, 1)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		ar := newArReader(bufio.NewReaderSize(bytes.NewReader(b), 64<<10))
		tr := tar.NewReader(bytes.NewReader(b))
		for range 100 {
			h, err := ar.next()
			if err != nil {
				return
			}
			th, terr := tr.Next()
			if terr != nil {
				return
			}
			switch h.typ {
			case typeReg, typeLink, typeSymlink, typeChar, typeBlock, typeDir, typeFifo, typeXGlobal:
			default:
				return // refused by Apply; archive/tar may read it otherwise
			}
			if h.name != th.Name || h.typ != th.Typeflag || h.typ != typeXGlobal && (h.link != th.Linkname ||
				h.size != th.Size || h.mode != th.Mode || h.uid != int64(th.Uid) || h.gid != int64(th.Gid) ||
				!time.Unix(h.mtime.Sec, h.mtime.Nsec).Equal(th.ModTime)) {
				t.Fatalf("ours %+v\narchive/tar %+v", h, th)
			}
			if h.typ != typeReg || h.size > 64<<10 {
				continue
			}
			data, err := io.ReadAll(ar)
			if err != nil {
				return
			}
			tdata, terr := io.ReadAll(tr)
			if terr != nil {
				return
			}
			if !bytes.Equal(logical(h, data), tdata) {
				t.Fatalf("%s: content differs", h.name)
			}
		}
	})
}
