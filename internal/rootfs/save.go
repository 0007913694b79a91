package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Save writes the changes recorded in the overlay upper directory upper to w
// as an archive in the format described in the package documentation, and
// returns what it wrote. It never follows a symlink inside upper and never
// reads outside it.
//
// Save refuses (error naming the path, wrapping ErrUnsaveable) device nodes
// other than whiteouts and the overlay features whose data is not in upper
// (trusted.overlay.redirect renamed directories, trusted.overlay.metacopy
// metadata-only copies); it skips unix sockets (Stats.Sockets). It must run
// as root: without CAP_SYS_ADMIN the trusted.overlay.* xattrs marking opaque
// directories are invisible. Overlays mounted with "userxattr"
// (user.overlay.*) are not supported.
//
// Save expects upper not to change while it runs (the container is stopped):
// it opens the regular files it finds to read them.
//
// Save buffers its writes (1 MiB). When w is an *os.File, large files go
// into it with sendfile, which spares copying them through memory.
func Save(upper string, w io.Writer) (Stats, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	a := &archiver{w: bw, links: map[[2]uint64]string{}}
	if f, ok := w.(*os.File); ok {
		a.file = f
	}
	err := scanUpper(upper, true, a.put)
	if err != nil { // no trailer: a partial archive must not look complete
		return a.st, err
	}
	if _, err := bw.Write(appendTrailer(a.out[:0], a.entries)); err != nil {
		return a.st, err
	}
	return a.st, bw.Flush()
}

// Plan is what Save would write for an upper directory as it is now.
type Plan struct {
	Stats
	// Entries is the number of archive entries (the trailer not counted).
	Entries int `json:"entries"`
	// ArchiveBytes is the size of the archive: headers, sparse maps, data
	// (holes excluded) and padding, trailer included. It is exact for a
	// tree that does not change before Save.
	ArchiveBytes int64 `json:"archive_bytes"`
}

// Precheck walks upper as Save would, without reading file contents (and
// without opening regular files except to find the holes of sparse ones,
// through an O_PATH descriptor checked to be a regular file first), and
// returns what Save would write. Where Save would refuse something it
// returns an error wrapping ErrUnsaveable that names the first such path,
// in archive order. It tolerates files vanishing while it runs (the
// container may still be running): they are left out.
func Precheck(upper string) (Plan, error) {
	a := &archiver{links: map[[2]uint64]string{}}
	err := scanUpper(upper, false, a.put)
	p := Plan{Stats: a.st, Entries: a.entries, ArchiveBytes: a.n + int64(len(appendTrailer(nil, a.entries)))}
	return p, err
}

// archiver turns the scanned entries, in order, into archive entries: it
// writes them to w, or only counts their bytes when w is nil (Precheck).
type archiver struct {
	w       *bufio.Writer
	n       int64                // archive bytes so far
	links   map[[2]uint64]string // dev/ino of multiply-linked files -> first name
	hb      headerBuf
	out     []byte   // header blocks
	file    *os.File // w's writer, if a file
	pool    bufPool
	st      Stats
	entries int
}

func (a *archiver) put(it *scanItem) error {
	if it.socket {
		a.st.Sockets++
		return nil
	}
	h := &it.h
	switch {
	case h.whiteout:
		a.st.Whiteouts++
	case h.typ == typeDir:
		a.st.Dirs++
		if h.opaque {
			a.st.OpaqueDirs++
		}
	case h.typ == typeSymlink:
		a.st.Symlinks++
	case h.typ == typeFifo:
		a.st.Fifos++
	case h.typ == typeReg:
		a.st.Files++
		if it.nlink > 1 {
			key := [2]uint64{it.dev, it.ino}
			if first, ok := a.links[key]; ok {
				a.st.HardLinks++
				h.typ, h.link, h.size, h.sparse = typeLink, first, 0, nil
				break
			}
			a.links[key] = h.name
		}
		a.st.Bytes += h.size
		a.st.DataBytes += h.dataSize()
		if h.sparse != nil {
			a.st.SparseFiles++
		}
	}
	a.entries++
	if a.w == nil {
		n, err := a.hb.entrySize(h)
		if err != nil {
			return fmt.Errorf("saving %s: %w", it.path(), err)
		}
		a.n += n
		return nil
	}
	var err error
	if a.out, err = a.hb.appendHeader(a.out[:0], h); err != nil {
		return fmt.Errorf("saving %s: %w", it.path(), err)
	}
	var data int64
	if h.typ == typeReg {
		data = h.dataSize()
	}
	a.n += int64(len(a.out)) + data + blockPad(data)
	if _, err := a.w.Write(a.out); err != nil {
		return err
	}
	if data > 0 {
		if err := a.copyRegions(it.fd, h); err != nil {
			return fmt.Errorf("saving %s: %w", it.path(), err)
		}
	}
	_, err = a.w.Write(zeroBlock[:blockPad(data)])
	return err
}

// copyRegions copies the data of file fd described by h (all of it, or its
// sparse regions) to the archive: up to a chunk read straight into the
// buffer; more with sendfile when the archive is a file, else a chunk at a
// time while the previous one is written.
func (a *archiver) copyRegions(fd int, h *hdr) error {
	w := a.w
	if h.dataSize() > overlapChunk && a.file != nil && !noSendfile.Load() {
		if err := w.Flush(); err != nil {
			return err
		}
		regions := regionsOf(h)
		for i, r := range regions {
			for off, end := r.off, r.off+r.len; off < end; {
				n, err := unix.Sendfile(int(a.file.Fd()), fd, &off, int(min(end-off, 1<<30)))
				switch {
				case err == unix.EINTR:
					continue
				case (err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP) && n <= 0:
					noSendfile.Store(true)
					rest := append([]span{{off, end - off}}, regions[i+1:]...)
					return a.copyOverlapped(fd, rest)
				case err != nil:
					return fmt.Errorf("sendfile: %w", err)
				case n == 0:
					return errShort
				}
			}
		}
		return nil
	}
	if h.dataSize() <= overlapChunk {
		for _, r := range regionsOf(h) {
			for off, end := r.off, r.off+r.len; off < end; {
				if w.Available() == 0 {
					if err := w.Flush(); err != nil {
						return err
					}
				}
				b := w.AvailableBuffer()
				b = b[:min(int64(cap(b)), end-off)]
				n, err := preadFull(fd, b, off)
				if err != nil {
					return err
				}
				if _, err := w.Write(b[:n]); err != nil {
					return err
				}
				off += int64(n)
			}
		}
		return nil
	}
	return a.copyOverlapped(fd, regionsOf(h))
}

// copyOverlapped copies regions of file fd to the archive, reading a chunk
// while the previous one is written.
func (a *archiver) copyOverlapped(fd int, regions []span) error {
	w := a.w
	return copyOverlapped(&a.pool, regions, func(b []byte, off int64) error {
		_, err := preadFull(fd, b, off)
		return err
	}, func(b []byte, _ int64) error {
		// A whole chunk goes to w's writer as is (no copy into the
		// buffer) once the buffer is out of the way.
		if len(b) >= w.Size() && w.Buffered() > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		_, err := w.Write(b)
		return err
	})
}

// overlapChunk is the size of the chunks large files are copied in.
const overlapChunk = 1 << 20

// copyOverlapped copies regions of a large file chunk by chunk: fill reads
// the chunk at off into b, put writes it. put runs in a goroutine of its own
// while fill reads the next chunk, so that reading and writing (two copies
// through the kernel) use two cores.
func copyOverlapped(pool *bufPool, regions []span, fill, put func(b []byte, off int64) error) error {
	type chunk struct {
		b   []byte
		off int64
	}
	chunks, done := make(chan chunk, 2), make(chan error, 1)
	var failed atomic.Bool
	go func() {
		var err error
		for c := range chunks {
			if err == nil {
				if err = put(c.b, c.off); err != nil {
					failed.Store(true)
				}
			}
			pool.put(c.b)
		}
		done <- err
	}()
	var err error
	for _, r := range regions {
		for off, end := r.off, r.off+r.len; off < end && err == nil && !failed.Load(); {
			b := pool.get(int(min(overlapChunk, end-off)))
			if err = fill(b, off); err != nil {
				pool.put(b)
				break
			}
			chunks <- chunk{b, off}
			off += int64(len(b))
		}
	}
	close(chunks)
	if werr := <-done; err == nil {
		err = werr
	}
	return err
}

// scanItem is one entry of the upper directory, in archive order.
type scanItem struct {
	name  string // in its directory
	rel   string // in upper
	upper string
	dtype os.FileMode // type from the directory listing

	err    error
	h      hdr
	socket bool // skipped, counted
	gone   bool // vanished meanwhile (Precheck only): left out
	nlink  uint64
	dev    uint64
	ino    uint64
	fd     int // Save, regular file with data: open for the consumer
}

func (it *scanItem) path() string { return filepath.Join(it.upper, it.rel) }

func (it *scanItem) fail(err error) error {
	return fmt.Errorf("saving %s: %w", it.path(), err)
}

// release frees what the item holds.
func (it *scanItem) release() {
	if it.fd >= 0 {
		unix.Close(it.fd)
		it.fd = -1
	}
}

// scanChunk is a run of consecutive entries of one directory, handed out
// together (fewer hand-offs between goroutines). The walker makes it; a
// worker fills its items in and closes ready; the consumer then uses them.
// A directory's own entry is a chunk of one that the walker filled in
// (ready nil).
type scanChunk struct {
	items []scanItem
	dir   *dirRef // parent directory, until filled in
	ready chan struct{}
}

// chunkSize is the most entries in a chunk.
const chunkSize = 32

// dirRef is an open directory of upper shared by the chunks in it.
type dirRef struct {
	f    *os.File
	fd   int
	refs atomic.Int32
}

func newDirRef(f *os.File) *dirRef {
	d := &dirRef{f: f, fd: int(f.Fd())}
	d.refs.Store(1)
	return d
}

func (d *dirRef) acquire() *dirRef { d.refs.Add(1); return d }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		d.f.Close()
	}
}

// scanner walks upper for Save (read: regular files are opened and read)
// or Precheck. One goroutine walks, in archive order (directories sorted,
// parents first), and hands the entries but directories to workers, which
// do the per-file system calls; the caller's goroutine consumes the entries
// in order. On small files all of them are dominated by system calls.
type scanner struct {
	upper   string
	read    bool
	chunks  chan *scanChunk // to the consumer, in order
	jobs    chan *scanChunk // to the workers
	stop    chan struct{}
	stopped atomic.Bool
}

// workerCount is the number of goroutines doing per-file system calls (saving and applying):
// both cores of a small node, at most 8.
func workerCount() int { return min(max(runtime.GOMAXPROCS(0), 2), 8) }

// scanUpper walks upper, calling consume for each entry in archive order,
// and returns the first error: consume's, or that of the first entry (in
// archive order, so that Precheck and Save agree) that could not be read.
func scanUpper(upper string, read bool, consume func(*scanItem) error) error {
	f, err := os.Open(upper)
	if err != nil {
		return err
	}
	// Few chunks in flight: each item of a filled chunk (Save) holds its
	// file open until the consumer has copied it.
	s := &scanner{upper: upper, read: read, chunks: make(chan *scanChunk, 6),
		jobs: make(chan *scanChunk, 6), stop: make(chan struct{})}
	root := newDirRef(f)
	var wg sync.WaitGroup
	for range workerCount() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range s.jobs {
				for i := range c.items {
					if !s.stopped.Load() {
						s.fill(c.dir.fd, &c.items[i])
					}
				}
				c.dir.release()
				c.dir = nil
				close(c.ready)
			}
		}()
	}
	go func() {
		s.walk(root, "")
		root.release()
		close(s.jobs)
		close(s.chunks)
	}()
	var first error
	for c := range s.chunks {
		if c.ready != nil {
			<-c.ready
		}
		for i := range c.items {
			it := &c.items[i]
			if first == nil && !it.gone {
				if first = it.err; first == nil {
					first = consume(it)
				}
				if first != nil {
					s.stopped.Store(true)
					close(s.stop)
				}
			}
			it.release()
		}
	}
	wg.Wait()
	return first
}

// send queues c for the consumer and, if it is to be filled in, for the
// workers. It returns false once the consumer has stopped.
func (s *scanner) send(c *scanChunk) bool {
	select {
	case s.chunks <- c:
	case <-s.stop:
		if c.dir != nil {
			c.dir.release()
		}
		for i := range c.items {
			c.items[i].release()
		}
		return false
	}
	if c.ready != nil {
		s.jobs <- c // workers always drain jobs
	}
	return true
}

// walk queues the entries of directory d (rel in upper), sorted.
func (s *scanner) walk(d *dirRef, rel string) bool {
	ents, err := d.f.ReadDir(-1)
	if err != nil {
		return s.send(&scanChunk{items: []scanItem{{rel: rel, upper: s.upper, fd: -1,
			err: fmt.Errorf("saving %s: %w", filepath.Join(s.upper, rel), err)}}})
	}
	slices.SortFunc(ents, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	var c *scanChunk
	flush := func() bool {
		ok := c == nil || s.send(c)
		c = nil
		return ok
	}
	for _, e := range ents {
		name := e.Name()
		crel := name
		if rel != "" {
			crel = rel + "/" + name
		}
		it := scanItem{name: name, rel: crel, upper: s.upper, dtype: e.Type(), fd: -1}
		if !e.IsDir() {
			if c == nil {
				c = &scanChunk{items: make([]scanItem, 0, min(chunkSize, len(ents))), dir: d.acquire(), ready: make(chan struct{})}
			}
			if c.items = append(c.items, it); len(c.items) == chunkSize && !flush() {
				return false
			}
			continue
		}
		if !flush() {
			return false
		}
		dc := &scanChunk{items: []scanItem{it}}
		sub := s.dirItem(d, &dc.items[0])
		if !s.send(dc) || dc.items[0].err != nil {
			if sub != nil {
				sub.release()
			}
			return false
		}
		if sub != nil {
			ok := s.walk(sub, crel)
			sub.release()
			if !ok {
				return false
			}
		}
	}
	return flush()
}

// dirItem fills in the item of directory it.name of d and opens it.
func (s *scanner) dirItem(d *dirRef, it *scanItem) *dirRef {
	fd, err := unix.Openat(d.fd, it.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT && !s.read {
			it.gone = true
		} else {
			it.err = it.fail(err)
		}
		return nil
	}
	f := os.NewFile(uintptr(fd), it.name)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		it.err = it.fail(err)
		return nil
	}
	xa, err := fdXattrs(fd, it.name)
	if err == nil {
		err = s.header(it, &st, xa)
	}
	if err != nil {
		f.Close()
		it.err = it.fail(err)
		return nil
	}
	return newDirRef(f)
}

// fill does the system calls for a non-directory entry: stat, xattrs, and
// for a regular file its holes and, for Save, its contents.
func (s *scanner) fill(dfd int, it *scanItem) {
	var st unix.Stat_t
	var err error
	fd := -1
	defer func() {
		if it.fd < 0 && fd >= 0 {
			unix.Close(fd)
		}
	}()
	if s.read && it.dtype.IsRegular() {
		// Opened (never through a symlink), then read through the
		// descriptor: cheaper, and surely the same inode.
		fd, err = unix.Openat(dfd, it.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err == nil {
			if err = unix.Fstat(fd, &st); err != nil {
				it.err = it.fail(err)
				return
			}
		} else if err != unix.ELOOP {
			it.err = it.fail(err)
			return
		}
		if fd >= 0 && st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			fd = -1
		}
	}
	if fd < 0 {
		if err := unix.Fstatat(dfd, it.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT && !s.read {
				it.gone = true
			} else {
				it.err = it.fail(err)
			}
			return
		}
	}
	var xa map[string][]byte
	if fd >= 0 {
		xa, err = fdXattrs(fd, it.name)
	} else {
		xa, err = getXattrs(dfd, it.name)
	}
	if err == nil {
		err = s.header(it, &st, xa)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) && !s.read {
			it.gone = true
		} else {
			it.err = it.fail(err)
		}
		return
	}
	h := &it.h
	switch {
	case it.socket:
		return
	case h.typ == typeSymlink:
		if h.link, err = readlinkAt(dfd, it.name); err != nil {
			it.err = it.fail(err)
		}
		return
	case h.typ != typeReg || h.whiteout:
		return
	}
	it.nlink, it.dev, it.ino = uint64(st.Nlink), st.Dev, st.Ino
	if st.Size == 0 {
		return
	}
	sparseCandidate := st.Blocks*512 < st.Size
	if fd < 0 && (s.read || sparseCandidate) {
		// Here only for a file that was not a regular file when opened
		// (Save), or for Precheck: opened through O_PATH, checked, then
		// opened for reading, so that a file swapped for a device node
		// meanwhile is never opened.
		if fd, err = reopenRegular(dfd, it.name, &st); err != nil {
			if err == unix.ENOENT && !s.read {
				it.gone = true
			} else {
				it.err = it.fail(err)
			}
			return
		}
	}
	if sparseCandidate {
		if h.sparse, err = dataRegions(fd, st.Size); err != nil {
			it.err = it.fail(err)
			return
		}
	}
	if !s.read {
		return
	}
	// The consumer reads it, straight into the archive's buffer (a hard
	// link to an earlier file is not even read).
	it.fd, fd = fd, -1
}

// regionsOf returns the data regions of regular file h.
func regionsOf(h *hdr) []span {
	if h.sparse != nil {
		return h.sparse
	}
	return []span{{0, h.size}}
}

func preadFull(fd int, b []byte, off int64) (int, error) {
	got := 0
	for got < len(b) {
		n, err := unix.Pread(fd, b[got:], off+int64(got))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return got, fmt.Errorf("reading: %w", err)
		}
		if n == 0 {
			return got, errShort
		}
		got += n
	}
	return got, nil
}

// reopenRegular opens dfd/name for reading only if it is still the regular
// file st describes, without opening anything else even for a moment.
func reopenRegular(dfd int, name string, st *unix.Stat_t) (int, error) {
	p, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(p)
	var pst unix.Stat_t
	if err := unix.Fstat(p, &pst); err != nil {
		return -1, err
	}
	if pst.Mode&unix.S_IFMT != unix.S_IFREG || pst.Ino != st.Ino || pst.Dev != st.Dev {
		return -1, errors.New("changed while saving")
	}
	return unix.Open(procFD(p), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

// header fills in it.h (and it.socket) from the stat and xattrs of the
// entry, or fails for what cannot be saved.
func (s *scanner) header(it *scanItem, st *unix.Stat_t, xa map[string][]byte) error {
	h := &it.h
	*h = hdr{name: it.rel, mode: int64(st.Mode & 0o7777), uid: int64(st.Uid), gid: int64(st.Gid),
		mtime: st.Mtim, atime: st.Atim}
	var ovl map[string]string
	for k, v := range xa {
		if strings.HasPrefix(k, ovlXattr) && len(k) > len(ovlXattr) {
			if ovl == nil {
				ovl = map[string]string{}
			}
			ovl[k[len(ovlXattr):]] = string(v)
		} else if keepXattr(k) {
			h.xattrs = append(h.xattrs, xattr{k, v})
		}
	}
	sortXattrs(h.xattrs)
	for _, k := range []string{"redirect", "metacopy"} {
		if _, ok := ovl[k]; ok {
			return errUnsaveable("unsupported overlay feature (trusted.overlay.%s): data is not in the upper directory", k)
		}
	}
	whiteout := func() {
		*h = hdr{typ: typeReg, name: it.rel, whiteout: true}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev != 0 {
			return errUnsaveable("device node (char %d:%d)", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		whiteout()
	case unix.S_IFREG:
		if _, ok := ovl["whiteout"]; ok && st.Size == 0 {
			whiteout()
			break
		}
		h.typ, h.size = typeReg, st.Size
	case unix.S_IFLNK:
		h.typ = typeSymlink
	case unix.S_IFDIR:
		if it.dtype&os.ModeDir == 0 {
			return errors.New("changed while saving (now a directory)")
		}
		h.typ, h.name = typeDir, it.rel+"/"
		h.opaque = ovl["opaque"] == "y" // "x" only means "has xattr whiteouts"
	case unix.S_IFIFO:
		h.typ = typeFifo
	case unix.S_IFSOCK:
		it.socket = true
	case unix.S_IFBLK:
		return errUnsaveable("device node (block %d:%d)", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	default:
		return errUnsaveable("file of unknown type %#o", st.Mode&unix.S_IFMT)
	}
	return nil
}

// bufPool recycles file buffers by size class.
type bufPool struct {
	classes [10]sync.Pool // *[]byte of 2 KiB << i, up to overlapChunk
}

// holders recycles the *[]byte that carry buffers through a sync.Pool, so
// that putting one back allocates nothing.
var holders sync.Pool

func (p *bufPool) class(n int) int {
	c := 0
	for 2048<<c < n {
		c++
	}
	return c
}

func (p *bufPool) get(n int) []byte {
	c := p.class(n)
	if c >= len(p.classes) {
		return make([]byte, n)
	}
	if bp, ok := p.classes[c].Get().(*[]byte); ok {
		b := *bp
		*bp = nil
		holders.Put(bp)
		return b[:n]
	}
	return make([]byte, n, 2048<<c)
}

func (p *bufPool) put(b []byte) {
	c := p.class(cap(b))
	if c >= len(p.classes) || cap(b) != 2048<<c {
		return
	}
	bp, ok := holders.Get().(*[]byte)
	if !ok {
		bp = new([]byte)
	}
	*bp = b[:cap(b)]
	p.classes[c].Put(bp)
}
