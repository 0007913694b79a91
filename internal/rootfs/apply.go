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
// ErrDamaged rather than resolved inside root. root itself is resolved once
// (symlinks in its own path allowed) and then only reached without symlinks.
//
// Refused as ErrDamaged: absolute or unclean names ("..", "./x", "a//b"),
// children of a non-directory entry, device nodes, fifos, sockets and any
// other entry type, hard links to anything but an earlier regular file of the
// archive, xattrs outside user.*, security.*, system.posix_acl_*, unknown
// TARDIS.* records, and truncation (checked with the TARDIS.end trailer).
//
// All-or-nothing, even across a crash: before changing a path Apply saves
// what was there in a journal in a new directory backupDir/tardis-undo-*
// (backupDir must be outside root), synced to disk before the change (see
// journal.go). On error it rolls back and returns the error joined with any
// rollback error. Afterwards root has the same names, types, contents,
// modes, owners, xattrs and file times as before; the times of root itself
// and of directories that were removed and recreated may differ, and a
// replaced file that had other hard links comes back as a separate copy. On
// an overlay, rolled-back changes leave copies in the upper directory
// (merged view identical).
//
// If the rollback fails too, the Undo is returned with the error so that
// Rollback can be retried. On success the returned Undo can still put root
// back (Rollback) or drop the backup (Commit). If the process dies before
// either, Recover(backupDir) puts root back.
func Apply(root string, r io.Reader, backupDir string) (*Undo, Stats, error) {
	rroot, err := checkOutside(root, backupDir)
	if err != nil {
		return nil, Stats{}, err
	}
	bdir, err := os.MkdirTemp(backupDir, undoPrefix)
	if err != nil {
		return nil, Stats{}, err
	}
	j, err := newJournal(backupDir, bdir, rroot)
	if err != nil {
		os.RemoveAll(bdir)
		return nil, Stats{}, err
	}
	u := &Undo{root: rroot, bdir: bdir, j: j}
	a := &applier{u: u, j: j, created: map[string]bool{}, exec: dirCache{fd: -1}, plan: dirCache{fd: -1},
		dirs: map[string]bool{".": true}, files: map[string]bool{}, buf: make([]byte, 256<<10)}
	if a.rootfd, err = openRoot(rroot); err == nil {
		// tar reads 512-byte blocks; buffer them (Apply consumes r anyway).
		err = a.run(tar.NewReader(bufio.NewReaderSize(r, 1<<20)))
		a.exec.close()
		a.plan.close()
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
// then overwrite the backup. It returns root absolute, symlinks resolved.
func checkOutside(root, backupDir string) (string, error) {
	r, err := filepath.EvalSymlinks(root)
	if err == nil {
		r, err = filepath.Abs(r)
	}
	if err != nil {
		return "", err
	}
	b, err := filepath.EvalSymlinks(backupDir)
	if err != nil {
		return "", err
	}
	if rel, err := filepath.Rel(r, b); err != nil || rel != ".." && !strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("backup directory %s must be outside rootfs %s", backupDir, root)
	}
	return r, nil
}

// record is one journal step: the state of path just before Apply changed it.
type record struct {
	path string
	old  *node // nil: path did not exist (rollback removes it)
	meta bool  // old holds only metadata: the directory itself was kept
}

// Undo rolls back or commits a successful Apply. Until one of them is done
// its process holds a lock on the journal, which Recover then leaves alone.
type Undo struct {
	mu        sync.Mutex
	root      string // absolute, resolved
	bdir      string
	j         *journal // nil once closed
	records   []record // in memory too: Rollback needs no parsing
	committed bool
}

// Rollback restores root as it was before Apply, undoing the journal
// backwards, then marks the journal rolled back and removes it. It is
// idempotent; after a failure it can be retried and resumes where it
// stopped. It fails after Commit.
func (u *Undo) Rollback() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.committed {
		return errors.New("rootfs change already committed")
	}
	if len(u.records) > 0 {
		rootfd, err := openRoot(u.root)
		if err != nil {
			return err
		}
		defer unix.Close(rootfd)
		for len(u.records) > 0 {
			if err := undo(rootfd, u.records[len(u.records)-1], u.j.data); err != nil {
				return err
			}
			u.records = u.records[:len(u.records)-1]
		}
	}
	return u.finish(markRolledBack)
}

// Commit forgets the backup: it marks the journal committed and removes
// what Apply stored in backupDir.
func (u *Undo) Commit() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.committed, u.records = true, nil
	return u.finish(markCommitted)
}

// finish durably marks the journal, then removes it and drops the lock. If
// the mark cannot be written the journal is removed all the same.
func (u *Undo) finish(mark string) error {
	var err error
	if u.j != nil {
		err = u.j.end(mark)
	}
	if rerr := os.RemoveAll(u.bdir); rerr != nil {
		return errors.Join(err, rerr)
	}
	if u.j != nil {
		u.j.close()
		u.j = nil
	}
	return err
}

// openDir opens directory rel of root without following any symlink and
// without leaving root.
func openDir(rootfd int, rel string) (int, error) {
	return unix.Openat2(rootfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

// batchSize and batchBytes bound a batch: the entries planned (their
// journal lines synced together) before any of them is performed.
var batchSize, batchBytes = 512, 16 << 20

// The applier works in batches of archive entries: prepare checks an entry
// and plans it (journals, buffered, the state of what it will change), and
// perform syncs the journal, then makes the changes of the batch. Planning
// ahead is sound because the records of a batch describe the state before
// the batch, and undoing a planned change that was not made yet is harmless;
// changes the perform phase makes that no record covers are only in paths
// this Apply created (fresh), which rollback removes whole.
type applier struct {
	u        *Undo
	j        *journal
	rootfd   int
	created  map[string]bool // paths this Apply creates: nothing under them needs a backup
	dirs     map[string]bool // directory entries so far: the only valid parents
	files    map[string]bool // regular file entries so far: the only valid hard link targets
	dirTimes []dirTime
	buf      []byte
	st       Stats
	exec     dirCache // parents for perform ...
	plan     dirCache // ... and for prepare, reset after each batch
}

// dirCache keeps the descriptor of the last parent directory opened: archives
// list siblings together.
type dirCache struct {
	rel string // "": none
	fd  int
}

// get returns a descriptor for directory rel of root (see openDir).
func (c *dirCache) get(rootfd int, rel string) (int, error) {
	if c.fd >= 0 && rel == c.rel {
		return c.fd, nil
	}
	c.close()
	fd, err := openDir(rootfd, rel)
	if err != nil {
		return -1, fmt.Errorf("opening %q in rootfs: %w", rel, err)
	}
	c.rel, c.fd = rel, fd
	return fd, nil
}

// reset must be called after removing anything: the cached directory may be
// (under) what was removed. The descriptor stays open until the next get,
// as the current entry may still be using it.
func (c *dirCache) reset() { c.rel = "" }

func (c *dirCache) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
	}
	c.rel, c.fd = "", -1
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
		var batch []*step
		pending := 0
		release := func(it applyItem) {
			if it.done != nil {
				close(it.done)
			} else if it.data != nil {
				select {
				case bufs <- it.data[:cap(it.data)]:
				default:
				}
			}
		}
		flush := func() {
			if werr == nil {
				if werr = a.perform(batch); werr != nil {
					close(failed)
				}
			}
			for _, s := range batch {
				release(s.it)
			}
			batch, pending = batch[:0], 0
		}
		for it := range items {
			if werr != nil {
				release(it)
				continue
			}
			s, err := a.prepare(it)
			if err != nil {
				werr = err
				close(failed)
				release(it)
				flush() // releases the batch
				continue
			}
			batch, pending = append(batch, s), pending+len(it.data)
			// Nothing to journal (e.g. under a new directory): no reason
			// to wait. A large file is still in the tar reader, which
			// waits for it.
			if a.j.buf.Len() == 0 || it.tr != nil || len(batch) >= batchSize || pending >= batchBytes {
				flush()
			}
		}
		flush()
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
		pfd, err := a.exec.get(a.rootfd, path.Dir(dt.name))
		if err != nil {
			return err
		}
		if err := utimesAt(pfd, path.Base(dt.name), dt.atim, dt.mtim); err != nil {
			return err
		}
		changed()
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
			// Buffers wait in a batch (see run): sized to fit, reused.
			select {
			case it.data = <-bufs:
			default:
			}
			if int64(cap(it.data)) < h.Size {
				it.data = make([]byte, h.Size)
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

// cleanName validates an archive name: relative, clean, no "..".
func cleanName(n string) (string, error) {
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." || n[0] == '/' || path.Clean(n) != n || n == ".." ||
		strings.HasPrefix(n, "../") || strings.ContainsRune(n, 0) {
		return "", damaged("bad entry name %q", n)
	}
	return n, nil
}

// step is a prepared archive entry.
type step struct {
	it               applyItem
	name, base       string
	target           string // hard link target
	whiteout, opaque bool
	meta             node
}

// prepare checks the archive entry of it and plans it (see plan).
func (a *applier) prepare(it applyItem) (*step, error) {
	h := it.h
	name, err := cleanName(h.Name)
	if err != nil {
		return nil, err
	}
	if !a.dirs[path.Dir(name)] {
		return nil, damaged("entry %q: parent is not a directory entry of the archive", name)
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
			return nil, damaged("entry %q: xattr %q not allowed", name, k[len(paxXattr):])
		case strings.HasPrefix(k, "TARDIS.") && !(k == paxWhiteout && v == "1") && !(k == paxOpaque && v == "1"):
			return nil, damaged("entry %q: unknown record %s=%s", name, k, v)
		}
	}
	s := &step{it: it, name: name, base: path.Base(name),
		whiteout: h.PAXRecords[paxWhiteout] == "1", opaque: h.PAXRecords[paxOpaque] == "1"}
	if s.whiteout && (h.Typeflag != tar.TypeReg || h.Size != 0) {
		return nil, damaged("entry %q: whiteout must be an empty regular file entry", name)
	}
	if s.opaque && h.Typeflag != tar.TypeDir {
		return nil, damaged("entry %q: only a directory can be opaque", name)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
	case tar.TypeLink:
		if s.target, err = cleanName(h.Linkname); err != nil || !a.files[s.target] {
			return nil, damaged("entry %q: hard link to %q, not a file of the archive", name, h.Linkname)
		}
	default:
		return nil, damaged("entry %q: unsupported type %q", name, h.Typeflag)
	}
	delete(a.dirs, name)
	delete(a.files, name)
	switch {
	case s.whiteout:
	case h.Typeflag == tar.TypeDir:
		a.dirs[name] = true
	case h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeLink:
		a.files[name] = true
	}
	s.meta = node{mode: uint32(h.Mode) & 0o7777, uid: uint32(h.Uid), gid: uint32(h.Gid),
		atim: timespec(atime(h)), mtim: timespec(h.ModTime), xattrs: xattrs}
	if err := a.planStep(s); err != nil {
		return nil, fmt.Errorf("entry %q: %w", name, err)
	}
	return s, nil
}

// planStep journals (buffered) the state of whatever s will change, unless
// s is in a path this Apply creates. It marks the paths s creates.
func (a *applier) planStep(s *step) error {
	if a.fresh(s.name) {
		return nil
	}
	pfd, err := a.plan.get(a.rootfd, path.Dir(s.name))
	if err != nil {
		return err
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(pfd, s.base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == unix.ENOENT:
		if s.whiteout {
			return nil
		}
		a.created[s.name] = true
		return a.log(record{path: s.name})
	case err != nil:
		return err
	case s.it.h.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		// Kept (it may be a lower directory): its metadata, and its
		// children if they go.
		if err := a.save(pfd, s.name, s.base, false); err != nil || !s.opaque {
			return err
		}
		d, err := openDirAt(pfd, s.base)
		if err != nil {
			return err
		}
		defer d.Close()
		kids, err := d.Readdirnames(-1)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := a.save(int(d.Fd()), s.name+"/"+k, k, true); err != nil {
				return err
			}
		}
		return nil
	default:
		if err := a.save(pfd, s.name, s.base, true); err != nil {
			return err
		}
		if !s.whiteout {
			a.created[s.name] = true
		}
		return nil
	}
}

// save journals the state of dirfd/base (archive path name): only the
// metadata of a kept directory, or everything (full).
func (a *applier) save(dirfd int, name, base string, full bool) error {
	if a.fresh(name) {
		return nil
	}
	n, err := a.j.save(dirfd, base, full)
	if err != nil {
		return fmt.Errorf("backing up %q: %w", name, err)
	}
	return a.log(record{path: name, old: n, meta: !full})
}

func (a *applier) log(rec record) error {
	a.u.records = append(a.u.records, rec)
	return a.j.add(rec.line())
}

// perform makes the journal of batch durable, then applies its entries.
func (a *applier) perform(batch []*step) error {
	defer a.plan.close() // the batch may remove what it refers to
	if err := a.j.flush(); err != nil {
		return err
	}
	changed()
	for _, s := range batch {
		var data io.Reader = bytes.NewReader(s.it.data)
		if s.it.tr != nil {
			data = s.it.tr
		}
		if err := a.entry(s, data); err != nil {
			return fmt.Errorf("entry %q: %w", s.name, err)
		}
	}
	return nil
}

// entry makes the changes of s, journaled beforehand by planStep.
func (a *applier) entry(s *step, data io.Reader) error {
	h, name, base := s.it.h, s.name, s.base
	pfd, err := a.exec.get(a.rootfd, path.Dir(name))
	if err != nil {
		return err
	}
	meta := &s.meta
	switch {
	case s.whiteout:
		a.st.Whiteouts++
		return a.clear(pfd, base)
	case h.Typeflag == tar.TypeDir:
		return a.dir(pfd, name, base, s.opaque, meta)
	case h.Typeflag == tar.TypeReg:
		a.st.Files++
		return a.file(pfd, base, data, h.Size, meta)
	case h.Typeflag == tar.TypeSymlink:
		a.st.Symlinks++
		meta.mode |= unix.S_IFLNK
		err = a.make(pfd, base, func() error { return unix.Symlinkat(h.Linkname, pfd, base) })
		if err == nil {
			err = setMeta(pfd, base, meta, nil)
			changed()
		}
		return err
	default: // tar.TypeLink
		a.st.Files++
		tfd, err := openDir(a.rootfd, path.Dir(s.target))
		if err != nil {
			return err
		}
		defer unix.Close(tfd)
		// Flags 0: a symlink at target would be linked itself, not followed.
		// The link shares the target's inode, metadata included.
		return a.make(pfd, base, func() error { return unix.Linkat(tfd, path.Base(s.target), pfd, base, 0) })
	}
}

// file creates regular file base with the next size bytes of r as content,
// setting its metadata through the open descriptor (cheaper than by name).
func (a *applier) file(pfd int, base string, r io.Reader, size int64, meta *node) error {
	var fd int
	err := a.make(pfd, base, func() (err error) {
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
	changed()
	return nil
}

// fresh says whether name lies in a path this Apply creates (or replaces):
// rolling that path back removes everything below it, so no backup is needed.
func (a *applier) fresh(name string) bool {
	for p := name; p != "."; p = path.Dir(p) {
		if a.created[p] {
			return true
		}
	}
	return false
}

// clear removes whatever is at base (journaled by planStep).
func (a *applier) clear(pfd int, base string) error {
	a.exec.reset()
	err := removeAt(pfd, base)
	if err == nil {
		changed()
	}
	return err
}

// make creates base with mk, which must fail with EEXIST if the name is
// taken: whatever is in the way is then removed, and mk retried.
func (a *applier) make(pfd int, base string, mk func() error) error {
	err := mk()
	if err == unix.EEXIST {
		if err = a.clear(pfd, base); err != nil {
			return err
		}
		err = mk()
	}
	if err == nil {
		changed()
	}
	return err
}

func (a *applier) dir(pfd int, name, base string, opaque bool, meta *node) error {
	a.st.Dirs++
	if opaque {
		a.st.OpaqueDirs++
	}
	mkdir := func() error { return unix.Mkdirat(pfd, base, 0o700) }
	err := mkdir()
	var st unix.Stat_t
	fresh := err == nil
	if fresh {
		changed()
	} else if err == unix.EEXIST {
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			fresh, err = true, a.make(pfd, base, mkdir)
		} else if err == nil && opaque {
			err = a.empty(pfd, base) // kept
		}
	}
	if err != nil {
		return err
	}
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
	changed()
	a.dirTimes = append(a.dirTimes, dirTime{name, meta.atim, meta.mtim})
	return nil
}

// empty removes every child of directory base (journaled by planStep).
func (a *applier) empty(pfd int, base string) error {
	d, err := openDirAt(pfd, base)
	if err != nil {
		return err
	}
	defer d.Close()
	kids, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	a.exec.reset()
	for _, k := range kids {
		if err := removeAt(int(d.Fd()), k); err != nil {
			return err
		}
		changed()
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
