package rootfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The archive codec. Save writes, and Apply reads, the subset of the POSIX
// pax interchange format (IEEE Std 1003.1, "pax" utility, ustar headers with
// extended header records) described in the package documentation. It is
// our own rather than archive/tar's for two reasons: archive/tar's Writer
// cannot write sparse files (its GNU.sparse support is disabled, golang.org/
// issue/22735) and its Reader turns holes into zeros it hands back to be
// read, which makes restoring a sparse file cost its size rather than its
// data; and both spend more per entry than the system calls of a small file.
// Archives stay readable by archive/tar and GNU tar (tested), and Apply still
// reads the archives that earlier versions wrote with archive/tar.
//
// What is written, per entry:
//
//   - a pax extended header: a ustar block of type 'x' named
//     "././@PaxHeader" whose data are the records "<len> <key>=<value>\n"
//     (len counts the whole record, its own digits included), in this
//     order: path (only when the name does not fit the ustar field:
//     longer than 100 bytes or not ASCII), linkpath (likewise), size,
//     uid, gid (only when they do not fit the octal field), mtime and
//     atime (always, seconds and exactly nine digits of nanoseconds,
//     "-" for times before 1970), the GNU.sparse records of a sparse file,
//     SCHILY.xattr.<name> sorted by name, TARDIS.whiteout, TARDIS.opaque;
//   - the ustar header block: name, mode, uid, gid, size, mtime (seconds),
//     checksum, type, link name, "ustar\x00" "00", empty user and group
//     names, device numbers 0; numbers in zero-padded octal ending in NUL,
//     0 where the pax record holds the real value;
//   - the entry's data, padded with NULs to a 512-byte block.
//
// A sparse file (one with holes) uses GNU tar's pax sparse format 1.0: the
// records GNU.sparse.major=1, GNU.sparse.minor=0, GNU.sparse.name=<the real
// name> and GNU.sparse.realsize=<its size>; the ustar name is a placeholder,
// "<dir>/GNUSparseFile.0/<base>" (what a reader that does not know the
// format extracts: a file holding the map and the data). The entry's data
// start with the map, decimal numbers each ended by "\n": the number of
// data regions, then offset and length of each, padded with NULs to a
// block; then the regions' bytes back to back. The ustar size is map plus
// data. Regions are sorted, do not overlap, and start and end on 512-byte
// boundaries except at the end of the file (GNU tar needs that); a file
// that ends in a hole has a last region of length 0 at its size, as GNU tar
// writes it.
//
// The archive ends with a global pax header (type 'g', "GlobalHead.0.0")
// carrying TARDIS.end, then two zero blocks.
//
// The reader accepts ustar blocks ("ustar\x00" "00" magic, unsigned
// checksum) with at most one pax extended header before each, octal
// numbers, the standard records above (and ignores ctime, uname, gname,
// comment, charset, hdrcharset) and sparse format 1.0 only. Everything else
// (GNU or v7 headers, base-256 numbers, other sparse formats, two extended
// headers in a row, a header over 1 MiB, a malformed record or map) is
// ErrDamaged.

const (
	blockSize = 512

	typeReg     = '0'
	typeLink    = '1'
	typeSymlink = '2'
	typeChar    = '3'
	typeBlock   = '4'
	typeDir     = '5'
	typeFifo    = '6'
	typeXHeader = 'x'
	typeXGlobal = 'g'

	maxPAXHeader = 1 << 20 // largest extended header written or read
	maxSpans     = 1 << 20 // most data regions of a file written sparse

	paxPath     = "path"
	paxLinkpath = "linkpath"
	paxSize     = "size"
	paxUID      = "uid"
	paxGID      = "gid"
	paxMtime    = "mtime"
	paxAtime    = "atime"

	sparsePrefix   = "GNU.sparse."
	sparseMajor    = "GNU.sparse.major"
	sparseMinor    = "GNU.sparse.minor"
	sparseName     = "GNU.sparse.name"
	sparseRealSize = "GNU.sparse.realsize"

	paxHeaderName    = "././@PaxHeader"
	globalHeaderName = "GlobalHead.0.0"
)

// span is a data region of a sparse file.
type span struct{ off, len int64 }

// hdr is one archive entry.
type hdr struct {
	typ          byte
	name         string // directories end in "/"
	link         string // hard link or symlink target
	mode         int64  // permission bits
	uid, gid     int64
	size         int64 // regular file: its size, holes included
	mtime, atime unix.Timespec
	// Written: xattrs (sorted by name), whiteout, opaque.
	xattrs           []xattr
	whiteout, opaque bool
	// sparse, when not nil, lists the data regions of a sparse file, sorted
	// and within size (a last empty region at size when it ends in a hole).
	sparse []span
	// Read: the records other than the standard and GNU.sparse ones (xattrs,
	// TARDIS.*; for a global header, all of them), nil if none; the device
	// numbers of a device entry.
	recs               map[string]string
	devmajor, devminor int64
	atimeSet           bool // the atime record was there
}

type xattr struct {
	name  string
	value []byte
}

// dataSize is the number of bytes of file data the entry carries: its size,
// or the total length of its regions if it is sparse.
func (h *hdr) dataSize() int64 {
	if h.sparse == nil {
		return h.size
	}
	var n int64
	for _, s := range h.sparse {
		n += s.len
	}
	return n
}

func blockPad(n int64) int64 { return -n & (blockSize - 1) }

// appendRecord appends the pax record key=value with its length prefix.
func appendRecord[V string | []byte](b []byte, key string, value V) []byte {
	n := len(key) + len(value) + 3 // ' ', '=', '\n'
	d := 1
	for x := n; x >= 10; x /= 10 {
		d++
	}
	if n+d >= pow10(d) {
		d++
	}
	b = strconv.AppendInt(b, int64(n+d), 10)
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	b = append(b, value...)
	return append(b, '\n')
}

func pow10(d int) int {
	p := 1
	for range d {
		p *= 10
	}
	return p
}

// appendPAXTime appends t as seconds with nine digits of fraction, negative
// before 1970 (-1.5 is one and a half seconds before).
func appendPAXTime(b []byte, t unix.Timespec) []byte {
	sec, nsec := t.Sec, t.Nsec
	if sec < 0 && nsec > 0 {
		b, sec, nsec = append(b, '-'), -(sec + 1), 1e9-nsec
	} else if sec < 0 {
		b, sec = append(b, '-'), -sec
	}
	b = strconv.AppendInt(b, sec, 10)
	b = strconv.AppendInt(append(b, '.'), 1e9+nsec, 10) // nine digits after a '1'
	copy(b[len(b)-10:], b[len(b)-9:])
	return b[:len(b)-1]
}

// fitsOctal says whether n fits a ustar numeric field of width w (w-1
// octal digits and a NUL).
func fitsOctal(n int64, w int) bool { return n >= 0 && (w-1 >= 22 || n < int64(1)<<(3*(w-1))) }

func putOctal(b []byte, n int64) {
	for i := len(b) - 2; i >= 0; i-- {
		b[i] = byte('0' + n&7)
		n >>= 3
	}
	b[len(b)-1] = 0
}

// ustarString says whether s can be stored as is in a ustar string field of
// width w: short enough, ASCII and without NUL.
func ustarString(s string, w int) bool {
	if len(s) > w {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// putString fills a string field with s, or with an ASCII stand-in if s
// does not fit (the pax record has it).
func putString(b []byte, s string) {
	if !ustarString(s, len(b)) {
		r := make([]byte, 0, len(b))
		for i := 0; i < len(s) && len(r) < len(b); i++ {
			if c := s[i]; c != 0 && c < 0x80 {
				r = append(r, c)
			}
		}
		s = string(r)
	}
	copy(b, s)
}

// ustar block layout.
const (
	offName, lenName         = 0, 100
	offMode, lenMode         = 100, 8
	offUID, lenUID           = 108, 8
	offGID, lenGID           = 116, 8
	offSize, lenSize         = 124, 12
	offMtime, lenMtime       = 136, 12
	offChksum, lenChksum     = 148, 8
	offType                  = 156
	offLink, lenLink         = 157, 100
	offMagic                 = 257 // "ustar\x00", then version "00"
	offDevmajor, lenDevmajor = 329, 8
	offDevminor, lenDevminor = 337, 8
	offPrefix, lenPrefix     = 345, 155
)

// putUstar formats a ustar block into blk (zeroed by the caller).
func putUstar(blk []byte, typ byte, name, link string, mode, uid, gid, size, mtime int64) {
	putString(blk[offName:offName+lenName], name)
	putOctal(blk[offMode:offMode+lenMode], mode)
	putOctal(blk[offUID:offUID+lenUID], uid)
	putOctal(blk[offGID:offGID+lenGID], gid)
	putOctal(blk[offSize:offSize+lenSize], size)
	putOctal(blk[offMtime:offMtime+lenMtime], mtime)
	blk[offType] = typ
	putString(blk[offLink:offLink+lenLink], link)
	copy(blk[offMagic:], "ustar\x0000")
	putOctal(blk[offDevmajor:offDevmajor+lenDevmajor], 0)
	putOctal(blk[offDevminor:offDevminor+lenDevminor], 0)
	sum := checksum(blk)
	putOctal(blk[offChksum:offChksum+7], sum)
	blk[offChksum+7] = ' '
}

// checksum is the sum of the block's bytes, the checksum field counted as
// spaces. Eight bytes at a time: four 16-bit lanes cannot overflow over a
// block (64 words of at most 2*255 per lane).
func checksum(blk []byte) int64 {
	blk = blk[:blockSize]
	const mask = 0x00ff00ff00ff00ff
	var lanes uint64
	for i := 0; i < blockSize; i += 8 {
		w := binary.LittleEndian.Uint64(blk[i:])
		lanes += w&mask + w>>8&mask
	}
	s := int64(lanes&0xffff + lanes>>16&0xffff + lanes>>32&0xffff + lanes>>48)
	for _, c := range blk[offChksum : offChksum+lenChksum] {
		s -= int64(c)
	}
	return s + lenChksum*' '
}

func errUnsaveable(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsaveable}, args...)...)
}

// headerBuf is scratch space for formatting headers, reused entry after
// entry.
type headerBuf struct {
	recs, smap []byte
	num        [64]byte
}

// layout computes what entry h's header blocks hold: its pax records and
// sparse map (in hb), its ustar name and numbers. It fails (ErrUnsaveable)
// for what the format cannot carry.
func (hb *headerBuf) layout(h *hdr) (u ustar, err error) {
	recs, smap := hb.recs[:0], hb.smap[:0]
	u = ustar{typ: h.typ, name: h.name, link: h.link, mode: h.mode & 0o7777, uid: h.uid, gid: h.gid, mtime: h.mtime.Sec}
	if h.typ == typeReg {
		u.size = h.dataSize()
	}
	if h.sparse != nil {
		dir, base := path.Split(h.name)
		u.name = dir + "GNUSparseFile.0/" + base
		smap = strconv.AppendInt(smap, int64(len(h.sparse)), 10)
		smap = append(smap, '\n')
		for _, s := range h.sparse {
			smap = strconv.AppendInt(smap, s.off, 10)
			smap = append(smap, '\n')
			smap = strconv.AppendInt(smap, s.len, 10)
			smap = append(smap, '\n')
		}
		smap = append(smap, zeroBlock[:blockPad(int64(len(smap)))]...)
		u.size += int64(len(smap))
	}
	if strings.IndexByte(h.name, 0) >= 0 || strings.IndexByte(h.link, 0) >= 0 {
		return u, errUnsaveable("name or link target with a NUL byte")
	}
	if !ustarString(u.name, lenName) {
		recs = appendRecord(recs, paxPath, u.name)
	}
	if !ustarString(h.link, lenLink) {
		recs = appendRecord(recs, paxLinkpath, h.link)
	}
	num := func(key string, v *int64, w int) {
		if !fitsOctal(*v, w) {
			recs, *v = appendRecord(recs, key, strconv.AppendInt(hb.num[:0], *v, 10)), 0
		}
	}
	num(paxSize, &u.size, lenSize)
	num(paxUID, &u.uid, lenUID)
	num(paxGID, &u.gid, lenGID)
	if !fitsOctal(u.mtime, lenMtime) {
		u.mtime = 0
	}
	recs = appendRecord(recs, paxMtime, appendPAXTime(hb.num[:0], h.mtime))
	recs = appendRecord(recs, paxAtime, appendPAXTime(hb.num[:0], h.atime))
	if h.sparse != nil {
		recs = appendRecord(recs, sparseMajor, "1")
		recs = appendRecord(recs, sparseMinor, "0")
		recs = appendRecord(recs, sparseName, h.name)
		recs = appendRecord(recs, sparseRealSize, strconv.AppendInt(hb.num[:0], h.size, 10))
	}
	for _, x := range h.xattrs {
		if x.name == "" || strings.ContainsAny(x.name, "=\x00") {
			return u, errUnsaveable("xattr name %q", x.name)
		}
		recs = appendRecord(recs, paxXattr+x.name, x.value)
	}
	if h.whiteout {
		recs = appendRecord(recs, paxWhiteout, "1")
	}
	if h.opaque {
		recs = appendRecord(recs, paxOpaque, "1")
	}
	hb.recs, hb.smap = recs, smap
	if len(recs) > maxPAXHeader {
		return u, errUnsaveable("%d bytes of extended header (xattrs?), more than %d", len(recs), maxPAXHeader)
	}
	return u, nil
}

// appendHeader appends to b the blocks that precede the data of entry h:
// its pax extended header, its ustar block and, for a sparse file, the map.
func (hb *headerBuf) appendHeader(b []byte, h *hdr) ([]byte, error) {
	u, err := hb.layout(h)
	if err != nil {
		return b, err
	}
	b = appendBlock(b)
	putUstar(b[len(b)-blockSize:], typeXHeader, paxHeaderName, "", 0o644, 0, 0, int64(len(hb.recs)), 0)
	b = append(b, hb.recs...)
	b = append(b, zeroBlock[:blockPad(int64(len(hb.recs)))]...)
	b = appendBlock(b)
	putUstar(b[len(b)-blockSize:], u.typ, u.name, u.link, u.mode, u.uid, u.gid, u.size, u.mtime)
	return append(b, hb.smap...), nil
}

// entrySize is the number of archive bytes entry h takes (what
// appendHeader appends, then data and padding), without formatting it.
func (hb *headerBuf) entrySize(h *hdr) (int64, error) {
	if _, err := hb.layout(h); err != nil {
		return 0, err
	}
	r := int64(len(hb.recs))
	n := 2*blockSize + r + blockPad(r) + int64(len(hb.smap))
	if h.typ == typeReg {
		d := h.dataSize()
		n += d + blockPad(d)
	}
	return n, nil
}

func appendBlock(b []byte) []byte {
	return append(b, zeroBlock[:]...)
}

var zeroBlock [blockSize]byte

// appendTrailer appends the global header carrying TARDIS.end=entries and
// the two zero blocks that end the archive.
func appendTrailer(b []byte, entries int) []byte {
	recs := appendRecord(nil, paxEnd, strconv.Itoa(entries))
	b = appendBlock(b)
	putUstar(b[len(b)-blockSize:], typeXGlobal, globalHeaderName, "", 0o644, 0, 0, int64(len(recs)), 0)
	b = append(b, recs...)
	b = append(b, zeroBlock[:blockPad(int64(len(recs)))]...)
	return append(append(b, zeroBlock[:]...), zeroBlock[:]...)
}

// arReader reads an archive: next returns each header, Read (or take, or
// sendTo) the data of the current entry (for a sparse file, its regions
// back to back, the map already read).
//
// The archive is read in chunks of 1 MiB; take hands out a small file's
// data as a slice of the chunk that holds it, which is recycled once every
// such slice is released: no copy.
type arReader struct {
	src    io.Reader
	file   *fileSrc // src, if the archive is a regular file
	c      *chunk   // the current chunk: c.buf[r:w] is read, not consumed
	r, w   int
	err    error            // of the last read of src (io.EOF at its end)
	blk    *[blockSize]byte // the block just read, in c (valid until the next read)
	remain int64            // data of the current entry not consumed yet
	pad    int64            // and its padding
	px     paxHeader
	paxBuf []byte
	free   chan *chunk // released chunks, for reuse
}

// chunkBytes is the size of the chunks the archive is read in.
const chunkBytes = 1 << 20

// chunk is a piece of the archive as read, shared by the reader and the
// data slices taken from it. Released by all, it goes back to its reader's
// free list.
type chunk struct {
	buf  []byte
	refs atomic.Int32
	free chan *chunk
}

func (c *chunk) acquire() *chunk { c.refs.Add(1); return c }

func (c *chunk) release() {
	if c.refs.Add(-1) == 0 {
		select {
		case c.free <- c:
		default: // enough kept
		}
	}
}

// newChunk returns a free chunk, held once.
func (ar *arReader) newChunk() *chunk {
	var c *chunk
	select {
	case c = <-ar.free:
	default:
		c = &chunk{buf: make([]byte, chunkBytes), free: ar.free}
	}
	c.refs.Store(1)
	return c
}

// newArReader reads the archive r. When r is a regular file, it is read
// with pread from its current offset (which it leaves alone), and the data
// of large files can go from it to their new file with sendfile (sendTo),
// without passing through memory. close gives its buffer back.
func newArReader(r io.Reader) *arReader {
	ar := &arReader{src: r, free: make(chan *chunk, 32)}
	ar.c = ar.newChunk()
	if f, ok := r.(*os.File); ok {
		var st unix.Stat_t
		fd := int(f.Fd())
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			if off, err := unix.Seek(fd, 0, io.SeekCurrent); err == nil {
				ar.file = &fileSrc{f: f, fd: fd, off: off}
				ar.src = ar.file
			}
		}
	}
	return ar
}

func (ar *arReader) close() {
	if ar.c != nil {
		ar.c.release()
		ar.c = nil
	}
}

// fill makes at least n bytes (at most chunkBytes) available in
// c.buf[r:w], moving to a new chunk when the current one has no room left
// (what is left of it is copied over), or returns the read error.
func (ar *arReader) fill(n int) error {
	for empty := 0; ar.w-ar.r < n; {
		if ar.err != nil {
			return ar.err
		}
		if ar.r == ar.w && ar.c.refs.Load() == 1 {
			ar.r, ar.w = 0, 0 // no one else holds it: start it over
		}
		if ar.r+n > len(ar.c.buf) {
			c := ar.newChunk()
			m := copy(c.buf, ar.c.buf[ar.r:ar.w])
			ar.c.release()
			ar.c, ar.r, ar.w = c, 0, m
		}
		k, err := ar.src.Read(ar.c.buf[ar.w:])
		ar.w += k
		ar.err = err
		if k == 0 && err == nil {
			if empty++; empty > 100 {
				ar.err = io.ErrNoProgress
			}
		}
	}
	return nil
}

// fileSrc reads a regular file with pread from off.
type fileSrc struct {
	f   *os.File // kept alive
	fd  int
	off int64
}

func (s *fileSrc) Read(p []byte) (int, error) {
	for {
		n, err := unix.Pread(s.fd, p, s.off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		s.off += int64(n)
		return n, nil
	}
}

// take returns the next n bytes (at most half a chunk) of the current
// entry's data as a slice of a chunk, and the chunk, held for the caller
// until it releases it.
func (ar *arReader) take(n int) ([]byte, *chunk, error) {
	if int64(n) > ar.remain || n > chunkBytes/2 {
		return nil, nil, damaged("entry data overrun")
	}
	if err := ar.fill(n); err != nil {
		return nil, nil, unexpected(err)
	}
	b := ar.c.buf[ar.r : ar.r+n : ar.r+n]
	ar.r += n
	ar.remain -= int64(n)
	return b, ar.c.acquire(), nil
}

// noSendfile is set once sendfile failed for want of support.
var noSendfile atomic.Bool

// canSend says whether sendTo can copy the next n bytes of the current
// entry's data (else they are to be read).
func (ar *arReader) canSend(n int64) bool {
	return ar.file != nil && !noSendfile.Load() && n <= ar.remain
}

// sendTo writes the next n bytes of the current entry's data to file fd at
// offset off (see canSend): what is read already from the chunk, the rest
// with sendfile straight from the archive file, or, if sendfile turns out
// not to work for these files, by reading.
func (ar *arReader) sendTo(fd int, off, n int64) error {
	if n > ar.remain {
		return damaged("entry data overrun")
	}
	if b := min(int64(ar.w-ar.r), n); b > 0 {
		if err := pwriteFull(fd, ar.c.buf[ar.r:ar.r+int(b)], off); err != nil {
			return err
		}
		ar.r += int(b)
		ar.remain -= b
		off, n = off+b, n-b
	}
	if n == 0 {
		return nil
	}
	if _, err := unix.Seek(fd, off, io.SeekStart); err != nil {
		return fmt.Errorf("seek: %w", err)
	}
	for n > 0 {
		m, err := unix.Sendfile(fd, ar.file.fd, &ar.file.off, int(min(n, 1<<30)))
		switch {
		case err == unix.EINTR:
			continue
		case (err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP) && m <= 0:
			// Not for these files: read what is left.
			noSendfile.Store(true)
			return ar.writeRead(fd, off, n)
		case err != nil:
			return fmt.Errorf("sendfile: %w", err)
		case m == 0:
			return unexpected(io.ErrUnexpectedEOF)
		}
		ar.remain -= int64(m)
		off, n = off+int64(m), n-int64(m)
	}
	runtime.KeepAlive(ar.file.f)
	return nil
}

// writeRead copies the next n bytes of the entry's data to fd at off by
// reading them.
func (ar *arReader) writeRead(fd int, off, n int64) error {
	buf := make([]byte, min(n, chunkBytes))
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		if _, err := io.ReadFull(ar, b); err != nil {
			return unexpected(err)
		}
		if err := pwriteFull(fd, b, off); err != nil {
			return err
		}
		off, n = off+int64(len(b)), n-int64(len(b))
	}
	return nil
}

// Read reads the current entry's data. Large reads with nothing buffered go
// straight into p.
func (ar *arReader) Read(p []byte) (int, error) {
	if ar.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > ar.remain {
		p = p[:ar.remain]
	}
	var n int
	if ar.r == ar.w && len(p) >= chunkBytes/2 && ar.err == nil {
		n, ar.err = ar.src.Read(p)
	} else {
		if err := ar.fill(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n = copy(p, ar.c.buf[ar.r:ar.w])
		ar.r += n
	}
	ar.remain -= int64(n)
	if n == 0 && ar.err != nil {
		if ar.err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, ar.err
	}
	return n, nil
}

// skip discards what is left of the current entry: from a file, without
// reading it.
func (ar *arReader) skip() error {
	n := ar.remain + ar.pad
	ar.remain, ar.pad = 0, 0
	b := min(int64(ar.w-ar.r), n)
	ar.r += int(b)
	n -= b
	if n > 0 && ar.file != nil {
		ar.file.off += n // a cut archive shows at the next read
		return nil
	}
	for n > 0 {
		if err := ar.fill(1); err != nil {
			return unexpected(err)
		}
		b := min(int64(ar.w-ar.r), n)
		ar.r += int(b)
		n -= b
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %w", ErrDamaged, err)
}

// readRaw reads the next len(b) bytes of the archive into b.
func (ar *arReader) readRaw(b []byte) error {
	for len(b) > 0 {
		if err := ar.fill(1); err != nil {
			return unexpected(err)
		}
		n := copy(b, ar.c.buf[ar.r:ar.w])
		ar.r += n
		b = b[n:]
	}
	return nil
}

// block reads the next block (ar.blk, valid until the next read).
func (ar *arReader) block() error {
	if err := ar.fill(blockSize); err != nil {
		return unexpected(err)
	}
	ar.blk = (*[blockSize]byte)(ar.c.buf[ar.r : ar.r+blockSize])
	ar.r += blockSize
	return nil
}

// next reads the next entry's header, skipping what is left of the current
// one. At the end of the archive (two zero blocks) it returns io.EOF. Its
// errors wrap ErrDamaged.
func (ar *arReader) next() (*hdr, error) {
	if err := ar.skip(); err != nil {
		return nil, err
	}
	if err := ar.block(); err != nil {
		return nil, err
	}
	if *ar.blk == zeroBlock {
		if err := ar.block(); err != nil {
			return nil, err
		}
		if *ar.blk != zeroBlock {
			return nil, damaged("a zero block, then a header")
		}
		return nil, io.EOF
	}
	u, err := parseUstar(ar.blk)
	if err != nil {
		return nil, err
	}
	var px *paxHeader
	switch u.typ {
	case typeXHeader, typeXGlobal:
		if u.size > maxPAXHeader {
			return nil, damaged("extended header of %d bytes", u.size)
		}
		n := int(u.size + blockPad(u.size))
		if cap(ar.paxBuf) < n {
			ar.paxBuf = make([]byte, n)
		}
		data := ar.paxBuf[:n]
		if err := ar.readRaw(data); err != nil {
			return nil, err
		}
		px = &ar.px
		if err = parsePAX(px, data[:u.size], u.typ == typeXGlobal); err != nil {
			return nil, err
		}
		if u.typ == typeXGlobal {
			return &hdr{typ: typeXGlobal, name: u.name, recs: px.recs}, nil
		}
		if err := ar.block(); err != nil {
			return nil, err
		}
		if *ar.blk == zeroBlock {
			return nil, damaged("extended header without its entry")
		}
		if u, err = parseUstar(ar.blk); err != nil {
			return nil, err
		}
		if u.typ == typeXHeader || u.typ == typeXGlobal {
			return nil, damaged("two extended headers in a row")
		}
	}
	h := &hdr{typ: u.typ, name: u.name, link: u.link, mode: u.mode, uid: u.uid, gid: u.gid,
		size: u.size, mtime: unix.Timespec{Sec: u.mtime}, devmajor: u.devmajor, devminor: u.devminor}
	if px != nil {
		if px.hasPath {
			h.name = px.path
		}
		if px.hasLinkpath {
			h.link = px.linkpath
		}
		if px.size >= 0 {
			h.size = px.size
		}
		if px.uid >= 0 {
			h.uid = px.uid
		}
		if px.gid >= 0 {
			h.gid = px.gid
		}
		if px.hasMtime {
			h.mtime = px.mtime
		}
		if px.hasAtime {
			h.atime, h.atimeSet = px.atime, true
		}
		h.recs = px.recs
	}
	switch h.typ {
	case typeReg:
		ar.remain, ar.pad = h.size, blockPad(h.size)
	default: // no data, whatever the size says (as GNU tar and archive/tar read it)
		ar.remain, ar.pad = 0, 0
		if h.typ != typeLink && h.typ != typeSymlink && h.typ != typeChar && h.typ != typeBlock && h.typ != typeDir && h.typ != typeFifo {
			// Unknown types (GNU's, vendors', sockets do not exist in tar)
			// may have data; an entry we then refuse needs no more.
			ar.remain, ar.pad = h.size, blockPad(h.size)
		}
	}
	if px != nil && px.sparse {
		if err := ar.readSparse(h, px); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// readSparse reads the map of a sparse (format 1.0) entry from the start of
// its data and makes h describe the file: its real name and size.
func (ar *arReader) readSparse(h *hdr, px *paxHeader) error {
	if px.sparseVersion != "1.0" {
		return damaged("entry %q: sparse format %q not supported", h.name, px.sparseVersion)
	}
	if h.typ != typeReg || !px.hasSparseName || px.sparseSize < 0 {
		return damaged("entry %q: sparse entry without its name, size, or not a file", h.name)
	}
	// The map: decimal numbers ended by "\n", then NULs to a block.
	var nums []int64
	count := int64(-1)
	var cur int64
	digits := 0
	mapBytes := int64(0)
	for count < 0 || int64(len(nums)) < 2*count {
		if ar.remain < blockSize {
			return damaged("entry %q: sparse map cut", h.name)
		}
		if err := ar.block(); err != nil {
			return err
		}
		ar.remain -= blockSize
		mapBytes += blockSize
		for _, c := range *ar.blk {
			if count >= 0 && int64(len(nums)) == 2*count {
				if c != 0 {
					return damaged("entry %q: junk after the sparse map", h.name)
				}
				continue
			}
			switch {
			case c >= '0' && c <= '9' && digits < 18:
				cur, digits = cur*10+int64(c-'0'), digits+1
			case c == '\n' && digits > 0:
				if count < 0 {
					if cur > maxSpans {
						return damaged("entry %q: %d sparse regions", h.name, cur)
					}
					count = cur
				} else {
					nums = append(nums, cur)
				}
				cur, digits = 0, 0
			default:
				return damaged("entry %q: malformed sparse map", h.name)
			}
		}
	}
	if digits > 0 {
		return damaged("entry %q: malformed sparse map", h.name)
	}
	spans := make([]span, count)
	var end, data int64
	for i := range spans {
		s := span{nums[2*i], nums[2*i+1]}
		if s.off < end || s.len > px.sparseSize-s.off {
			return damaged("entry %q: sparse regions out of order or beyond its size", h.name)
		}
		spans[i], end, data = s, s.off+s.len, data+s.len
	}
	if data != ar.remain {
		return damaged("entry %q: sparse map says %d bytes of data, entry has %d", h.name, data, ar.remain)
	}
	h.name, h.size, h.sparse = px.sparseName, px.sparseSize, spans
	ar.pad = blockPad(mapBytes + data)
	return nil
}

// ustar is a parsed ustar block.
type ustar struct {
	typ                         byte
	name, link                  string
	mode, uid, gid, size, mtime int64
	devmajor, devminor          int64
}

func parseUstar(blk *[blockSize]byte) (ustar, error) {
	var u ustar
	if string(blk[offMagic:offMagic+8]) != "ustar\x0000" {
		return u, damaged("not a ustar/pax header")
	}
	sum, err := parseOctal(blk[offChksum : offChksum+lenChksum])
	if err != nil || sum != checksum(blk[:]) {
		return u, damaged("header checksum mismatch")
	}
	u.typ = blk[offType]
	u.name = cString(blk[offName : offName+lenName])
	if p := cString(blk[offPrefix : offPrefix+lenPrefix]); p != "" {
		u.name = p + "/" + u.name
	}
	u.link = cString(blk[offLink : offLink+lenLink])
	for _, f := range []struct {
		v   *int64
		off int
		n   int
	}{{&u.mode, offMode, lenMode}, {&u.uid, offUID, lenUID}, {&u.gid, offGID, lenGID},
		{&u.size, offSize, lenSize}, {&u.mtime, offMtime, lenMtime},
		{&u.devmajor, offDevmajor, lenDevmajor}, {&u.devminor, offDevminor, lenDevminor}} {
		if *f.v, err = parseOctal(blk[f.off : f.off+f.n]); err != nil {
			return u, err
		}
	}
	return u, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseOctal reads a ustar number: octal digits, maybe surrounded by spaces
// and NULs. Base-256 numbers (GNU) are refused.
func parseOctal(b []byte) (int64, error) {
	for len(b) > 0 && (b[0] == ' ' || b[0] == 0) {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	var n int64
	if len(b) > 21 {
		return 0, damaged("numeric field too long")
	}
	for _, c := range b {
		if c < '0' || c > '7' {
			return 0, damaged("bad numeric field %q", b)
		}
		n = n<<3 | int64(c-'0')
	}
	return n, nil
}

// paxHeader holds the records of an extended header.
type paxHeader struct {
	path, linkpath       string
	hasPath, hasLinkpath bool
	size, uid, gid       int64 // -1: absent
	mtime, atime         unix.Timespec
	hasMtime, hasAtime   bool
	sparse               bool // some GNU.sparse record
	sparseVersion        string
	sparseName           string
	hasSparseName        bool
	sparseSize           int64
	recs                 map[string]string
}

// parsePAX parses extended header records into p. A later record overrides
// an earlier one with the same key. In a global header every record goes
// to recs.
func parsePAX(p *paxHeader, data []byte, global bool) error {
	*p = paxHeader{size: -1, uid: -1, gid: -1, sparseSize: -1}
	var major, minor, other string
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp <= 0 || sp > 8 || data[0] == '0' {
			return damaged("malformed extended header record")
		}
		n, ok := parseDec(data[:sp])
		if !ok || n <= int64(sp+1) || n > int64(len(data)) || data[n-1] != '\n' {
			return damaged("malformed extended header record")
		}
		rec := data[sp+1 : n-1]
		data = data[n:]
		eq := bytes.IndexByte(rec, '=')
		if eq <= 0 {
			return damaged("malformed extended header record")
		}
		k, v := rec[:eq], rec[eq+1:]
		if bytes.IndexByte(k, 0) >= 0 {
			return damaged("extended header key with a NUL")
		}
		if global {
			if p.recs == nil {
				p.recs = map[string]string{}
			}
			p.recs[string(k)] = string(v)
			continue
		}
		num := func() (int64, error) {
			if n, ok := parseDec(v); ok {
				return n, nil
			}
			return 0, damaged("record %s=%q", k, v)
		}
		name := func() (string, error) {
			if len(v) == 0 || bytes.IndexByte(v, 0) >= 0 {
				return "", damaged("record %s=%q", k, v)
			}
			return string(v), nil
		}
		var err error
		switch string(k) {
		case paxPath:
			p.path, err = name()
			p.hasPath = true
		case paxLinkpath:
			p.linkpath, err = name()
			p.hasLinkpath = true
		case sparseName:
			p.sparseName, err = name()
			p.sparse, p.hasSparseName = true, true
		case paxSize:
			p.size, err = num()
		case paxUID:
			p.uid, err = num()
		case paxGID:
			p.gid, err = num()
		case sparseRealSize:
			p.sparse = true
			p.sparseSize, err = num()
		case paxMtime:
			p.mtime, err = parsePAXTime(v)
			p.hasMtime = true
		case paxAtime:
			p.atime, err = parsePAXTime(v)
			p.hasAtime = true
		case sparseMajor:
			p.sparse, major = true, string(v)
		case sparseMinor:
			p.sparse, minor = true, string(v)
		case "ctime", "uname", "gname", "comment", "charset", "hdrcharset":
		default:
			if bytes.HasPrefix(k, []byte(sparsePrefix)) {
				p.sparse, other = true, " with "+string(k)
				break
			}
			if p.recs == nil {
				p.recs = map[string]string{}
			}
			p.recs[string(k)] = string(v)
		}
		if err != nil {
			return err
		}
	}
	p.sparseVersion = major + "." + minor + other
	return nil
}

// parseDec reads a non-negative decimal number (digits only).
func parseDec(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parsePAXTime reads seconds with an optional fraction, maybe negative.
func parsePAXTime(b []byte) (unix.Timespec, error) {
	bad := func() error { return damaged("bad time %q", b) }
	s := b
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	secs, frac := s, []byte(nil)
	if i := bytes.IndexByte(s, '.'); i >= 0 {
		secs, frac = s[:i], s[i+1:]
	}
	sec, ok := parseDec(secs)
	if !ok {
		return unix.Timespec{}, bad()
	}
	var nsec int64
	for i := 0; i < 9; i++ {
		nsec *= 10
		if i < len(frac) {
			if frac[i] < '0' || frac[i] > '9' {
				return unix.Timespec{}, bad()
			}
			nsec += int64(frac[i] - '0')
		}
	}
	for i := 9; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return unix.Timespec{}, bad()
		}
	}
	if neg {
		if nsec > 0 {
			return unix.Timespec{Sec: -sec - 1, Nsec: 1e9 - nsec}, nil
		}
		return unix.Timespec{Sec: -sec}, nil
	}
	return unix.Timespec{Sec: sec, Nsec: nsec}, nil
}

// sortXattrs orders xattrs by name, as the format wants.
func sortXattrs(x []xattr) {
	slices.SortFunc(x, func(a, b xattr) int { return strings.Compare(a.name, b.name) })
}

var errShort = errors.New("file shrank while saving")
