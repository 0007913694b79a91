package rootfs

import (
	"archive/tar"
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Save writes the changes recorded in the overlay upper directory upper to w
// as an archive in the format described in the package documentation, and
// returns what it wrote. It never follows a symlink inside upper and never
// reads outside it.
//
// Save refuses (error naming the path) fifos, sockets and device nodes other
// than whiteouts, and the overlay features whose data is not in upper
// (trusted.overlay.redirect renamed directories, trusted.overlay.metacopy
// metadata-only copies). It must run as root: without CAP_SYS_ADMIN the
// trusted.overlay.* xattrs marking opaque directories are invisible.
// Overlays mounted with "userxattr" (user.overlay.*) are not supported.
func Save(upper string, w io.Writer) (Stats, error) {
	d, err := os.Open(upper)
	if err != nil {
		return Stats{}, err
	}
	// Walking and reading files (here) overlaps with writing the archive
	// (below): on small files both are dominated by system calls.
	s := &saver{upper: upper, links: map[[2]uint64]string{},
		items: make(chan saveItem, 16), stop: make(chan struct{}), bufs: make(chan []byte, 24)}
	var walkErr error
	go func() {
		walkErr = s.walk(d, "")
		d.Close()
		close(s.items)
	}()
	bw := bufio.NewWriterSize(w, 1<<20) // headers are 512-byte writes
	tw := tar.NewWriter(bw)
	buf := make([]byte, 256<<10)
	var werr error
	for it := range s.items {
		if werr == nil {
			if werr = it.put(tw, buf); werr != nil {
				werr = s.fail(it.h.Name, "%v", werr)
				close(s.stop)
			}
		}
		if it.done != nil {
			close(it.done)
		} else if it.data != nil {
			select {
			case s.bufs <- it.data[:cap(it.data)]:
			default:
			}
		}
	}
	if werr != nil || walkErr != nil { // no trailer: a partial archive must not look complete
		return s.st, cmp.Or(werr, walkErr)
	}
	end := &tar.Header{Typeflag: tar.TypeXGlobalHeader, Format: tar.FormatPAX,
		PAXRecords: map[string]string{paxEnd: strconv.Itoa(s.entries)}}
	if err := tw.WriteHeader(end); err != nil {
		return s.st, err
	}
	if err := tw.Close(); err != nil {
		return s.st, err
	}
	return s.st, bw.Flush()
}

type saver struct {
	upper   string
	links   map[[2]uint64]string // dev/ino of multiply-linked files -> first name
	items   chan saveItem        // to the archive writer
	stop    chan struct{}        // closed when the archive writer failed
	bufs    chan []byte          // recycled small-file buffers
	st      Stats
	entries int
}

// saveItem is one archive entry: a header and, for a regular file, its
// contents either read already (data) or to be read from fd by the writer,
// which then closes done.
type saveItem struct {
	h    *tar.Header
	data []byte
	fd   int
	done chan struct{}
}

func (it *saveItem) put(tw *tar.Writer, buf []byte) error {
	if err := tw.WriteHeader(it.h); err != nil {
		return err
	}
	if it.data != nil {
		_, err := tw.Write(it.data)
		return err
	}
	if it.done == nil {
		return nil
	}
	// (Hiding the tar writer's ReadFrom so that our large buffer is used.)
	n, err := io.CopyBuffer(struct{ io.Writer }{tw}, io.LimitReader(rawFD(it.fd), it.h.Size), buf)
	if err == nil && n != it.h.Size {
		err = errors.New("file shrank while saving")
	}
	return err
}

var errStopped = errors.New("stopped")

// send hands an entry to the archive writer and, for a file it reads
// itself, waits until it has.
func (s *saver) send(it saveItem) error {
	s.entries++
	select {
	case s.items <- it:
	case <-s.stop:
		return errStopped
	}
	if it.done != nil {
		<-it.done
	}
	return nil
}

func (s *saver) fail(rel string, format string, args ...any) error {
	return fmt.Errorf("saving %s: %s", filepath.Join(s.upper, rel), fmt.Sprintf(format, args...))
}

func (s *saver) write(h *tar.Header) error { return s.send(saveItem{h: h}) }

// walk archives the contents of directory d (rel inside upper), sorted so
// that the archive is reproducible.
func (s *saver) walk(d *os.File, rel string) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return s.fail(rel, "%v", err)
	}
	sort.Strings(names)
	dfd := int(d.Fd())
	for _, name := range names {
		if err := s.entry(dfd, name, path.Join(rel, name)); err != nil {
			return err
		}
	}
	return nil
}

func (s *saver) entry(dfd int, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return s.fail(rel, "%v", err)
	}
	// Regular files and directories are opened (never through a symlink) and
	// then read through the descriptor: cheaper, and surely the same inode.
	fd := -1
	var xa map[string][]byte
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR:
		if fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err != nil {
			return s.fail(rel, "%v", err)
		}
		defer func() {
			if fd >= 0 {
				unix.Close(fd)
			}
		}()
		var fst unix.Stat_t
		if err := unix.Fstat(fd, &fst); err != nil || fst.Ino != st.Ino || fst.Dev != st.Dev {
			return s.fail(rel, "changed while saving")
		}
		xa, err = fdXattrs(fd, name)
	default:
		xa, err = getXattrs(dfd, name)
	}
	if err != nil {
		return s.fail(rel, "%v", err)
	}
	h := &tar.Header{Name: rel, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: ts(st.Mtim), AccessTime: ts(st.Atim), Format: tar.FormatPAX}
	ovl := map[string]string{}
	for k, v := range xa {
		if len(k) > len(ovlXattr) && k[:len(ovlXattr)] == ovlXattr {
			ovl[k[len(ovlXattr):]] = string(v)
		} else if keepXattr(k) {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[paxXattr+k] = string(v)
		}
	}
	for _, k := range []string{"redirect", "metacopy"} {
		if _, ok := ovl[k]; ok {
			return s.fail(rel, "unsupported overlay feature (trusted.overlay.%s): data is not in the upper directory", k)
		}
	}
	whiteout := func() error {
		s.st.Whiteouts++
		return s.write(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Format: tar.FormatPAX,
			PAXRecords: map[string]string{paxWhiteout: "1"}})
	}

	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev != 0 {
			return s.fail(rel, "device node")
		}
		return whiteout()
	case unix.S_IFREG:
		if _, ok := ovl["whiteout"]; ok && st.Size == 0 {
			return whiteout()
		}
		s.st.Files++
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := s.links[key]; ok {
				h.Typeflag, h.Linkname = tar.TypeLink, first
				return s.write(h)
			}
			s.links[key] = rel
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		s.st.Bytes += st.Size
		if st.Size > smallFile {
			return s.send(saveItem{h: h, fd: fd, done: make(chan struct{})})
		}
		var buf []byte
		select {
		case buf = <-s.bufs:
		default:
			buf = make([]byte, smallFile)
		}
		if _, err := io.ReadFull(rawFD(fd), buf[:st.Size]); err != nil {
			return s.fail(rel, "reading: %v", err)
		}
		return s.send(saveItem{h: h, data: buf[:st.Size]})
	case unix.S_IFLNK:
		s.st.Symlinks++
		if h.Linkname, err = readlinkAt(dfd, name); err != nil {
			return s.fail(rel, "%v", err)
		}
		h.Typeflag = tar.TypeSymlink
		return s.write(h)
	case unix.S_IFDIR:
		s.st.Dirs++
		if ovl["opaque"] == "y" { // "x" only means "has xattr whiteouts"
			s.st.OpaqueDirs++
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[paxOpaque] = "1"
		}
		h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		if err := s.write(h); err != nil {
			return err
		}
		d := os.NewFile(uintptr(fd), name) // for Readdirnames; now owns fd
		fd = -1
		defer d.Close()
		return s.walk(d, rel)
	case unix.S_IFIFO:
		return s.fail(rel, "fifo")
	case unix.S_IFSOCK:
		return s.fail(rel, "socket")
	default:
		return s.fail(rel, "device node")
	}
}

func ts(t unix.Timespec) time.Time { return time.Unix(t.Sec, t.Nsec) }
