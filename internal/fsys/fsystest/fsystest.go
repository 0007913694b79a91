// Package fsystest has filesystems for tests: one whose writes fail (a full or broken
// disk), one whose Stat of a path never returns (a network filesystem whose server is gone).
package fsystest

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/tardis-runtime/tardis/internal/fsys"
)

// Failing fails every write, rename, removal and directory creation whose path contains
// one of Words, with Err.
type Failing struct {
	fsys.FS
	Words []string
	Err   error
}

func (f Failing) fails(name string) error {
	for _, w := range f.Words {
		if strings.Contains(name, w) {
			return f.Err
		}
	}
	return nil
}

func (f Failing) pathErr(op, name string) error {
	if err := f.fails(name); err != nil {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

func (f Failing) WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := f.pathErr("open", name); err != nil {
		return err
	}
	return f.FS.WriteFile(name, data, perm)
}

func (f Failing) CreateTemp(dir, pattern string) (fsys.File, error) {
	if err := f.pathErr("open", dir+"/"+pattern); err != nil {
		return nil, err
	}
	return f.FS.CreateTemp(dir, pattern)
}

func (f Failing) Rename(oldpath, newpath string) error {
	if err := f.pathErr("rename", newpath); err != nil {
		return err
	}
	return f.FS.Rename(oldpath, newpath)
}

func (f Failing) MkdirAll(path string, perm fs.FileMode) error {
	if err := f.pathErr("mkdir", path); err != nil {
		return err
	}
	return f.FS.MkdirAll(path, perm)
}

func (f Failing) Remove(name string) error {
	if err := f.pathErr("remove", name); err != nil {
		return err
	}
	return f.FS.Remove(name)
}

// Hanging never returns from a Stat of Path.
type Hanging struct {
	fsys.FS
	Path string
}

func (h Hanging) Stat(name string) (fs.FileInfo, error) {
	if name == h.Path {
		select {}
	}
	return h.FS.Stat(name)
}

// Files is a read-only filesystem holding the given files (path → content), for tests that
// only read (a configuration file, a bundle's config.json). Everything else fails.
type Files map[string]string

var errReadOnly = errors.New("fsystest.Files is read-only")

func (f Files) ReadFile(name string) ([]byte, error) {
	if c, ok := f[name]; ok {
		return []byte(c), nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (f Files) Stat(name string) (fs.FileInfo, error) {
	return nil, &fs.PathError{Op: "stat", Path: name, Err: errReadOnly}
}
func (f Files) WriteFile(name string, _ []byte, _ fs.FileMode) error {
	return &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
}
func (f Files) Rename(oldpath, _ string) error {
	return &fs.PathError{Op: "rename", Path: oldpath, Err: errReadOnly}
}
func (f Files) Remove(name string) error {
	return &fs.PathError{Op: "remove", Path: name, Err: errReadOnly}
}
func (f Files) MkdirAll(path string, _ fs.FileMode) error {
	return &fs.PathError{Op: "mkdir", Path: path, Err: errReadOnly}
}
func (f Files) ReadDir(name string) ([]fs.DirEntry, error) {
	return nil, &fs.PathError{Op: "open", Path: name, Err: errReadOnly}
}
func (f Files) CreateTemp(dir, _ string) (fsys.File, error) {
	return nil, &fs.PathError{Op: "open", Path: dir, Err: errReadOnly}
}
func (f Files) Chmod(name string, _ fs.FileMode) error {
	return &fs.PathError{Op: "chmod", Path: name, Err: errReadOnly}
}
