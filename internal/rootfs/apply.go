package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Apply applies an archive made by Save to root, the merged rootfs of the new
// container (an overlay mount point or a plain directory), so that root then
// looks like the old container's rootfs did.
//
// Path resolution: every entry's parent must be an earlier directory entry of
// the archive (Save always writes them), and is then opened with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS). A directory entry replaces
// whatever non-directory the new rootfs has at that path (e.g. a symlink
// planted by the new image), so a symlink is never traversed; an archive that
// puts a child under a symlink (a -> /etc, then a/passwd) is refused as
// ErrDamaged rather than resolved inside root.
//
// Refused as ErrDamaged: absolute or unclean names ("..", "./x", "a//b"),
// children of a non-directory entry, device nodes, fifos, sockets and any
// other entry type, hard links to anything but an earlier regular file of the
// archive, xattrs outside user.*, security.*, system.posix_acl_*, unknown
// TARDIS.* records, and truncation (checked with the TARDIS.end trailer).
//
// All-or-nothing: before changing a path Apply saves what was there (its
// metadata in memory, file contents under backupDir, which must be outside
// root). On error it rolls back and returns the error joined with any rollback
// error. Afterwards root has the same names, types, contents, modes, owners,
// xattrs and file times as before; the times of root itself and of
// directories that were removed and recreated may differ, and a replaced
// file that had other hard links comes back as a separate copy. On an overlay,
// rolled-back changes leave copies in the upper directory (merged view
// identical).
//
// If the rollback fails too, the Undo is returned with the error so that
// Rollback can be retried. On success the returned Undo can still put root
// back (Rollback) or drop the backup (Commit). The backup lives only as long
// as the Undo: it is not persisted, so a crash before Commit leaves root
// applied.
func Apply(root string, r io.Reader, backupDir string) (*Undo, Stats, error) {
	if err := checkOutside(root, backupDir); err != nil {
		return nil, Stats{}, err
	}
	bdir, err := os.MkdirTemp(backupDir, "tardis-undo-")
	if err != nil {
		return nil, Stats{}, err
	}
	u := &Undo{root: root, bdir: bdir}
	a := &applier{u: u, store: store{dir: bdir}, created: map[string]bool{}, pfd: -1,
		dirs: map[string]bool{".": true}, files: map[string]bool{}, buf: make([]byte, 256<<10)}
	if a.rootfd, err = unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		// tar reads 512-byte blocks; buffer them (Apply consumes r anyway).
		err = a.run(tar.NewReader(bufio.NewReaderSize(r, 1<<20)))
		a.parent("")
		unix.Close(a.rootfd)
	}
	if err != nil {
		err = fmt.Errorf("applying rootfs archive to %s: %w", root, err)
		if rerr := u.Rollback(); rerr != nil {
			// The Undo is returned so that the caller can retry Rollback.
			return u, a.st, errors.Join(err, fmt.Errorf("rollback (backup kept in %s): %w", bdir, rerr))
		}
		return nil, a.st, err
	}
	return u, a.st, nil
}

// checkOutside refuses a backup directory inside root: the archive could
// then overwrite the backup.
func checkOutside(root, backupDir string) error {
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	b, err := filepath.EvalSymlinks(backupDir)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(r, b); err != nil || rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("backup directory %s must be outside rootfs %s", backupDir, root)
	}
	return nil
}

// record is one journal step: the state of path just before Apply changed it.
type record struct {
	path string
	old  *node // nil: path did not exist (rollback removes it)
	meta bool  // old holds only metadata: the directory itself was kept
}

// Undo rolls back or commits a successful Apply.
type Undo struct {
	mu        sync.Mutex
	root      string
	bdir      string
	journal   []record
	committed bool
}

// Rollback restores root as it was before Apply, undoing the journal
// backwards. It is idempotent; after a failure it can be retried and resumes
// where it stopped. It fails after Commit.
func (u *Undo) Rollback() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.committed {
		return errors.New("rootfs change already committed")
	}
	if len(u.journal) > 0 {
		rootfd, err := unix.Open(u.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(rootfd)
		for len(u.journal) > 0 {
			if err := undo(rootfd, u.journal[len(u.journal)-1]); err != nil {
				return err
			}
			u.journal = u.journal[:len(u.journal)-1]
		}
	}
	return os.RemoveAll(u.bdir)
}

// Commit forgets the backup, removing what Apply stored in backupDir.
func (u *Undo) Commit() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.committed, u.journal = true, nil
	return os.RemoveAll(u.bdir)
}

func undo(rootfd int, rec record) error {
	pfd, err := openDir(rootfd, path.Dir(rec.path))
	if err != nil {
		return fmt.Errorf("rollback of %s: %w", rec.path, err)
	}
	defer unix.Close(pfd)
	base := path.Base(rec.path)
	switch {
	case rec.old == nil:
		err = removeAt(pfd, base)
	case rec.meta:
		err = setMeta(pfd, base, rec.old, func(string) bool { return true })
	default:
		if err = removeAt(pfd, base); err == nil {
			err = restore(pfd, base, rec.old)
		}
	}
	if err != nil {
		return fmt.Errorf("rollback of %s: %w", rec.path, err)
	}
	return nil
}

// openDir opens directory rel of root without following any symlink and
// without leaving root.
func openDir(rootfd int, rel string) (int, error) {
	return unix.Openat2(rootfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

type applier struct {
	u        *Undo
	store    store
	rootfd   int
	created  map[string]bool // paths this Apply created: nothing under them needs a backup
	dirs     map[string]bool // directory entries so far: the only valid parents
	files    map[string]bool // regular file entries so far: the only valid hard link targets
	dirTimes []dirTime
	buf      []byte
	st       Stats
	pdir     string // parent directory of the previous entry ("": none) ...
	pfd      int    // ... and its descriptor, reused for its siblings
}

type dirTime struct {
	name       string
	atim, mtim unix.Timespec
}

// applyItem is one archive entry for the goroutine changing root. A regular
// file's contents are either in data or, for a large file, still in the tar
// reader, which the producer then leaves alone until done is closed.
type applyItem struct {
	h    *tar.Header
	data []byte
	tr   *tar.Reader
	done chan struct{}
}

// run reads the archive here while another goroutine changes root: on small
// files both are dominated by system calls. It returns once that goroutine
// is finished, so that a rollback never runs concurrently with it.
func (a *applier) run(tr *tar.Reader) error {
	items, failed, done := make(chan applyItem, 16), make(chan struct{}), make(chan struct{})
	bufs := make(chan []byte, 24)
	var werr error
	go func() {
		defer close(done)
		for it := range items {
			if werr == nil {
				var r io.Reader = bytes.NewReader(it.data)
				if it.tr != nil {
					r = it.tr
				}
				if werr = a.entry(r, it.h); werr != nil {
					close(failed)
				}
			}
			if it.done != nil {
				close(it.done)
			} else if it.data != nil {
				select {
				case bufs <- it.data[:cap(it.data)]:
				default:
				}
			}
		}
	}()
	rerr := a.read(tr, items, failed, bufs)
	close(items)
	<-done
	if werr != nil {
		return werr
	}
	if rerr != nil {
		return rerr
	}
	// Directory times last: creating children changed them. Deepest first.
	for i := len(a.dirTimes) - 1; i >= 0; i-- {
		dt := a.dirTimes[i]
		pfd, err := a.parent(path.Dir(dt.name))
		if err != nil {
			return err
		}
		if err := utimesAt(pfd, path.Base(dt.name), dt.atim, dt.mtim); err != nil {
			return err
		}
	}
	return nil
}

// read parses the archive into items, checking its framing: the TARDIS.end
// trailer must come, last, with the right count.
func (a *applier) read(tr *tar.Reader, items chan<- applyItem, failed <-chan struct{}, bufs chan []byte) error {
	entries, ended := 0, false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if !ended {
				return damaged("truncated (no %s trailer)", paxEnd)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDamaged, err)
		}
		if ended {
			return damaged("entry %q after the %s trailer", h.Name, paxEnd)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			if h.PAXRecords[paxEnd] != strconv.Itoa(entries) {
				return damaged("trailer says %q entries, archive has %d", h.PAXRecords[paxEnd], entries)
			}
			ended = true
			continue
		}
		entries++
		it := applyItem{h: h}
		if h.Typeflag == tar.TypeReg && h.Size > smallFile {
			it.tr, it.done = tr, make(chan struct{})
		} else if h.Typeflag == tar.TypeReg && h.Size > 0 {
			select {
			case it.data = <-bufs:
			default:
				it.data = make([]byte, smallFile)
			}
			it.data = it.data[:h.Size]
			if _, err := io.ReadFull(tr, it.data); err != nil {
				return damaged("entry %q: %v", h.Name, err)
			}
		}
		select {
		case items <- it:
		case <-failed:
			return nil
		}
		if it.done != nil {
			<-it.done
		}
	}
}

// parent returns a descriptor for directory rel of root (see openDir),
// reusing the previous one when rel is the same directory: archives list
// siblings together. parent("") closes it.
func (a *applier) parent(rel string) (int, error) {
	if a.pfd >= 0 && rel == a.pdir {
		return a.pfd, nil
	}
	if a.pfd >= 0 {
		unix.Close(a.pfd)
		a.pfd = -1
	}
	if rel == "" {
		return -1, nil
	}
	fd, err := openDir(a.rootfd, rel)
	if err != nil {
		return -1, fmt.Errorf("opening %q in rootfs: %w", rel, err)
	}
	a.pdir, a.pfd = rel, fd
	return fd, nil
}

// removed must be called after removing anything: the cached parent may be
// (under) what was removed. The descriptor stays open until the next parent
// call, as the current entry may still be using it.
func (a *applier) removed() { a.pdir = "" }

// cleanName validates an archive name: relative, clean, no "..".
func cleanName(n string) (string, error) {
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." || n[0] == '/' || path.Clean(n) != n || n == ".." ||
		strings.HasPrefix(n, "../") || strings.ContainsRune(n, 0) {
		return "", damaged("bad entry name %q", n)
	}
	return n, nil
}

func (a *applier) entry(data io.Reader, h *tar.Header) error {
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	if !a.dirs[path.Dir(name)] {
		return damaged("entry %q: parent is not a directory entry of the archive", name)
	}
	var xattrs map[string][]byte
	for k, v := range h.PAXRecords {
		switch {
		case strings.HasPrefix(k, paxXattr):
			if x := k[len(paxXattr):]; keepXattr(x) {
				if xattrs == nil {
					xattrs = map[string][]byte{}
				}
				xattrs[x] = []byte(v)
				continue
			}
			return damaged("entry %q: xattr %q not allowed", name, k[len(paxXattr):])
		case strings.HasPrefix(k, "TARDIS.") && !(k == paxWhiteout && v == "1") && !(k == paxOpaque && v == "1"):
			return damaged("entry %q: unknown record %s=%s", name, k, v)
		}
	}
	whiteout := h.PAXRecords[paxWhiteout] == "1"
	if whiteout && (h.Typeflag != tar.TypeReg || h.Size != 0) {
		return damaged("entry %q: whiteout must be an empty regular file entry", name)
	}
	if h.PAXRecords[paxOpaque] == "1" && h.Typeflag != tar.TypeDir {
		return damaged("entry %q: only a directory can be opaque", name)
	}
	var target string
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		if target, err = cleanName(h.Linkname); err != nil || !a.files[target] {
			return damaged("entry %q: hard link to %q, not a file of the archive", name, h.Linkname)
		}
	default:
		return damaged("entry %q: unsupported type %q", name, h.Typeflag)
	}

	pfd, err := a.parent(path.Dir(name))
	if err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	base := path.Base(name)
	delete(a.dirs, name)
	delete(a.files, name)
	meta := node{mode: uint32(h.Mode) & 0o7777, uid: uint32(h.Uid), gid: uint32(h.Gid),
		atim: timespec(atime(h)), mtim: timespec(h.ModTime), xattrs: xattrs}
	switch {
	case whiteout:
		a.st.Whiteouts++
		_, err = a.clear(pfd, name, base)
	case h.Typeflag == tar.TypeDir:
		err = a.dir(pfd, name, base, h.PAXRecords[paxOpaque] == "1", &meta)
	case h.Typeflag == tar.TypeReg:
		a.st.Files++
		a.files[name] = true
		err = a.file(pfd, name, base, data, h.Size, &meta)
	case h.Typeflag == tar.TypeSymlink:
		a.st.Symlinks++
		meta.mode |= unix.S_IFLNK
		err = a.make(pfd, name, base, func() error { return unix.Symlinkat(h.Linkname, pfd, base) })
		if err == nil {
			err = setMeta(pfd, base, &meta, nil)
		}
	case h.Typeflag == tar.TypeLink:
		a.st.Files++
		a.files[name] = true
		var tfd int
		if tfd, err = openDir(a.rootfd, path.Dir(target)); err != nil {
			break
		}
		// Flags 0: a symlink at target would be linked itself, not followed.
		// The link shares the target's inode, metadata included.
		err = a.make(pfd, name, base, func() error { return unix.Linkat(tfd, path.Base(target), pfd, base, 0) })
		unix.Close(tfd)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	return nil
}

// file creates regular file name with the next size bytes of r as content,
// setting its metadata through the open descriptor (cheaper than by name).
func (a *applier) file(pfd int, name, base string, r io.Reader, size int64, meta *node) error {
	var fd int
	err := a.make(pfd, name, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	n, err := io.CopyBuffer(rawFD(fd), io.LimitReader(r, size), a.buf)
	a.st.Bytes += n
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if err != nil {
		return err
	}
	// chown first: it clears setuid bits and file capabilities.
	if err := unix.Fchown(fd, int(meta.uid), int(meta.gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, meta.mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range meta.xattrs {
		if err := unix.Fsetxattr(fd, k, v, 0); err != nil {
			return fmt.Errorf("setxattr %s: %w", k, err)
		}
	}
	// futimens(2): utimensat with a NULL path, which x/sys does not offer.
	ts := [2]unix.Timespec{meta.atim, meta.mtim}
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return fmt.Errorf("utimes: %w", e)
	}
	return nil
}

// fresh says whether name lies in a path this Apply created (or replaced):
// rolling that path back removes everything below it, so no backup is needed.
func (a *applier) fresh(name string) bool {
	for p := name; p != "."; p = path.Dir(p) {
		if a.created[p] {
			return true
		}
	}
	return false
}

// journal records the state of pfd/base (archive path name) before it is
// changed: only the metadata of a kept directory, or everything (full).
func (a *applier) journal(pfd int, name, base string, full bool) error {
	if a.fresh(name) {
		return nil
	}
	n, err := a.store.save(pfd, base, full)
	if err != nil {
		return fmt.Errorf("backing up %q: %w", name, err)
	}
	a.u.journal = append(a.u.journal, record{path: name, old: n, meta: !full})
	return nil
}

// clear removes whatever is at name, after backing it up.
func (a *applier) clear(pfd int, name, base string) (existed bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := a.journal(pfd, name, base, true); err != nil {
		return true, err
	}
	a.removed()
	return true, removeAt(pfd, base)
}

// make creates name with mk, which must fail with EEXIST if the name is
// taken: whatever is in the way is then backed up and removed, and mk
// retried. The journal then either restores what was there or, if nothing
// was, removes the path. Either way name counts as created, so nothing
// below it needs a backup of its own.
func (a *applier) make(pfd int, name, base string, mk func() error) error {
	err := mk()
	if err == unix.EEXIST {
		if _, err = a.clear(pfd, name, base); err != nil {
			return err
		}
		err = mk()
	} else if err == nil && !a.fresh(name) {
		a.u.journal = append(a.u.journal, record{path: name})
	}
	if err != nil {
		return err
	}
	a.created[name] = true
	return nil
}

func (a *applier) dir(pfd int, name, base string, opaque bool, meta *node) error {
	a.st.Dirs++
	if opaque {
		a.st.OpaqueDirs++
	}
	mkdir := func() error { return unix.Mkdirat(pfd, base, 0o700) }
	err := mkdir()
	if err == nil && !a.fresh(name) {
		a.u.journal = append(a.u.journal, record{path: name})
	}
	var st unix.Stat_t
	fresh := err == nil
	if err == unix.EEXIST {
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			fresh, err = true, a.make(pfd, name, base, mkdir)
		} else if err == nil {
			// Keep the directory (it may be a lower one): journal its
			// metadata, and its children if they go.
			if err = a.journal(pfd, name, base, false); err == nil && opaque {
				err = a.empty(pfd, name, base)
			}
		}
	}
	if err != nil {
		return err
	}
	a.created[name] = a.created[name] || fresh
	meta.mode |= unix.S_IFDIR
	// A kept directory loses the user xattrs the old one did not have; other
	// namespaces (security labels...) belong to the new rootfs.
	prune := func(k string) bool { return strings.HasPrefix(k, "user.") }
	if fresh {
		prune = nil
	}
	if err := setMeta(pfd, base, meta, prune); err != nil {
		return err
	}
	a.dirs[name] = true
	a.dirTimes = append(a.dirTimes, dirTime{name, meta.atim, meta.mtim})
	return nil
}

// empty removes (after backing up) every child of directory name.
func (a *applier) empty(pfd int, name, base string) error {
	d, err := openDirAt(pfd, base)
	if err != nil {
		return err
	}
	defer d.Close()
	kids, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	a.removed()
	for _, k := range kids {
		if err := a.journal(int(d.Fd()), name+"/"+k, k, true); err != nil {
			return err
		}
		if err := removeAt(int(d.Fd()), k); err != nil {
			return err
		}
	}
	return nil
}

func atime(h *tar.Header) time.Time {
	if h.AccessTime.IsZero() {
		return h.ModTime
	}
	return h.AccessTime
}

func timespec(t time.Time) unix.Timespec { return unix.NsecToTimespec(t.UnixNano()) }
