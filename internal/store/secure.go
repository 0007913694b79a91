package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnsafe is wrapped when something in the checkpoint root is not as tardis makes it: a
// symlink where a directory should be, a file or directory owned by another user or with
// looser modes, a group- or world-writable root. The store may be shared by many nodes
// and written by anyone who can reach it: nothing in it is followed, chmod'ed, written or
// removed until it passed these checks.
//
// Why paths and lstat rather than a file-descriptor walk (openat2): every directory from
// the root down is checked to be a real directory owned by tardis's user and not writable
// by anyone else before anything under it is used; an entry in such a directory can only
// be replaced by that same user (root), so a check then use by path cannot be raced by an
// attacker. CRIU and runc read the images by path anyway.
var ErrUnsafe = errors.New("unsafe checkpoint store")

func unsafef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsafe, fmt.Sprintf(format, a...))
}

// checkRoot checks the checkpoint root: a real directory, owned by tardis's user, not
// writable by group or others.
func (s Store) checkRoot() error {
	st, err := os.Lstat(s.Root)
	if err != nil {
		return fmt.Errorf("checkpoint root: %w", err)
	}
	return s.checkOwned(s.Root, st, fs.ModeDir, 0o022)
}

// checkDir checks a directory tardis made under the root: a real directory (not a
// symlink), owned by tardis's user, with no permission for group or others (0700).
func (s Store) checkDir(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return s.checkOwned(path, st, fs.ModeDir, 0o077)
}

// checkFile checks a file of a checkpoint: a regular file owned by tardis's user, 0600 or
// tighter.
func (s Store) checkFile(path string) (fs.FileInfo, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	return st, s.checkOwned(path, st, 0, 0o077)
}

// checkOwned checks that st (of path) is of type typ (fs.ModeDir, or 0 for a regular
// file), owned by s.Owner, with none of the bits in forbidden.
func (s Store) checkOwned(path string, st fs.FileInfo, typ fs.FileMode, forbidden fs.FileMode) error {
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return unsafef("%s is a symlink", path)
	case typ == fs.ModeDir && !st.IsDir():
		return unsafef("%s is not a directory", path)
	case typ == 0 && !st.Mode().IsRegular():
		return unsafef("%s is not a regular file", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != s.Owner {
		return unsafef("%s is owned by uid %d, not %d", path, sys.Uid, s.Owner)
	}
	if m := st.Mode().Perm() & forbidden; m != 0 {
		return unsafef("%s has mode %04o (group or others may %s)", path, st.Mode().Perm(), permWords(m))
	}
	return nil
}

func permWords(m fs.FileMode) string {
	switch {
	case m&0o022 != 0:
		return "write"
	case m&0o044 != 0:
		return "read"
	}
	return "enter"
}

// mkdirChecked makes dir (0700) when it is missing, then checks it as checkDir does: a
// directory that is there already is used only when it is as tardis makes them.
func (s Store) mkdirChecked(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return s.checkDir(dir)
}

// keyDir checks the path from the root down to the key's directory, making the tenant and
// key directories when create is set, and returns the key's directory.
func (s Store) keyDir(r Ref, create bool) (string, error) {
	dir, err := s.KeyDir(r)
	if err != nil {
		return "", err
	}
	if create {
		if err := os.MkdirAll(s.Root, 0o700); err != nil {
			return "", fmt.Errorf("checkpoint root: %w", err)
		}
	}
	if err := s.checkRoot(); err != nil {
		return "", err
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		var err error
		if create {
			err = s.mkdirChecked(d)
		} else {
			err = s.checkDir(d)
		}
		if err != nil {
			return "", fmt.Errorf("checkpoint key %s: %w", r, err)
		}
	}
	return dir, nil
}

// syscallNoFollow opens a file of the store without following a symlink in its place.
const syscallNoFollow = unix.O_NOFOLLOW
