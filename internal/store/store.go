// Package store keeps checkpoints under the checkpoint root, one current checkpoint per key:
//
//	<root>/<key>/current          symlink to the current checkpoint's directory
//	<root>/<key>/ckpt-<stamp>/    manifest.json, images/ (CRIU), rootfs.tar (container files)
//	<root>/<key>/.tmp-<stamp>/    a checkpoint being written (never read)
//	<root>/<key>/aside-<stamp>/   a checkpoint set aside after a failed restore, with REASON
//	<root>/<key>/consumed-<stamp>/ a checkpoint restored from, being removed
//
// A checkpoint is published by renaming its finished directory into place and then
// swapping the current symlink with rename(2), so a crash at any moment leaves either the
// previous complete checkpoint or the new complete one as current. Checkpoints hold process
// memory: directories are 0700 and files 0600.
package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	currentLink  = "current"
	ManifestName = "manifest.json"
	ImagesDir    = "images"
	RootfsTar    = "rootfs.tar"
	ReasonFile   = "REASON"
)

// Store is the checkpoint root.
type Store struct{ Root string }

// Checkpoint is a published checkpoint.
type Checkpoint struct {
	Key, Name, Dir string
	Claim          string // the claim link, when this process claimed it for a restore
}

// Images is the CRIU image directory of a checkpoint.
func (c *Checkpoint) Images() string { return filepath.Join(c.Dir, ImagesDir) }

// KeyDir is the directory of a key, which the caller has checked is a safe name.
func (s Store) KeyDir(key string) string { return filepath.Join(s.Root, key) }

// Current returns the key's current checkpoint, or nil when it has none.
func (s Store) Current(key string) (*Checkpoint, error) {
	return s.readLink(key, filepath.Join(s.KeyDir(key), currentLink))
}

// readLink reads a current or claim link of key.
func (s Store) readLink(key, link string) (*Checkpoint, error) {
	target, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", link, err)
	}
	if target != filepath.Base(target) || !strings.HasPrefix(target, "ckpt-") {
		return nil, fmt.Errorf("checkpoint %s: link to %q is not a checkpoint of this key", link, target)
	}
	return &Checkpoint{Key: key, Name: target, Dir: filepath.Join(s.KeyDir(key), target)}, nil
}

// Pending is a checkpoint being written.
type Pending struct {
	store     Store
	Key, Name string
	Dir       string // the temporary directory
	// Crash, when set, is called at each point of Publish where a crash must be survivable
	// (fault injection in tests).
	Crash func(point string)
}

func (p *Pending) crash(point string) {
	if p.Crash != nil {
		p.Crash(point)
	}
}

// Images is where CRIU writes.
func (p *Pending) Images() string { return filepath.Join(p.Dir, ImagesDir) }

// RootfsArchive is where the container's files go.
func (p *Pending) RootfsArchive() string { return filepath.Join(p.Dir, RootfsTar) }

func stamp() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}

// Begin starts a new checkpoint for key in a temporary directory.
func (s Store) Begin(key string) (*Pending, error) {
	name := "ckpt-" + stamp()
	dir := filepath.Join(s.KeyDir(key), ".tmp-"+strings.TrimPrefix(name, "ckpt-"))
	if err := os.MkdirAll(filepath.Join(dir, ImagesDir), 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint dir: %w", err)
	}
	for _, d := range []string{s.Root, s.KeyDir(key), dir} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("checkpoint dir: %w", err)
		}
	}
	return &Pending{store: s, Key: key, Name: name, Dir: dir}, nil
}

// Discard removes a checkpoint that will not be published.
func (p *Pending) Discard() error {
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("remove partial checkpoint: %w", err)
	}
	return nil
}

// Publish writes the manifest (listing every file with its size), syncs everything, and
// makes the checkpoint the key's current one, removing the previous one.
func (p *Pending) Publish(m *Manifest) (*Checkpoint, error) {
	files, err := listFiles(p.Dir)
	if err != nil {
		return nil, err
	}
	m.Files = files
	if err := writeManifest(filepath.Join(p.Dir, ManifestName), m); err != nil {
		return nil, err
	}
	if err := syncTree(p.Dir); err != nil {
		return nil, err
	}
	keyDir := p.store.KeyDir(p.Key)
	final := filepath.Join(keyDir, p.Name)
	p.crash("publish:before-rename")
	if err := os.Rename(p.Dir, final); err != nil {
		return nil, fmt.Errorf("publish checkpoint: %w", err)
	}
	p.Dir = final
	p.crash("publish:before-swap")
	prev, _ := p.store.Current(p.Key)
	tmpLink := filepath.Join(keyDir, ".current-"+strings.TrimPrefix(p.Name, "ckpt-"))
	if err := os.Symlink(p.Name, tmpLink); err != nil {
		return nil, fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(keyDir, currentLink)); err != nil {
		_ = os.Remove(tmpLink)
		return nil, fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := syncPath(keyDir); err != nil {
		return nil, err
	}
	c := &Checkpoint{Key: p.Key, Name: p.Name, Dir: final}
	p.crash("publish:after-swap")
	if prev != nil && prev.Name != p.Name {
		if err := os.RemoveAll(prev.Dir); err != nil {
			return c, fmt.Errorf("remove previous checkpoint %s: %w", prev.Name, err)
		}
	}
	return c, nil
}

// Claim takes the key's current checkpoint for a restore by this owner (a node name): the
// current link is renamed to .claimed-<owner>-<stamp>, atomically, so that of two nodes
// restoring one key at once from a shared root only one gets it. Nil when there is no
// current checkpoint (any more). The claim ends with Retire or SetAside; a claim left by a
// crash is taken back by Reclaim.
func (s Store) Claim(key, owner string) (*Checkpoint, error) {
	claim := filepath.Join(s.KeyDir(key), ".claimed-"+owner+"-"+stamp())
	if err := os.Rename(filepath.Join(s.KeyDir(key), currentLink), claim); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("claim checkpoint of %s: %w", key, err)
	}
	c, err := s.readLink(key, claim)
	if err != nil {
		return nil, err
	}
	c.Claim = claim
	return c, nil
}

// Reclaim undoes claims of this owner that a crash left behind: the newest claimed
// checkpoint becomes current again unless a newer checkpoint was published since (then
// the claimed one is removed). The caller holds the key's lock, so no claim of this owner
// is live. It returns the checkpoints it put back or removed.
func (s Store) Reclaim(key, owner string) ([]string, error) {
	links, _ := filepath.Glob(filepath.Join(s.KeyDir(key), ".claimed-"+owner+"-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(links))) // newest first
	var done []string
	var errs []error
	for _, link := range links {
		c, err := s.readLink(key, link)
		if err != nil {
			errs = append(errs, err, os.Remove(link))
			continue
		}
		c.Claim = link
		cur, _ := s.Current(key)
		if cur == nil {
			err = os.Rename(link, filepath.Join(s.KeyDir(key), currentLink))
		} else {
			err = s.Consume(c)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, c.Name)
	}
	return done, errors.Join(errs...)
}

// Consume removes a checkpoint.
func (s Store) Consume(c *Checkpoint) error {
	return s.drop(c, func() error { return os.RemoveAll(c.Dir) })
}

// Retire takes a checkpoint out of use at once (after a successful restore): it is no
// longer current and is renamed consumed-<stamp>, to be removed later (deleting gigabytes
// of images is not something a container's create should wait for). It returns the new
// path.
func (s Store) Retire(c *Checkpoint) (string, error) {
	retired := filepath.Join(s.KeyDir(c.Key), "consumed-"+strings.TrimPrefix(c.Name, "ckpt-"))
	return retired, s.drop(c, func() error { return os.Rename(c.Dir, retired) })
}

// IsRetired reports whether path is a retired checkpoint of this store (and so may be
// removed): <root>/<key>/consumed-*.
func (s Store) IsRetired(path string) bool {
	key, name := filepath.Split(filepath.Clean(path))
	return filepath.Dir(filepath.Clean(key)) == filepath.Clean(s.Root) &&
		strings.HasPrefix(name, "consumed-") && !strings.ContainsAny(name, "/")
}

// SetAside moves a checkpoint that failed out of the way, keeping it with the reason, so
// that it is neither tried again nor silently lost.
func (s Store) SetAside(c *Checkpoint, reason string) (string, error) {
	aside := filepath.Join(s.KeyDir(c.Key), "aside-"+strings.TrimPrefix(c.Name, "ckpt-"))
	err := s.drop(c, func() error {
		if err := os.Rename(c.Dir, aside); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(aside, ReasonFile), []byte(reason+"\n"), 0o600)
	})
	return aside, err
}

// drop unlinks current when it names c (and c's claim link), then does what else is asked
// with the directory.
func (s Store) drop(c *Checkpoint, then func() error) error {
	link := filepath.Join(s.KeyDir(c.Key), currentLink)
	if cur, _ := s.Current(c.Key); cur != nil && cur.Name == c.Name {
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint %s: %w", c.Name, err)
		}
	}
	if c.Claim != "" {
		if err := os.Remove(c.Claim); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint %s: %w", c.Name, err)
		}
	}
	if err := then(); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.Name, err)
	}
	return nil
}

// RemoveOlderThan removes the key's current checkpoint when it was made before t (a
// container that ended on its own leaves nothing behind; a newer checkpoint belongs to
// another incarnation), and any leftover temporary or retired directory. It returns what
// it removed.
func (s Store) RemoveOlderThan(key string, t time.Time) ([]string, error) {
	var removed []string
	var errs []error
	c, err := s.Current(key)
	if err != nil {
		errs = append(errs, err)
	}
	if c != nil {
		if m, err := ReadManifest(c.Dir); err != nil || m.Created.Before(t) {
			if err := s.Consume(c); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, c.Name)
			}
		}
	}
	entries, _ := os.ReadDir(s.KeyDir(key))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), "consumed-") {
			if err := os.RemoveAll(filepath.Join(s.KeyDir(key), e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", e.Name(), err))
			} else {
				removed = append(removed, e.Name())
			}
		}
	}
	return removed, errors.Join(errs...)
}

// Keys lists the keys that have a directory under the root.
func (s Store) Keys() ([]string, error) {
	entries, err := os.ReadDir(s.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint root: %w", err)
	}
	var keys []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			keys = append(keys, e.Name())
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func listFiles(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == ManifestName {
			return nil
		}
		if info.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return err
			}
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list checkpoint files: %w", err)
	}
	return files, nil
}

// syncTree makes every file and directory under dir durable. Writeback of all files is
// started first and waited for after, so that the disk works on all of them at once
// rather than one fsync after another.
func syncTree(dir string) error {
	var files, dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			dirs = append(dirs, path)
		case d.Type().IsRegular():
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	for _, p := range files {
		if f, err := os.Open(p); err == nil {
			_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE) // a hint only
			f.Close()
		}
	}
	for _, p := range append(files, dirs...) {
		if err := syncPath(p); err != nil {
			return err
		}
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
