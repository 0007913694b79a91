// Package store keeps checkpoints under the checkpoint root, one current checkpoint per key
// of each tenant. layout.go declares every name the store uses (one table); secure.go says
// what is checked before anything in the store is used.
//
// A tenant is the unit of trust: a checkpoint written by one tenant lives under that
// tenant's directory and is never listed, restored or consumed by another, whatever key it
// names. A checkpoint is published by renaming its finished directory into place and then
// swapping the current symlink with rename(2), so a crash at any moment leaves either the
// previous complete checkpoint or the new complete one as current. A restore first claims
// the checkpoint by renaming current to a claim link, so that of two nodes sharing the root
// only one restores it. Checkpoints hold process memory: directories are 0700, files 0600.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Store is the checkpoint root.
type Store struct {
	Root string
	// Owner is the user that owns everything in the store (tardis's effective uid); what
	// another user owns is refused.
	Owner int
	// SigningKey, when set, makes Publish sign every manifest (an HMAC over it, listing every
	// file with its SHA-256) and Validate refuse what is unsigned or does not match.
	SigningKey []byte
}

// New is the store at root, owned by this process's user.
func New(root string, signingKey []byte) Store {
	return Store{Root: root, Owner: os.Geteuid(), SigningKey: signingKey}
}

// Ref names one key of one tenant.
type Ref struct{ Tenant, Key string }

func (r Ref) String() string { return r.Tenant + "/" + r.Key }

// Check refuses a tenant or key that is not a safe name.
func (r Ref) Check() error {
	if err := checkName(r.Tenant); err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	if err := checkName(r.Key); err != nil {
		return fmt.Errorf("key: %w", err)
	}
	return nil
}

// KeyDir is the directory of a key (no I/O); an unsafe tenant or key is an error.
func (s Store) KeyDir(r Ref) (string, error) {
	if err := r.Check(); err != nil {
		return "", fmt.Errorf("checkpoint key: %w", err)
	}
	return filepath.Join(s.Root, r.Tenant, r.Key), nil
}

// Checkpoint is a published checkpoint.
type Checkpoint struct {
	Ref
	Name, Dir string
	Claim     string // the claim link, when this process claimed it for a restore
}

// Images is the CRIU image directory of a checkpoint.
func (c *Checkpoint) Images() string { return filepath.Join(c.Dir, ImagesDir) }

// Current returns the key's current checkpoint, or nil when it has none.
func (s Store) Current(r Ref) (*Checkpoint, error) {
	dir, err := s.keyDir(r, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.readLink(r, dir, CurrentLink)
}

// readLink reads a current or claim link of a key: it must name a ckpt-<stamp> directory
// of the same key, which must be as tardis makes them. Nil when the link is missing.
func (s Store) readLink(r Ref, keyDir, link string) (*Checkpoint, error) {
	path := filepath.Join(keyDir, link)
	target, err := os.Readlink(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", r, err)
	}
	if !isCheckpointName(target) {
		return nil, unsafef("%s links to %q, not to a checkpoint of its key", path, target)
	}
	c := &Checkpoint{Ref: r, Name: target, Dir: filepath.Join(keyDir, target)}
	if err := s.checkDir(c.Dir); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", r, err)
	}
	return c, nil
}

// Pending is a checkpoint being written.
type Pending struct {
	store Store
	Ref
	Name   string // the name it will be published under
	Dir    string // the temporary directory
	keyDir string
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

// Begin starts a new checkpoint for a key in a temporary directory.
func (s Store) Begin(r Ref) (*Pending, error) {
	keyDir, err := s.keyDir(r, true)
	if err != nil {
		return nil, err
	}
	stamp := newStamp()
	dir := filepath.Join(keyDir, tempName(stamp))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint dir: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, ImagesDir), 0o700); err != nil {
		return nil, errors.Join(fmt.Errorf("checkpoint dir: %w", err), os.RemoveAll(dir))
	}
	return &Pending{store: s, Ref: r, Name: checkpointName(stamp), Dir: dir, keyDir: keyDir}, nil
}

// Reopen returns the pending checkpoint in the temporary directory dir (a .tmp- directory
// of the key, as Begin made it), for publishing a dump that an interrupted stop left.
func (s Store) Reopen(r Ref, dir string) (*Pending, error) {
	keyDir, err := s.keyDir(r, false)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(dir)
	if filepath.Join(keyDir, name) != filepath.Clean(dir) || Classify(name, fs.ModeDir).Kind != NameTemp {
		return nil, unsafef("%s is not a pending checkpoint of %s", dir, r)
	}
	if err := s.checkDir(dir); err != nil {
		return nil, err
	}
	return &Pending{store: s, Ref: r, Name: checkpointName(stampOf(name)), Dir: dir, keyDir: keyDir}, nil
}

// Discard removes a checkpoint that will not be published.
func (p *Pending) Discard() error {
	if err := os.RemoveAll(p.Dir); err != nil {
		return fmt.Errorf("remove partial checkpoint: %w", err)
	}
	return nil
}

// Publish writes the manifest (listing every file with its size, and when the store signs,
// its SHA-256 and the signature), syncs everything, and makes the checkpoint the key's
// current one, removing the previous one.
func (p *Pending) Publish(m *Manifest) (*Checkpoint, error) {
	files, err := p.store.listFiles(p.Dir)
	if err != nil {
		return nil, err
	}
	m.Version, m.Tenant, m.Key, m.Files = versionOf(m), p.Tenant, p.Key, files
	if err := p.store.sign(p.Dir, m); err != nil {
		return nil, err
	}
	if err := writeManifest(filepath.Join(p.Dir, ManifestName), m); err != nil {
		return nil, err
	}
	if err := syncTree(p.Dir); err != nil {
		return nil, err
	}
	final := filepath.Join(p.keyDir, p.Name)
	p.crash("publish:before-rename")
	if err := os.Rename(p.Dir, final); err != nil {
		return nil, fmt.Errorf("publish checkpoint: %w", err)
	}
	p.Dir = final
	p.crash("publish:before-swap")
	return p.store.makeCurrent(p.Ref, p.keyDir, p.Name, p.crash)
}

// makeCurrent swaps the key's current link to the checkpoint name (by rename, atomically),
// then removes the previous current checkpoint.
func (s Store) makeCurrent(r Ref, keyDir, name string, crash func(string)) (*Checkpoint, error) {
	prev, _ := s.readLink(r, keyDir, CurrentLink)
	tmpLink := filepath.Join(keyDir, tempLinkName(stampOf(name)))
	if err := os.Symlink(name, tmpLink); err != nil {
		return nil, fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(keyDir, CurrentLink)); err != nil {
		_ = os.Remove(tmpLink)
		return nil, fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := syncPath(keyDir); err != nil {
		return nil, err
	}
	c := &Checkpoint{Ref: r, Name: name, Dir: filepath.Join(keyDir, name)}
	if crash != nil {
		crash("publish:after-swap")
	}
	if prev != nil && prev.Name != name {
		if err := os.RemoveAll(prev.Dir); err != nil {
			return c, fmt.Errorf("remove previous checkpoint %s: %w", prev.Name, err)
		}
	}
	return c, nil
}

// Adopt finishes the publication of the pending checkpoint that was in tmpDir when a crash
// came between its rename into place and the swap of current: when its ckpt- directory is
// there with its manifest and is not current, it becomes current (the previous current is
// older: checkpoints of a key are made one at a time, under its lock). Nil when there is
// nothing to adopt.
func (s Store) Adopt(r Ref, tmpDir string) (*Checkpoint, error) {
	keyDir, err := s.keyDir(r, false)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(tmpDir)
	if filepath.Join(keyDir, base) != filepath.Clean(tmpDir) || Classify(base, fs.ModeDir).Kind != NameTemp {
		return nil, unsafef("%s is not a pending checkpoint of %s", tmpDir, r)
	}
	name := checkpointName(stampOf(base))
	dir := filepath.Join(keyDir, name)
	if err := s.checkDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	if cur, _ := s.readLink(r, keyDir, CurrentLink); cur != nil && cur.Name == name {
		return nil, nil
	}
	if _, err := s.checkFile(filepath.Join(dir, ManifestName)); err != nil {
		return nil, fmt.Errorf("adopt %s: %w", name, err)
	}
	return s.makeCurrent(r, keyDir, name, nil)
}

// Claim takes the key's current checkpoint for a restore by this owner (a node name): the
// current link is renamed to .claimed-<owner>-<stamp>, atomically, so that of two nodes
// restoring one key at once from a shared root only one gets it. Nil when there is no
// current checkpoint (any more). The claim ends with Retire, SetAside or Unclaim; a claim
// left by a crash is taken back by Reclaim, one of a dead node by tardisctl gc.
func (s Store) Claim(r Ref, owner string) (*Checkpoint, error) {
	if err := checkName(owner); err != nil {
		return nil, fmt.Errorf("claim owner: %w", err)
	}
	keyDir, err := s.keyDir(r, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	claim := claimName(owner)
	if err := os.Rename(filepath.Join(keyDir, CurrentLink), filepath.Join(keyDir, claim)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("claim checkpoint of %s: %w", r, err)
	}
	c, err := s.readLink(r, keyDir, claim)
	if err == nil && c == nil {
		err = fmt.Errorf("claim checkpoint of %s: claim link vanished", r)
	}
	if err != nil {
		return nil, err
	}
	c.Claim = filepath.Join(keyDir, claim)
	return c, nil
}

// Unclaim gives a claimed checkpoint back (it becomes current again) when the restore that
// claimed it decided not to restore it; if another checkpoint was published meanwhile, the
// claimed one is the older and is removed.
func (s Store) Unclaim(c *Checkpoint) error {
	if c.Claim == "" {
		return nil
	}
	keyDir := filepath.Dir(c.Claim)
	if cur, _ := s.readLink(c.Ref, keyDir, CurrentLink); cur != nil {
		return s.Consume(c)
	}
	if err := os.Rename(c.Claim, filepath.Join(keyDir, CurrentLink)); err != nil {
		return fmt.Errorf("give back checkpoint %s: %w", c.Name, err)
	}
	c.Claim = ""
	return syncPath(keyDir)
}

// Reclaim undoes claims of this owner that a crash left behind: the newest claimed
// checkpoint becomes current again unless a newer checkpoint was published since (then
// the claimed one is removed); a claim whose checkpoint is gone is removed. The caller
// holds the key's lock, so no claim of this owner is live. It returns the checkpoints it
// put back or removed.
func (s Store) Reclaim(r Ref, owner string) ([]string, error) {
	entries, err := s.Entries(r)
	if err != nil && len(entries) == 0 {
		return nil, err
	}
	var claims []Entry
	for _, e := range entries {
		if e.Kind == KindClaimed && e.ClaimOwner == owner {
			claims = append(claims, e)
		}
	}
	sort.Slice(claims, func(i, j int) bool { return claims[i].Claimed.After(claims[j].Claimed) }) // newest first
	var done []string
	var errs []error
	for _, e := range claims {
		c := e.Checkpoint()
		if err := s.Unclaim(c); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, c.Name)
	}
	keyDir, _ := s.KeyDir(r)
	for _, e := range entries {
		if e.Kind == KindPartial && e.DanglingClaim && e.ClaimOwner == owner {
			if err := os.Remove(filepath.Join(keyDir, e.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			} else {
				done = append(done, e.Name)
			}
		}
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
	retired := filepath.Join(filepath.Dir(c.Dir), consumedName(stampOf(c.Name)))
	return retired, s.drop(c, func() error { return os.Rename(c.Dir, retired) })
}

// IsRetired reports whether path is a retired checkpoint of this store (and so may be
// removed): <root>/<tenant>/<key>/consumed-<stamp>, a real directory.
func (s Store) IsRetired(path string) bool {
	path = filepath.Clean(path)
	keyDir := filepath.Dir(path)
	tenantDir := filepath.Dir(keyDir)
	r := Ref{Tenant: filepath.Base(tenantDir), Key: filepath.Base(keyDir)}
	if filepath.Dir(tenantDir) != filepath.Clean(s.Root) || r.Check() != nil {
		return false
	}
	if _, err := s.keyDir(r, false); err != nil {
		return false
	}
	st, err := os.Lstat(path)
	return err == nil && Classify(filepath.Base(path), st.Mode().Type()).Kind == NameConsumed
}

// SetAside moves a checkpoint that failed out of the way, keeping it with the reason, so
// that it is neither tried again nor silently lost.
func (s Store) SetAside(c *Checkpoint, reason string) (string, error) {
	aside := filepath.Join(filepath.Dir(c.Dir), asideName(stampOf(c.Name)))
	err := s.drop(c, func() error {
		if err := os.Rename(c.Dir, aside); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(aside, ReasonFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		_, err = f.WriteString(reason + "\n")
		return errors.Join(err, f.Close())
	})
	return aside, err
}

// drop unlinks current when it names c (and c's claim link), then does what else is asked
// with the directory.
func (s Store) drop(c *Checkpoint, then func() error) error {
	keyDir := filepath.Dir(c.Dir)
	if err := s.checkDir(c.Dir); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c.Name, err)
	}
	if cur, _ := s.readLink(c.Ref, keyDir, CurrentLink); cur != nil && cur.Name == c.Name {
		if err := os.Remove(filepath.Join(keyDir, CurrentLink)); err != nil && !errors.Is(err, fs.ErrNotExist) {
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

// ForgetBefore removes the key's current checkpoint when it was made before t (a container
// that ended on its own leaves nothing behind; a newer checkpoint belongs to another
// incarnation), and any leftover temporary or retired directory. Claimed checkpoints are
// never touched: a restore holds them. It returns what it removed.
func (s Store) ForgetBefore(r Ref, t time.Time) ([]string, error) {
	entries, err := s.Entries(r)
	var removed []string
	errs := []error{err}
	for _, e := range entries {
		switch {
		case e.Kind == KindCurrent:
			if m, err := ReadManifest(e.Dir); err == nil && !m.Created.Before(t) {
				continue
			}
		case e.Kind == KindPartial && (e.NameKind == NameTemp || e.NameKind == NameConsumed):
		default:
			continue
		}
		if err := s.RemoveEntry(e); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, e.Name)
		}
	}
	return removed, errors.Join(errs...)
}

// Tenants lists the tenants that have a directory under the root (safe names only).
func (s Store) Tenants() ([]string, error) {
	if err := s.checkRoot(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return s.dirNames(s.Root)
}

// Keys lists the keys of a tenant.
func (s Store) Keys(tenant string) ([]string, error) {
	if err := checkName(tenant); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	dir := filepath.Join(s.Root, tenant)
	if err := s.checkDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return s.dirNames(dir)
}

// dirNames are the subdirectories of dir with safe names, sorted; anything else is not
// tardis's and is reported in the error.
func (s Store) dirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint root: %w", err)
	}
	var names []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || checkName(e.Name()) != nil {
			errs = append(errs, unsafef("%s is not tardis's", filepath.Join(dir, e.Name())))
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, errors.Join(errs...)
}

// Refs lists every key of every tenant.
func (s Store) Refs() ([]Ref, error) {
	tenants, err := s.Tenants()
	errs := []error{err}
	var refs []Ref
	for _, t := range tenants {
		keys, err := s.Keys(t)
		errs = append(errs, err)
		for _, k := range keys {
			refs = append(refs, Ref{Tenant: t, Key: k})
		}
	}
	return refs, errors.Join(errs...)
}

// listFiles lists the regular files of a checkpoint being published (but the manifest),
// tightening modes to 0600 (CRIU writes 0644). Anything but regular files and directories
// is refused: nothing CRIU or tardis writes is anything else.
func (s Store) listFiles(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Type()&fs.ModeSymlink == 0 && path != dir {
				return os.Chmod(path, 0o700)
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return unsafef("%s is not a regular file", path)
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
		hintWriteback(p) // all of them on their way to the disk before the first fsync waits
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
