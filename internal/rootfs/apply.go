package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// children of a non-directory entry, device nodes and any entry type but
// regular files, directories, symlinks, hard links and fifos, hard links to
// anything but an earlier regular file of the archive, xattrs outside
// user.*, security.*, system.posix_acl_*, unknown TARDIS.* records, a
// malformed sparse map, and truncation (checked with the TARDIS.end
// trailer). Fifos are created with mknodat, never opened. A sparse file's
// holes are not written: its size is set with ftruncate and only its data
// regions are written, so that it stays sparse.
//
// Regular files, symlinks and fifos are created by several goroutines at
// once; an entry that depends on another (a hard link, a name seen before
// in the archive) waits for those in progress.
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
	a := &applier{u: u, j: j, created: map[string]bool{}, kinds: map[string]kind{".": kindDir},
		euid: unix.Geteuid(), egid: unix.Getegid(), umask: readUmask()}
	if a.rootfd, err = openRoot(rroot); err == nil {
		ar := newArReader(r)
		err = a.run(ar)
		ar.close()
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
	if err == nil {
		b, err = filepath.Abs(b)
	}
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

// kind is what the archive last put at a path.
type kind uint8

const (
	kindOther    kind = iota + 1 // symlink, fifo, whiteout
	kindFile                     // regular file or hard link: a hard link may point to it
	kindDir                      // directory: a valid parent
	kindFreshDir                 // a directory in a path this Apply creates
)

// The applier works in batches of archive entries: prepare checks an entry
// and plans it (journals, buffered, the state of what it will change), and
// perform syncs the journal, then makes the changes of the batch. Planning
// ahead is sound because the records of a batch describe the state before
// the batch, and undoing a planned change that was not made yet is harmless;
// changes the perform phase makes that no record covers are only in paths
// this Apply created (fresh), which rollback removes whole.
//
// perform hands regular files, symlinks and fifos to workers and makes the
// other entries itself, in archive order. That is sound for the same
// reasons: planning, done in archive order before any of the batch is
// performed, marks as created (or finds fresh) every path such an entry
// changes, so no later planning reads what a worker may be changing, and
// the journal of a batch is durable before any of its entries is handed
// out. Ordering is kept where it matters: an entry whose name the archive
// had before, or a hard link (its target must be complete), waits for the
// workers. Directories and whiteouts need not: a path they change or remove
// is not in the archive yet (else they would wait), so no entry in progress
// is under it (its parents are all directories of the archive). A worker
// removing what is in its way removes no directory of the archive either,
// which is why the directory caches need no reset for it.
type applier struct {
	u        *Undo
	j        *journal
	rootfd   int
	created  map[string]bool // paths this Apply creates (or replaces): nothing under them needs a backup
	kinds    map[string]kind // archive entries so far: valid parents and hard link targets
	dirTimes []dirTime
	st       Stats
	exec     dirCache // parents for perform ...
	plan     dirCache // ... and for prepare, reset after each batch
	pool     bufPool
	work     workers
	euid     int // the owner and group of the files we create
	egid     int
	umask    int // the process's umask, -1 if unknown
}

// dirHandle is an open directory of root; workers hold a reference to the
// parent of the entry they make.
type dirHandle struct {
	fd         int
	sgid       bool // set-group-ID: files made in it take its group
	defaultACL bool // a default ACL (or we could not tell): it sets new files' modes
	refs       atomic.Int32
}

func (d *dirHandle) acquire() *dirHandle { d.refs.Add(1); return d }

func (d *dirHandle) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// dirCache keeps the last parent directory opened: archives list siblings
// together.
type dirCache struct {
	rel string // "": none
	h   *dirHandle
}

// get returns directory rel of root (see openDir), valid until the next get.
func (c *dirCache) get(rootfd int, rel string) (*dirHandle, error) {
	if c.h != nil && rel == c.rel {
		return c.h, nil
	}
	c.close()
	fd, err := openDir(rootfd, rel)
	if err != nil {
		return nil, fmt.Errorf("opening %q in rootfs: %w", rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat %q in rootfs: %w", rel, err)
	}
	// A default ACL, if any, sets the mode of new files instead of the
	// umask. (Through the magic link: fd is an O_PATH descriptor.)
	_, aerr := unix.Getxattr(procFD(fd), "system.posix_acl_default", nil)
	c.rel, c.h = rel, &dirHandle{fd: fd, sgid: st.Mode&unix.S_ISGID != 0,
		defaultACL: aerr != unix.ENODATA && aerr != unix.EOPNOTSUPP}
	c.h.refs.Store(1)
	return c.h, nil
}

// reset must be called after removing anything: the cached directory may be
// (under) what was removed. The descriptor stays open until the next get,
// as the current entry may still be using it.
func (c *dirCache) reset() { c.rel = "" }

func (c *dirCache) close() {
	if c.h != nil {
		c.h.release()
	}
	c.rel, c.h = "", nil
}

type dirTime struct {
	name       string
	atim, mtim unix.Timespec
}

// step is one archive entry on its way: read (header, and a small file's
// data; a large one's is still in the archive reader), then prepared, then
// made.
type step struct {
	h      *hdr
	data   []byte // small regular file: its data (regions back to back), in chunk
	chunk  *chunk
	stream *arReader // large regular file: its data still in the archive

	name, base       string
	target           string // hard link target
	whiteout, opaque bool
	wait             bool       // wait for the workers first
	meta             node       // mode (permission bits), owner, times, xattrs
	dir              *dirHandle // parent, for a worker
}

// leaf says whether a worker may make s. A large file is made at once,
// before the archive reader moves on.
func (s *step) leaf() bool {
	return !s.wait && !s.whiteout && s.stream == nil && (s.h.typ == typeReg || s.h.typ == typeSymlink || s.h.typ == typeFifo)
}

// workers make leaf entries concurrently. Entries are handed out in runs
// (fewer hand-offs between goroutines): add queues one, flush hands the
// queued run to a worker, which makes them in order.
type workers struct {
	jobs    chan []*step
	queued  []*step
	pending sync.WaitGroup // runs handed out, not finished
	running sync.WaitGroup // the goroutines
	mu      sync.Mutex
	err     error
	failed  atomic.Bool
}

// runSize is the most entries in a run.
const runSize = 32

func (w *workers) start(n int, do func(*step) error, release func(*step)) {
	w.jobs = make(chan []*step, 16)
	for range n {
		w.running.Add(1)
		go func() {
			defer w.running.Done()
			for run := range w.jobs {
				for _, s := range run {
					if !w.failed.Load() {
						if err := do(s); err != nil {
							w.mu.Lock()
							if w.err == nil {
								w.err = err
							}
							w.mu.Unlock()
							w.failed.Store(true)
						}
					}
					release(s)
				}
				w.pending.Done()
			}
		}()
	}
}

// add queues s; a full run is handed out at once.
func (w *workers) add(s *step) {
	if w.queued = append(w.queued, s); len(w.queued) >= runSize {
		w.flush()
	}
}

func (w *workers) flush() {
	if len(w.queued) == 0 {
		return
	}
	w.pending.Add(1)
	w.jobs <- w.queued
	w.queued = make([]*step, 0, runSize)
}

// error returns the first error of a worker.
func (w *workers) error() error {
	if !w.failed.Load() {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// wait waits until the entries queued are made.
func (w *workers) wait() error {
	w.flush()
	w.pending.Wait()
	return w.error()
}

func (w *workers) stop() {
	w.flush()
	close(w.jobs)
	w.running.Wait()
}

// run reads the archive and prepares and performs its entries, in batches,
// with workers. It returns once the workers are finished, so that a
// rollback never runs concurrently with them.
func (a *applier) run(ar *arReader) error {
	a.work.start(workerCount(), func(s *step) error {
		if err := a.entry(s, s.dir, false); err != nil {
			return fmt.Errorf("entry %q: %w", s.name, err)
		}
		return nil
	}, a.release)
	err := a.sequence(ar)
	a.work.stop()
	if err == nil {
		err = a.work.error()
	}
	if err != nil {
		return err
	}
	// Directory times last: creating children changed them. Deepest first.
	for i := len(a.dirTimes) - 1; i >= 0; i-- {
		dt := a.dirTimes[i]
		pd, err := a.exec.get(a.rootfd, path.Dir(dt.name))
		if err != nil {
			return err
		}
		if err := utimesAt(pd.fd, path.Base(dt.name), dt.atim, dt.mtim); err != nil {
			return err
		}
		changed()
	}
	return nil
}

// sequence reads the entries, prepares them in batches and performs each
// batch.
func (a *applier) sequence(ar *arReader) error {
	var batch []*step
	pending := 0
	defer func() { // after an error, what is left goes
		for _, s := range batch {
			a.release(s)
		}
	}()
	entries, ended := 0, false
	for {
		h, err := ar.next()
		if err == io.EOF {
			if !ended {
				return damaged("truncated (no %s trailer)", paxEnd)
			}
			err := a.perform(batch)
			batch = nil
			return err
		}
		if err != nil {
			return err
		}
		if ended {
			return damaged("entry %q after the %s trailer", h.name, paxEnd)
		}
		if h.typ == typeXGlobal {
			if h.recs[paxEnd] != strconv.Itoa(entries) {
				return damaged("trailer says %q entries, archive has %d", h.recs[paxEnd], entries)
			}
			ended = true
			continue
		}
		entries++
		s := &step{h: h}
		if h.typ == typeReg {
			if n := ar.remain; n > smallFile {
				s.stream = ar // made by perform, before the next entry is read
			} else if n > 0 {
				// Data wait in a batch, then for a worker, in the
				// archive's chunk.
				if s.data, s.chunk, err = ar.take(int(n)); err != nil {
					return fmt.Errorf("entry %q: %w", h.name, err)
				}
			}
		}
		if err := a.prepare(s); err != nil {
			a.release(s)
			return err
		}
		batch, pending = append(batch, s), pending+len(s.data)
		// Nothing to journal (e.g. under a new directory): no reason to
		// wait. A large file is still in the archive reader.
		if a.j.buf.Len() == 0 || s.stream != nil || len(batch) >= batchSize || pending >= batchBytes {
			err := a.perform(batch)
			batch, pending = batch[:0], 0
			if err != nil {
				return err
			}
		}
	}
}

// release frees what s holds.
func (a *applier) release(s *step) {
	if s.chunk != nil {
		s.chunk.release()
		s.data, s.chunk = nil, nil
	}
	if s.dir != nil {
		s.dir.release()
		s.dir = nil
	}
}

// parentOf is path.Dir for a clean relative name, without its cost.
func parentOf(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i]
	}
	return "."
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

// prepare checks the archive entry of s and plans it (see planStep).
func (a *applier) prepare(s *step) error {
	h := s.h
	name, err := cleanName(h.name)
	if err != nil {
		return err
	}
	if k := a.kinds[parentOf(name)]; k != kindDir && k != kindFreshDir {
		return damaged("entry %q: parent is not a directory entry of the archive", name)
	}
	var xattrs map[string][]byte
	for k, v := range h.recs {
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
	s.name, s.base = name, name[strings.LastIndexByte(name, '/')+1:]
	s.whiteout, s.opaque = h.recs[paxWhiteout] == "1", h.recs[paxOpaque] == "1"
	if s.whiteout && (h.typ != typeReg || h.size != 0 || h.sparse != nil) {
		return damaged("entry %q: whiteout must be an empty regular file entry", name)
	}
	if s.opaque && h.typ != typeDir {
		return damaged("entry %q: only a directory can be opaque", name)
	}
	switch h.typ {
	case typeReg, typeDir, typeSymlink, typeFifo:
	case typeLink:
		if s.target, err = cleanName(h.link); err != nil || a.kinds[s.target] != kindFile {
			return damaged("entry %q: hard link to %q, not a file of the archive", name, h.link)
		}
	case typeChar, typeBlock:
		return damaged("entry %q: device node %d:%d", name, h.devmajor, h.devminor)
	default:
		return damaged("entry %q: unsupported type %q", name, h.typ)
	}
	_, seen := a.kinds[name]
	s.wait = seen || h.typ == typeLink
	atim := h.atime
	if !h.atimeSet {
		atim = h.mtime
	}
	s.meta = node{mode: uint32(h.mode) & 0o7777, uid: uint32(h.uid), gid: uint32(h.gid),
		atim: atim, mtim: h.mtime, xattrs: xattrs}
	if err := a.planStep(s); err != nil {
		return fmt.Errorf("entry %q: %w", name, err)
	}
	switch {
	case s.whiteout:
		a.kinds[name] = kindOther
		a.st.Whiteouts++
	case h.typ == typeDir:
		a.kinds[name] = kindDir
		if a.fresh(name) {
			a.kinds[name] = kindFreshDir
		}
		a.st.Dirs++
		if s.opaque {
			a.st.OpaqueDirs++
		}
	case h.typ == typeReg:
		a.kinds[name] = kindFile
		a.st.Files++
		a.st.Bytes += h.size
		a.st.DataBytes += h.dataSize()
		if h.sparse != nil {
			a.st.SparseFiles++
		}
	case h.typ == typeLink:
		a.kinds[name] = kindFile
		a.st.Files++
		a.st.HardLinks++
	case h.typ == typeSymlink:
		a.kinds[name] = kindOther
		a.st.Symlinks++
	case h.typ == typeFifo:
		a.kinds[name] = kindOther
		a.st.Fifos++
	}
	return nil
}

// planStep journals (buffered) the state of whatever s will change, unless
// s is in a path this Apply creates. It marks the paths s creates.
func (a *applier) planStep(s *step) error {
	if a.fresh(s.name) {
		return nil
	}
	pd, err := a.plan.get(a.rootfd, parentOf(s.name))
	if err != nil {
		return err
	}
	pfd := pd.fd
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
	case s.h.typ == typeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR:
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

// fresh says whether name lies in a path this Apply creates (or replaces):
// rolling that path back removes everything below it, so no backup is
// needed. (A directory's freshness is noted when it is planned; if a
// parent is replaced later, its children are only journaled needlessly.)
func (a *applier) fresh(name string) bool {
	return a.created[name] || a.kinds[parentOf(name)] == kindFreshDir
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

// perform makes the journal of batch durable, then applies its entries,
// handing leaf entries to the workers. It releases every step of batch.
func (a *applier) perform(batch []*step) error {
	defer a.plan.close() // the batch may remove what it refers to
	defer func() {
		for _, s := range batch {
			if s != nil {
				a.release(s)
			}
		}
	}()
	if err := a.j.flush(); err != nil {
		return err
	}
	changed()
	for i, s := range batch {
		if err := a.work.error(); err != nil {
			return err
		}
		if s.wait {
			if err := a.work.wait(); err != nil {
				return err
			}
		}
		pd, err := a.exec.get(a.rootfd, parentOf(s.name))
		if err != nil {
			return fmt.Errorf("entry %q: %w", s.name, err)
		}
		if s.leaf() {
			s.dir = pd.acquire()
			batch[i] = nil
			a.work.add(s)
			continue
		}
		err = a.entry(s, pd, true)
		batch[i] = nil
		a.release(s)
		if err != nil {
			return fmt.Errorf("entry %q: %w", s.name, err)
		}
	}
	return nil
}

// entry makes the changes of s, journaled beforehand by planStep. Only the
// sequencer (inline) may make directories, whiteouts and hard links.
func (a *applier) entry(s *step, pd *dirHandle, inline bool) error {
	h, name, base, pfd := s.h, s.name, s.base, pd.fd
	meta := &s.meta
	switch {
	case s.whiteout:
		return a.clear(pfd, base)
	case h.typ == typeDir:
		return a.dir(pfd, name, base, s.opaque, meta)
	case h.typ == typeReg:
		return a.file(pd, s, inline)
	case h.typ == typeSymlink:
		meta.mode |= unix.S_IFLNK
		return a.special(pfd, base, meta, inline, func() error { return unix.Symlinkat(h.link, pfd, base) })
	case h.typ == typeFifo:
		meta.mode |= unix.S_IFIFO
		return a.special(pfd, base, meta, inline, func() error { return unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0) })
	default: // typeLink
		tfd, err := openDir(a.rootfd, path.Dir(s.target))
		if err != nil {
			return err
		}
		defer unix.Close(tfd)
		// Flags 0: a symlink at target would be linked itself, not followed.
		// The link shares the target's inode, metadata included.
		return a.make(pfd, base, inline, func() error { return unix.Linkat(tfd, path.Base(s.target), pfd, base, 0) })
	}
}

// special makes a symlink or fifo with mk, then gives it its metadata by
// name (never opening it).
func (a *applier) special(pfd int, base string, meta *node, inline bool, mk func() error) error {
	if err := a.make(pfd, base, inline, mk); err != nil {
		return err
	}
	if err := setMeta(pfd, base, meta, nil); err != nil {
		return err
	}
	changed()
	return nil
}

// file creates regular file s.base with its data, setting its metadata
// through the open descriptor (cheaper than by name).
func (a *applier) file(pd *dirHandle, s *step, inline bool) error {
	base, meta, pfd := s.base, &s.meta, pd.fd
	// A file is created with its mode when the umask leaves that mode
	// alone and no default ACL of its directory changes it (the usual
	// case: 0644, 0755), sparing a chmod; with mode 0600 otherwise, until
	// the chmod that follows the chown (which would clear set-ID bits).
	mode, chmod := uint32(0o600), true
	if meta.mode&0o7000 == 0 && a.umask >= 0 && meta.mode&uint32(a.umask) == 0 && !pd.defaultACL {
		mode, chmod = meta.mode, false
	}
	var fd int
	err := a.make(pfd, base, inline, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := a.fillFile(fd, s); err != nil {
		return err
	}
	// chown first: it clears setuid bits and file capabilities. A new file
	// is ours already, with our group unless its directory is set-group-ID
	// (the usual case: root's files): no chown needed then.
	if int(meta.uid) != a.euid || int(meta.gid) != a.egid || pd.sgid {
		if err := unix.Fchown(fd, int(meta.uid), int(meta.gid)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, meta.mode); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
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

// fillFile writes the data of s into the new file fd. A sparse file gets its
// size first (ftruncate) and then only its data regions: holes are never
// written.
func (a *applier) fillFile(fd int, s *step) error {
	h := s.h
	if h.sparse != nil {
		if err := unix.Ftruncate(fd, h.size); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	if s.stream != nil {
		// The regions follow each other in the archive: from the archive
		// file with sendfile, else read and written in turn.
		if s.stream.canSend(h.dataSize()) {
			for _, r := range regionsOf(h) {
				if err := s.stream.sendTo(fd, r.off, r.len); err != nil {
					return err
				}
			}
			return nil
		}
		return copyOverlapped(&a.pool, regionsOf(h), func(b []byte, _ int64) error {
			if _, err := io.ReadFull(s.stream, b); err != nil {
				return unexpected(err)
			}
			return nil
		}, func(b []byte, off int64) error { return pwriteFull(fd, b, off) })
	}
	var off int64
	for _, r := range regionsOf(h) {
		if err := pwriteFull(fd, s.data[off:off+r.len], r.off); err != nil {
			return err
		}
		off += r.len
	}
	return nil
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
// taken: whatever is in the way is then removed, and mk retried. A worker
// (not inline) leaves the directory cache alone: what is in its way is no
// directory of the archive (see applier).
func (a *applier) make(pfd int, base string, inline bool, mk func() error) error {
	err := mk()
	if err == unix.EEXIST {
		if inline {
			err = a.clear(pfd, base)
		} else if err = removeAt(pfd, base); err == nil {
			changed()
		}
		if err != nil {
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
	mkdir := func() error { return unix.Mkdirat(pfd, base, 0o700) }
	err := mkdir()
	var st unix.Stat_t
	fresh := err == nil
	if fresh {
		changed()
	} else if err == unix.EEXIST {
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			fresh, err = true, a.make(pfd, base, true, mkdir)
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
	a.exec.reset() // its set-group-ID bit may have changed
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
