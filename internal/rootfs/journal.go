package rootfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// The undo journal. Apply keeps, in a directory backupDir/tardis-undo-*
// (the undo directory), everything needed to put root back, on disk and
// written ahead of the changes, so that a process killed at any point can
// be rolled back by Recover:
//
//   - "journal": JSON lines, appended with O_APPEND. The first is the header
//     {"v":1,"root":"/abs/resolved/root"}. Then one line per saved state, in
//     the order Apply took them:
//     {"op":"new","path":"a/b"}            nothing was there: rollback removes it
//     {"op":"meta","path":"a","node":N}    a kept directory: rollback restores
//     its metadata (mode, owner, xattrs, times)
//     {"op":"saved","path":"a/b","node":N} what was there, with its subtree:
//     rollback removes the path and recreates N
//     and at most one end mark, {"end":"committed"} or {"end":"rolledback"},
//     written (and synced) by Commit or Rollback before the directory goes.
//     N is {"mode","uid","gid","rdev","atime":[s,ns],"mtime":[s,ns],
//     "xattrs":[{"name","value"(base64)}],"link","data":[offset,length],
//     "sparse":true (the file's holes are holes of the data range too),
//     "kids":[{"name","node":N}]}. Paths, names and link targets are JSON
//     strings when valid UTF-8, else {"base64":"..."}.
//     A line counts only once complete (newline included) and valid; the
//     first one that is not ends the journal (a torn append).
//   - "data": the contents of the regular files saved, back to back; a node
//     refers to its range.
//
// Write-ahead, in batches: Apply plans a batch of entries (stat what is
// there, copy it into data, buffer the lines), then syncs data, appends the
// lines and syncs the journal, and only then changes root for those entries.
// A planned change that was never made is harmless to roll back: its line
// describes the state before it, which is still there. The header is synced
// (with the directory entries of the undo directory) before any change.
//
// While an Apply's Undo is alive, its process holds a flock on the undo
// directory; Recover skips locked ones, so it only touches journals whose
// process is gone (or that Commit/Rollback finished).
const (
	undoPrefix  = "tardis-undo-"
	journalName = "journal"
	dataName    = "data"
	journalV    = 1

	markCommitted  = "committed"
	markRolledBack = "rolledback"
)

// crashAfter, when positive, makes the process SIGKILL itself at the
// crashAfter-th change to root (Apply, Rollback or Recover): set only by the
// crash tests, in a child process.
var crashAfter int

var crashCount atomic.Int64

// changed marks a point right after a change to root (or a journal sync).
// Apply's workers call it concurrently.
func changed() {
	if crashAfter <= 0 {
		return
	}
	if crashCount.Add(1) == int64(crashAfter) {
		unix.Kill(unix.Getpid(), unix.SIGKILL)
		for {
			time.Sleep(time.Hour)
		}
	}
}

// text is a file name or path: JSON cannot carry arbitrary bytes in a
// string, so the ones that are not valid UTF-8 are written as base64.
type text string

type b64 struct {
	B []byte `json:"base64"`
}

func (t text) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(t)) {
		return json.Marshal(string(t))
	}
	return json.Marshal(b64{[]byte(t)})
}

func (t *text) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var v b64
		err := json.Unmarshal(b, &v)
		*t = text(v.B)
		return err
	}
	var s string
	err := json.Unmarshal(b, &s)
	*t = text(s)
	return err
}

// line is one journal line: a header, a record or an end mark.
type line struct {
	V    int    `json:"v,omitempty"`
	Root *text  `json:"root,omitempty"`
	Op   string `json:"op,omitempty"`
	Path *text  `json:"path,omitempty"`
	Node *node  `json:"node,omitempty"`
	End  string `json:"end,omitempty"`
}

const (
	opNew   = "new"
	opMeta  = "meta"
	opSaved = "saved"
)

func (r record) line() line {
	p := text(r.path)
	l := line{Path: &p, Node: r.old, Op: opSaved}
	switch {
	case r.old == nil:
		l.Op = opNew
	case r.meta:
		l.Op = opMeta
	}
	return l
}

type jnode struct {
	Mode   uint32    `json:"mode"`
	UID    uint32    `json:"uid"`
	GID    uint32    `json:"gid"`
	Rdev   uint64    `json:"rdev,omitempty"`
	Atime  [2]int64  `json:"atime"`
	Mtime  [2]int64  `json:"mtime"`
	Xattrs []jxattr  `json:"xattrs,omitempty"`
	Link   *text     `json:"link,omitempty"`
	Data   *[2]int64 `json:"data,omitempty"`
	Sparse bool      `json:"sparse,omitempty"`
	Kids   []jkid    `json:"kids,omitempty"`
}

type jxattr struct {
	Name  text   `json:"name"`
	Value []byte `json:"value"`
}

type jkid struct {
	Name text  `json:"name"`
	Node *node `json:"node"`
}

func (n *node) MarshalJSON() ([]byte, error) {
	j := jnode{Mode: n.mode, UID: n.uid, GID: n.gid, Rdev: n.rdev,
		Atime: [2]int64{n.atim.Sec, n.atim.Nsec}, Mtime: [2]int64{n.mtim.Sec, n.mtim.Nsec}}
	for k, v := range n.xattrs {
		j.Xattrs = append(j.Xattrs, jxattr{text(k), v})
	}
	switch n.mode & unix.S_IFMT {
	case unix.S_IFLNK:
		l := text(n.link)
		j.Link = &l
	case unix.S_IFREG:
		j.Data, j.Sparse = &[2]int64{n.off, n.size}, n.sparse
	}
	for k, kid := range n.kids {
		j.Kids = append(j.Kids, jkid{text(k), kid})
	}
	return json.Marshal(j)
}

func (n *node) UnmarshalJSON(b []byte) error {
	var j jnode
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*n = node{mode: j.Mode, uid: j.UID, gid: j.GID, rdev: j.Rdev,
		atim: unix.Timespec{Sec: j.Atime[0], Nsec: j.Atime[1]},
		mtim: unix.Timespec{Sec: j.Mtime[0], Nsec: j.Mtime[1]}}
	for _, x := range j.Xattrs {
		if n.xattrs == nil {
			n.xattrs = map[string][]byte{}
		}
		n.xattrs[string(x.Name)] = x.Value
	}
	if j.Link != nil {
		n.link = string(*j.Link)
	}
	if n.mode&unix.S_IFMT == unix.S_IFREG {
		if j.Data == nil || j.Data[0] < 0 || j.Data[1] < 0 {
			return errors.New("regular file without data range")
		}
		n.off, n.size, n.sparse = j.Data[0], j.Data[1], j.Sparse
	}
	if n.mode&unix.S_IFMT == unix.S_IFDIR {
		n.kids = make(map[string]*node, len(j.Kids))
	}
	for _, k := range j.Kids {
		name := string(k.Name)
		if n.kids == nil || k.Node == nil || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return fmt.Errorf("bad child %q", name)
		}
		n.kids[name] = k.Node
	}
	return nil
}

// journal is the writing side of an undo directory.
type journal struct {
	dir        string
	dirfd      int // the undo directory, flocked while the journal is open
	fd         int // journal, O_APPEND
	data       *os.File
	off        int64 // bytes in data ...
	synced     int64 // ... and how many of them are synced
	buf        bytes.Buffer
	terminated bool // an end mark is written
}

// newJournal creates the journal of an Apply to root in bdir (an empty new
// directory in backupDir) and makes its header durable.
func newJournal(backupDir, bdir, root string) (j *journal, err error) {
	j = &journal{dir: bdir, dirfd: -1, fd: -1}
	defer func() {
		if err != nil {
			j.close()
		}
	}()
	if j.dirfd, err = unix.Open(bdir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
		return j, err
	}
	if err = unix.Flock(j.dirfd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return j, fmt.Errorf("locking %s: %w", bdir, err)
	}
	if j.fd, err = unix.Openat(j.dirfd, journalName, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600); err != nil {
		return j, fmt.Errorf("creating journal in %s: %w", bdir, err)
	}
	dfd, err := unix.Openat(j.dirfd, dataName, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return j, fmt.Errorf("creating backup data in %s: %w", bdir, err)
	}
	j.data = os.NewFile(uintptr(dfd), filepath.Join(bdir, dataName))
	r := text(root)
	if err = j.add(line{V: journalV, Root: &r}); err != nil {
		return j, err
	}
	if err = j.flush(); err != nil {
		return j, err
	}
	if err = unix.Fsync(j.dirfd); err != nil {
		return j, fmt.Errorf("syncing %s: %w", bdir, err)
	}
	return j, syncDir(backupDir)
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = unix.Fsync(fd)
		unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// add buffers a line; flush writes it.
func (j *journal) add(l line) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	j.buf.Write(b)
	j.buf.WriteByte('\n')
	return nil
}

// flush makes the buffered lines durable: the backup data they refer to
// first, then the lines.
func (j *journal) flush() error {
	if j.buf.Len() == 0 {
		return nil
	}
	if j.off > j.synced {
		if err := unix.Fdatasync(int(j.data.Fd())); err != nil {
			return fmt.Errorf("syncing backup data: %w", err)
		}
		j.synced = j.off
	}
	if _, err := rawFD(j.fd).Write(j.buf.Bytes()); err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	if err := unix.Fdatasync(j.fd); err != nil {
		return fmt.Errorf("syncing journal: %w", err)
	}
	j.buf.Reset()
	return nil
}

// end durably marks the journal committed or rolled back.
func (j *journal) end(mark string) error {
	if j.terminated {
		return nil
	}
	j.buf.Reset() // lines of changes never made
	if err := j.add(line{End: mark}); err != nil {
		return err
	}
	if err := j.flush(); err != nil {
		return err
	}
	j.terminated = true
	return nil
}

// close releases the descriptors, and with them the lock.
func (j *journal) close() {
	if j.data != nil {
		j.data.Close()
		j.data = nil
	}
	for _, fd := range []*int{&j.fd, &j.dirfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// save records dirfd/name: only its metadata when full is false (a directory
// that is kept), otherwise also its contents (copied into the data file)
// and, for a directory, its whole subtree.
func (j *journal) save(dirfd int, name string, full bool) (*node, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	xa, err := getXattrs(dirfd, name)
	if err != nil {
		return nil, err
	}
	n := &node{mode: st.Mode, uid: st.Uid, gid: st.Gid, rdev: st.Rdev, atim: st.Atim, mtim: st.Mtim, xattrs: xa}
	if !full {
		return n, nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		src := os.NewFile(uintptr(fd), name)
		defer src.Close()
		var regions []span
		if st.Blocks*512 < st.Size {
			if regions, err = dataRegions(fd, st.Size); err != nil {
				return nil, fmt.Errorf("backing up %s: %w", name, err)
			}
		}
		if regions != nil {
			// Sparse: its data regions go to the same offsets of a
			// block-aligned range of the data file, whose holes stay holes.
			n.off, n.size, n.sparse = (j.off+4095)&^4095, st.Size, true
			if err := copyRanges(j.data, src, n.off, regions); err != nil {
				return nil, fmt.Errorf("backing up %s: %w", name, err)
			}
			j.off = n.off + n.size
			if _, err := j.data.Seek(j.off, io.SeekStart); err != nil {
				return nil, err
			}
			break
		}
		n.off = j.off
		// copy_file_range when both sides allow it.
		n.size, err = io.Copy(j.data, src)
		j.off += n.size
		if err != nil {
			return nil, fmt.Errorf("backing up %s: %w", name, err)
		}
	case unix.S_IFLNK:
		if n.link, err = readlinkAt(dirfd, name); err != nil {
			return nil, err
		}
	case unix.S_IFDIR:
		d, err := openDirAt(dirfd, name)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		defer d.Close()
		names, err := d.Readdirnames(-1)
		if err != nil {
			return nil, fmt.Errorf("readdir %s: %w", name, err)
		}
		n.kids = make(map[string]*node, len(names))
		for _, k := range names {
			if n.kids[k], err = j.save(int(d.Fd()), k, true); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

// openRoot opens root, an absolute path, as a directory without following
// any symlink on the way.
func openRoot(root string) (int, error) {
	if !filepath.IsAbs(root) {
		return -1, fmt.Errorf("rootfs %q: not an absolute path", root)
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, root, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("opening rootfs %s (symlinks refused): %w", root, err)
	}
	return fd, nil
}

// undo rolls back one record, resolving its parent inside root without
// following symlinks. A missing parent is skipped: Apply changed it (or
// something above it) after taking rec, and the rollback of that earlier
// record, still to come, recreates it with its contents. That happens when a
// rollback (or a Recover) is resumed after stopping in the middle of one
// record.
func undo(rootfd int, rec record, data *os.File) error {
	pfd, err := openDir(rootfd, path.Dir(rec.path))
	if err == unix.ENOENT {
		return nil
	}
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
			changed()
			err = restore(pfd, base, rec.old, data)
		}
	}
	if err != nil {
		return fmt.Errorf("rollback of %s: %w", rec.path, err)
	}
	changed()
	return nil
}

// Recover puts back the rootfs of every Apply that left its journal in
// backupDir (tardis-undo-* directories) without a Commit or a Rollback:
// tardis was killed. It rolls each back from what is on disk with the same
// rules as Rollback (parents resolved inside the recorded root, never
// through a symlink; the recorded root itself must be a directory reached
// without symlinks, outside backupDir), marks the journal rolled back and
// removes it. Journals marked committed or rolled back, and those whose
// header never became durable (nothing was changed), are just removed.
// Undo directories locked by a live process (an Apply whose Undo is still
// open) are left alone.
//
// Recover is idempotent: if it is itself interrupted, the next Recover
// rolls back again from the start of the journal, which ends in the same
// state. It returns the roots it rolled back. A journal it cannot roll back
// (e.g. root is gone or is now a symlink) is kept and reported in err; the
// others are still processed.
func Recover(backupDir string) (recovered []string, err error) {
	ents, err := os.ReadDir(backupDir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), undoPrefix) {
			continue
		}
		bdir := filepath.Join(backupDir, e.Name())
		root, err := recoverOne(backupDir, bdir)
		if err != nil {
			errs = append(errs, fmt.Errorf("recovering %s: %w", bdir, err))
		} else if root != "" {
			recovered = append(recovered, root)
		}
	}
	return recovered, errors.Join(errs...)
}

func recoverOne(backupDir, bdir string) (string, error) {
	dirfd, err := unix.Open(bdir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(dirfd)
	if err := unix.Flock(dirfd, unix.LOCK_EX|unix.LOCK_NB); err == unix.EWOULDBLOCK {
		return "", nil // its Apply is alive
	} else if err != nil {
		return "", err
	}
	jfd, err := unix.Openat(dirfd, journalName, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return "", os.RemoveAll(bdir) // killed before the journal existed
	}
	if err != nil {
		return "", fmt.Errorf("opening journal: %w", err)
	}
	jf := os.NewFile(uintptr(jfd), filepath.Join(bdir, journalName))
	defer jf.Close()
	content, err := io.ReadAll(jf)
	if err != nil {
		return "", err
	}
	root, recs, mark, valid, err := parseJournal(content)
	if err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	if root == "" || mark != "" {
		return "", os.RemoveAll(bdir)
	}
	if len(recs) > 0 {
		if _, err := checkOutside(root, backupDir); err != nil {
			return "", err
		}
		rootfd, err := openRoot(root)
		if err != nil {
			return "", err
		}
		defer unix.Close(rootfd)
		dfd, err := unix.Openat(dirfd, dataName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("opening backup data: %w", err)
		}
		data := os.NewFile(uintptr(dfd), filepath.Join(bdir, dataName))
		defer data.Close()
		for i := len(recs) - 1; i >= 0; i-- {
			if err := undo(rootfd, recs[i], data); err != nil {
				return "", err
			}
		}
	}
	// Mark it after the valid lines (dropping a torn one) so that a crash
	// before the removal does not roll back again a root then in use.
	mk, _ := json.Marshal(line{End: markRolledBack})
	if err := jf.Truncate(int64(valid)); err != nil {
		return "", err
	}
	if _, err := jf.WriteAt(append(mk, '\n'), int64(valid)); err != nil {
		return "", err
	}
	if err := jf.Sync(); err != nil {
		return "", err
	}
	return root, os.RemoveAll(bdir)
}

// parseJournal reads a journal: the recorded root ("" when the header is
// missing or torn: nothing was changed), its records, its end mark and the
// length of its valid part. Reading stops at the first incomplete or
// malformed line, a torn append; an unknown record is an error.
func parseJournal(b []byte) (root string, recs []record, mark string, valid int, err error) {
	for first := true; ; first = false {
		i := bytes.IndexByte(b[valid:], '\n')
		if i < 0 {
			return root, recs, mark, valid, nil
		}
		var l line
		if json.Unmarshal(b[valid:valid+i], &l) != nil {
			return root, recs, mark, valid, nil
		}
		switch {
		case first:
			if l.V != journalV || l.Root == nil || *l.Root == "" {
				return "", nil, "", 0, fmt.Errorf("unknown header %q", b[:i])
			}
			root = string(*l.Root)
		case mark != "":
			return "", nil, "", 0, errors.New("lines after the end mark")
		case l.End == markCommitted || l.End == markRolledBack:
			mark = l.End
		case l.Path != nil:
			p, err := cleanName(string(*l.Path))
			if err != nil {
				return "", nil, "", 0, fmt.Errorf("record path: %w", err)
			}
			rec := record{path: p, old: l.Node}
			switch {
			case l.Op == opNew && l.Node == nil:
			case l.Op == opMeta && l.Node != nil:
				rec.meta = true
			case l.Op == opSaved && l.Node != nil:
			default:
				return "", nil, "", 0, fmt.Errorf("bad record %q", b[valid:valid+i])
			}
			recs = append(recs, rec)
		default:
			return "", nil, "", 0, fmt.Errorf("unknown line %q", b[valid:valid+i])
		}
		valid += i + 1
	}
}
