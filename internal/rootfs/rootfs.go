// Package rootfs moves the changes a container made to its overlay rootfs into
// a new rootfs: Save archives an overlay upper directory, Apply replays that
// archive onto the merged rootfs of a new container, all-or-nothing.
//
// The rootfs is hostile (the container wrote it), so nothing here follows a
// symlink found in it: Save walks the upper directory through directory file
// descriptors with O_NOFOLLOW/AT_SYMLINK_NOFOLLOW, and Apply resolves every
// parent directory with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and then
// acts on the last component with *at calls that do not follow it.
//
// Archive format: a PAX tar (POSIX pax interchange format; written and read
// by this package, see tarfmt.go, and readable by archive/tar and GNU tar).
// Names are relative and clean ("a/b", directories "a/b/"), parents always
// precede their children.
//   - regular files, directories, symlinks, fifos, hard links (TypeLink, to
//     an earlier regular file of the same archive), with mode, uid/gid,
//     mtime/atime (PAX, nanoseconds) and xattrs as SCHILY.xattr.<name>
//     records (user.*, security.*, system.posix_acl_{access,default});
//   - a regular file with holes (found with lseek SEEK_DATA/SEEK_HOLE) is
//     written in GNU tar's PAX sparse format 1.0: only its data regions are
//     stored, behind a map of them, and Apply recreates the holes (it never
//     writes them, and sets the size with ftruncate);
//   - a deletion (overlay whiteout) is a zero-size TypeReg entry carrying the
//     PAX record TARDIS.whiteout=1;
//   - an opaque directory is a TypeDir entry carrying TARDIS.opaque=1; its
//     children in the archive follow it.
//   - the archive ends with a PAX global header (TypeXGlobalHeader) carrying
//     TARDIS.end=<number of entries>, so that an archive cut at an entry
//     boundary (which tar itself cannot tell from a complete one) is refused.
//
// Unix sockets in the upper directory are skipped (a socket file is only a
// name: CRIU binds listening sockets again at restore) and counted in
// Stats.Sockets; device nodes other than whiteouts cannot be saved
// (ErrUnsaveable). Precheck tells, without reading any file, whether Save
// would succeed and how big its archive would be: the stop path can ask
// before it dumps the container.
//
// Save and Apply do the per-file system calls in several goroutines (the
// order of the archive and the write-ahead journal kept, see apply.go), so
// that on many small files they use the machine's cores.
//
// PAX records were chosen over the AUFS ".wh.<name>" convention because they
// cannot collide with a file the container really named ".wh.something".
//
// Crash safety: Apply journals, on disk and synced before each change, what
// it is about to change (backupDir/tardis-undo-*/journal and .../data, see
// journal.go). If tardis is killed during Apply, or before Commit/Rollback,
// Recover(backupDir) puts root back exactly; after Commit it only removes
// the journal.
package rootfs

import (
	"errors"
	"fmt"
)

// ErrDamaged is wrapped by Apply's error when the archive is malformed or
// hostile (absolute path, "..", device node, truncated, ...).
var ErrDamaged = errors.New("damaged rootfs archive")

// ErrUnsaveable is wrapped by the errors of Save and Precheck that name
// something in the upper directory the archive cannot carry: a device node,
// a file of overlay's redirect or metacopy features, an xattr whose name
// the format cannot hold. Their other errors are I/O errors.
var ErrUnsaveable = errors.New("cannot be saved")

// Stats counts archive entries. Hard links count as Files (and HardLinks);
// opaque directories count both as Dirs and OpaqueDirs; Bytes is the size of
// regular files, holes included, DataBytes what the archive stores of it
// (holes excluded); SparseFiles are the files stored sparse. Sockets are
// the unix sockets Save skipped (always 0 from Apply).
type Stats struct {
	Files       int   `json:"files"`
	Dirs        int   `json:"dirs"`
	Symlinks    int   `json:"symlinks"`
	Whiteouts   int   `json:"whiteouts"`
	OpaqueDirs  int   `json:"opaque_dirs"`
	Bytes       int64 `json:"bytes"`
	HardLinks   int   `json:"hard_links"`
	Fifos       int   `json:"fifos"`
	SparseFiles int   `json:"sparse_files"`
	DataBytes   int64 `json:"data_bytes"`
	Sockets     int   `json:"sockets_skipped"`
}

const (
	paxWhiteout = "TARDIS.whiteout"
	paxOpaque   = "TARDIS.opaque"
	paxEnd      = "TARDIS.end"
	paxXattr    = "SCHILY.xattr."
	ovlXattr    = "trusted.overlay." // overlay's own bookkeeping in upper

	// Apply: the data of files up to this size wait in the archive's
	// chunks for a worker; larger files are written at once (sendfile).
	smallFile = 256 << 10
)

func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrDamaged}, args...)...)
}

// keepXattr says which xattrs are part of a file's content worth moving.
// trusted.* is left out: trusted.overlay.* is overlay internals (read
// separately by Save) and a restored trusted.overlay.* on a plain directory
// could later be misread by overlayfs.
func keepXattr(name string) bool {
	switch {
	case len(name) > 5 && name[:5] == "user.", len(name) > 9 && name[:9] == "security.":
		return true
	}
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}
