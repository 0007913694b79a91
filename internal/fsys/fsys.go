// Package fsys is the filesystem as tardis uses it by path: its configuration file, its
// state files, bundles' config.json. tardis takes it as an interface (Env.FS), so that tests
// run it on a filesystem that fails, fills up or hangs (fsystest).
//
// It is eight operations of tardis's own rather than afero.Fs: afero's package links
// net/http (for its HttpFs), whose initialisation, with crypto/tls's and x509's, would run on
// every runc call tardis passes through (measured: about 6% of a `runc state`). What needs a
// real file descriptor for safety (openat2 in rootfs, the store's lstat checks, the
// network-filesystem resolution in optin) works on the real filesystem, and says so.
package fsys

import (
	"io/fs"
	"os"
)

// FS is what tardis does with files by path.
type FS interface {
	ReadFile(name string) ([]byte, error)
	WriteFile(name string, data []byte, perm fs.FileMode) error
	Stat(name string) (fs.FileInfo, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	MkdirAll(path string, perm fs.FileMode) error
	ReadDir(name string) ([]fs.DirEntry, error)
	// CreateTemp makes a new file in dir, as os.CreateTemp.
	CreateTemp(dir, pattern string) (File, error)
	Chmod(name string, mode fs.FileMode) error
}

// File is a file being written.
type File interface {
	Name() string
	Write(p []byte) (int, error)
	Sync() error
	Close() error
}

// OS is the real filesystem.
type OS struct{}

var _ FS = OS{}

func (OS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }
func (OS) WriteFile(name string, data []byte, perm fs.FileMode) error {
	return os.WriteFile(name, data, perm)
}
func (OS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }
func (OS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (OS) Remove(name string) error                     { return os.Remove(name) }
func (OS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }
func (OS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
func (OS) Chmod(name string, mode fs.FileMode) error    { return os.Chmod(name, mode) }
func (OS) CreateTemp(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
