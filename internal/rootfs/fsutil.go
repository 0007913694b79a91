package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procPath names dirfd/name for the l*xattr calls, which have no *at form
// before Linux 6.13: the kernel resolves the fd's magic link to the directory
// itself and, the l* calls not following the last component, never leaves it.
func procPath(dirfd int, name string) string {
	return procFD(dirfd) + "/" + name
}

// procFD names the magic link of descriptor fd.
func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// dataRegions finds the data regions of regular file fd of size size with
// lseek SEEK_DATA/SEEK_HOLE, widened to 512-byte boundaries (GNU tar wants
// them so; file systems report whole blocks anyway) and merged. It returns
// nil when the file has no hole (or the file system cannot tell), or more
// than maxSpans regions (it is then stored whole); otherwise regions in the
// format of hdr.sparse (a last empty region at size if it ends in a hole).
// Its cost is in the number of regions, not the size.
func dataRegions(fd int, size int64) ([]span, error) {
	var spans []span
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO { // no data after off
			break
		}
		if err == unix.EINVAL || err == unix.EOPNOTSUPP {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("seeking data: %w", err)
		}
		if data >= size { // grew meanwhile
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seeking hole: %w", err)
		}
		start, end := data&^(blockSize-1), min(size, (hole+blockSize-1)&^(blockSize-1))
		if n := len(spans); n > 0 && spans[n-1].off+spans[n-1].len >= start {
			spans[n-1].len = end - spans[n-1].off
		} else {
			if n >= maxSpans {
				return nil, nil
			}
			spans = append(spans, span{start, end - start})
		}
		off = max(hole, end)
	}
	if len(spans) == 1 && spans[0] == (span{0, size}) {
		return nil, nil
	}
	if n := len(spans); n == 0 || spans[n-1].off+spans[n-1].len < size {
		spans = append(spans, span{size, 0})
	}
	return spans, nil
}

// getXattrs returns all xattrs of dirfd/name (not following a symlink).
func getXattrs(dirfd int, name string) (map[string][]byte, error) {
	if !noXattrAt.Load() {
		xa, err := readXattrs(name, func(b []byte) (int, error) { return listxattrAt(dirfd, name, b) },
			func(k string, b []byte) (int, error) { return getxattrAt(dirfd, name, k, b) })
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return xa, err
		}
		noXattrAt.Store(true) // before Linux 6.13, or filtered
	}
	p := procPath(dirfd, name)
	return readXattrs(name, func(b []byte) (int, error) { return unix.Llistxattr(p, b) },
		func(k string, b []byte) (int, error) { return unix.Lgetxattr(p, k, b) })
}

// noXattrAt is set once listxattrat or getxattrat failed with ENOSYS (or
// EPERM, as some seccomp filters answer for system calls they do not know).
var noXattrAt atomic.Bool

// The *xattrat system calls of Linux 6.13 (the same numbers on every
// architecture), which x/sys does not offer: cheaper than resolving a
// /proc/self/fd path.
const (
	sysGetxattrat  = 464
	sysListxattrat = 465
)

func listxattrAt(dirfd int, name string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var b unsafe.Pointer
	if len(buf) > 0 {
		b = unsafe.Pointer(&buf[0])
	}
	n, _, e := unix.Syscall6(sysListxattrat, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW,
		uintptr(b), uintptr(len(buf)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// xattrArgs is struct xattr_args.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

func getxattrAt(dirfd int, name, attr string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return 0, err
	}
	args := xattrArgs{size: uint32(len(buf))}
	if len(buf) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	n, _, e := unix.Syscall6(sysGetxattrat, uintptr(dirfd), uintptr(unsafe.Pointer(p)), unix.AT_SYMLINK_NOFOLLOW,
		uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	runtime.KeepAlive(buf)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// fdXattrs returns all xattrs of open file fd, cheaper than by name.
func fdXattrs(fd int, name string) (map[string][]byte, error) {
	return readXattrs(name, func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
		func(k string, b []byte) (int, error) { return unix.Fgetxattr(fd, k, b) })
}

// listBufs recycles the buffers of readXattrs: most files have no xattr,
// and their list should cost no allocation.
var listBufs = sync.Pool{New: func() any { b := make([]byte, 1024); return &b }}

func readXattrs(name string, list func([]byte) (int, error), get func(string, []byte) (int, error)) (map[string][]byte, error) {
	pb := listBufs.Get().(*[]byte)
	defer listBufs.Put(pb)
	buf := *pb
	var n int
	var err error
	for {
		n, err = list(buf)
		if err != unix.ERANGE {
			break
		}
		buf = make([]byte, 2*len(buf))
		*pb = buf
	}
	if err == unix.ENOTSUP {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr %s: %w", name, err)
	}
	if n == 0 {
		return nil, nil
	}
	var xa map[string][]byte
	for _, k := range bytes.Split(buf[:n], []byte{0}) {
		if len(k) == 0 {
			continue
		}
		v := make([]byte, 256)
		for {
			n, err = get(string(k), v)
			if err != unix.ERANGE {
				break
			}
			v = make([]byte, 2*len(v))
		}
		if err == unix.ENODATA {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s %s: %w", name, k, err)
		}
		if xa == nil {
			xa = map[string][]byte{}
		}
		xa[string(k)] = v[:n]
	}
	return xa, nil
}

// setXattrs sets the xattrs want on dirfd/name and removes the others for
// which prune is true. A nil prune means a new file: nothing to remove.
func setXattrs(dirfd int, name string, want map[string][]byte, prune func(string) bool) error {
	var have map[string][]byte
	if prune != nil {
		var err error
		if have, err = getXattrs(dirfd, name); err != nil {
			return err
		}
	}
	p := procPath(dirfd, name)
	for k := range have {
		if _, ok := want[k]; !ok && prune(k) {
			if err := unix.Lremovexattr(p, k); err != nil && err != unix.ENODATA {
				return fmt.Errorf("removexattr %s %s: %w", name, k, err)
			}
		}
	}
	for k, v := range want {
		if hv, ok := have[k]; ok && bytes.Equal(hv, v) {
			continue // e.g. an identical security label the LSM may refuse to rewrite
		}
		if err := unix.Lsetxattr(p, k, v, 0); err != nil {
			return fmt.Errorf("setxattr %s %s: %w", name, k, err)
		}
	}
	return nil
}

// chmodAt changes the mode of dirfd/name, which must not be a symlink,
// without following a symlink should one have been planted there.
func chmodAt(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP {
		return err
	}
	// Before Linux 6.6 (no fchmodat2): chmod through an O_PATH descriptor.
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return unix.Chmod(procFD(fd), mode)
}

// openDirAt opens dirfd/name as a directory for reading, refusing symlinks.
func openDirAt(dirfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// removeAt removes dirfd/name and, if it is a directory, everything below it.
// A missing name is not an error.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return fmt.Errorf("unlink %s: %w", name, err)
	}
	d, err := openDirAt(dirfd, name)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	names, err := d.Readdirnames(-1)
	for _, n := range names {
		if err == nil {
			err = removeAt(int(d.Fd()), n)
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return fmt.Errorf("rmdir %s: %w", name, err)
	}
	return nil
}

// node is the saved state of one file for rollback: its metadata, and the
// contents of a regular file as a range of the undo directory's data file.
// It is journaled as JSON (see journal.go).
type node struct {
	mode       uint32 // st_mode, with type
	uid, gid   uint32
	rdev       uint64
	atim, mtim unix.Timespec
	xattrs     map[string][]byte
	link       string           // symlink target
	off, size  int64            // regular file: its contents in the data file
	sparse     bool             // ... a range with its holes
	kids       map[string]*node // directory, when saved with its contents
}

// restore creates dirfd/name (which must not exist) as n was, file contents
// coming from data.
func restore(dirfd int, name string, n *node, data *os.File) error {
	var err error
	switch n.mode & unix.S_IFMT {
	case unix.S_IFREG:
		err = createFile(dirfd, name, func(dst *os.File) error {
			if n.sparse {
				return copySparse(dst, data, n.off, n.size)
			}
			c, err := io.Copy(dst, io.NewSectionReader(data, n.off, n.size))
			if err == nil && c != n.size {
				err = fmt.Errorf("backup data truncated (%d of %d bytes)", c, n.size)
			}
			return err
		})
	case unix.S_IFLNK:
		err = unix.Symlinkat(n.link, dirfd, name)
	case unix.S_IFDIR:
		if err = unix.Mkdirat(dirfd, name, 0o700); err != nil {
			break
		}
		var d *os.File
		if d, err = openDirAt(dirfd, name); err != nil {
			break
		}
		for k, kid := range n.kids {
			if err = restore(int(d.Fd()), k, kid, data); err != nil {
				break
			}
		}
		d.Close()
	default: // device nodes, fifos, sockets of the new image
		err = unix.Mknodat(dirfd, name, n.mode, int(n.rdev))
	}
	if err != nil {
		return fmt.Errorf("restoring %s: %w", name, err)
	}
	return setMeta(dirfd, name, n, nil)
}

// setMeta gives dirfd/name the owner, mode, xattrs and times of n, removing
// the xattrs selected by prune that n does not have (see setXattrs). Order
// matters: chown clears setuid bits and file capabilities, so it goes first.
func setMeta(dirfd int, name string, n *node, prune func(string) bool) error {
	if err := unix.Fchownat(dirfd, name, int(n.uid), int(n.gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if n.mode&unix.S_IFMT != unix.S_IFLNK {
		if err := chmodAt(dirfd, name, n.mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", name, err)
		}
	}
	if err := setXattrs(dirfd, name, n.xattrs, prune); err != nil {
		return err
	}
	return utimesAt(dirfd, name, n.atim, n.mtim)
}

func utimesAt(dirfd int, name string, atim, mtim unix.Timespec) error {
	if err := unix.UtimesNanoAt(dirfd, name, []unix.Timespec{atim, mtim}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes %s: %w", name, err)
	}
	return nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", fmt.Errorf("readlink %s: %w", name, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// createFile creates dirfd/name exclusively (never through a symlink) and
// lets fill write it.
func createFile(dirfd int, name string, fill func(*os.File) error) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	err = fill(f)
	return errors.Join(err, f.Close())
}

// copyRanges copies the regions of src to the same offsets, plus base, of
// dst.
func copyRanges(dst, src *os.File, base int64, regions []span) error {
	buf := make([]byte, 1<<20)
	for _, r := range regions {
		for off, end := r.off, r.off+r.len; off < end; {
			b := buf[:min(int64(len(buf)), end-off)]
			n, err := preadFull(int(src.Fd()), b, off)
			if err != nil {
				return err
			}
			if err := pwriteFull(int(dst.Fd()), b[:n], base+off); err != nil {
				return err
			}
			off += int64(n)
		}
	}
	return nil
}

// copySparse makes dst the size bytes of src from off, holes included:
// only what SEEK_DATA finds in src is written, then the size is set.
func copySparse(dst, src *os.File, off, size int64) error {
	var regions []span
	for pos, end := off, off+size; pos < end; {
		d, err := unix.Seek(int(src.Fd()), pos, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break
		}
		if err != nil {
			return fmt.Errorf("seeking data in backup: %w", err)
		}
		if d >= end {
			break
		}
		h, err := unix.Seek(int(src.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seeking hole in backup: %w", err)
		}
		h = min(h, end)
		regions = append(regions, span{d, h - d})
		pos = h
	}
	if err := dst.Truncate(size); err != nil {
		return err
	}
	if err := copyRanges(dst, src, -off, regions); err != nil {
		return fmt.Errorf("copying from backup: %w", err)
	}
	return nil
}

// readUmask returns the process's umask from /proc/self/status (Linux 4.7
// and later; reading it with umask(2) would change it meanwhile for every
// thread), or -1.
func readUmask() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return int(m)
			}
		}
	}
	return -1
}

// pwriteFull writes all of b at offset off of file fd.
func pwriteFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// rawFD reads and writes a file descriptor directly: os.NewFile costs an
// fcntl and an epoll registration per file, noticeable over thousands of
// small files. The caller closes the descriptor.
type rawFD int

func (f rawFD) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), p)
		if err == unix.EINTR {
			continue
		}
		if n == 0 && err == nil && len(p) > 0 {
			return 0, io.EOF
		}
		return max(n, 0), err
	}
}

func (f rawFD) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(int(f), p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}
