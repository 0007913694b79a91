package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Kinds of what a key's directory holds, as Entries reports them.
const (
	KindCurrent = "current" // the checkpoint current names
	KindClaimed = "claimed" // a checkpoint a claim link names: a restore holds it (live, or left by a crash)
	KindAside   = "aside"   // set aside after a failed restore, with REASON
	KindOrphan  = "orphan"  // a ckpt- directory neither current nor a claim names (a crash between rename and link swap)
	KindPartial = "partial" // a .tmp- directory, a stray .current- link, a consumed- directory, or a claim whose checkpoint is gone
)

// Entry is one thing in a key's directory.
type Entry struct {
	Ref
	Name, Kind string
	NameKind   NameKind
	Dir        string    // its path
	Stamp      time.Time // from its name; zero when the name carries none
	ModTime    time.Time // of the directory (or link)
	SetAside   time.Time // KindAside: when REASON was written (zero when unknown)
	// KindClaimed: the claim link's name, the node holding it and when it claimed. A dangling
	// claim (KindPartial) carries its owner too.
	Claim         string
	ClaimOwner    string
	Claimed       time.Time
	DanglingClaim bool
}

// Checkpoint returns the entry as a checkpoint (for ReadManifest, Validate and Images); a
// claimed one carries its claim link.
func (e Entry) Checkpoint() *Checkpoint {
	c := &Checkpoint{Ref: e.Ref, Name: e.Name, Dir: e.Dir}
	if e.Claim != "" {
		c.Claim = filepath.Join(filepath.Dir(e.Dir), e.Claim)
	}
	return c
}

// Entries lists what the key's directory holds, classified by Classify, sorted by kind
// (current, claimed, aside, orphan, partial) then by name. A current or claim link that
// does not name a checkpoint is reported in the error; then no ckpt- directory is called
// an orphan. A key without a directory has no entries; names that are not tardis's are
// left out.
func (s Store) Entries(r Ref) ([]Entry, error) {
	dir, err := s.keyDir(r, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", r, err)
	}
	cur, linkErr := s.readLink(r, dir, CurrentLink)
	claims := map[string]Entry{} // checkpoint name → its claim
	var out []Entry
	var errs []error
	for _, de := range des {
		n := Classify(de.Name(), de.Type())
		if n.Kind != NameClaim {
			continue
		}
		e := Entry{Ref: r, Name: de.Name(), NameKind: NameClaim, Dir: filepath.Join(dir, de.Name()),
			Stamp: n.Stamp, Claim: de.Name(), ClaimOwner: n.Owner, Claimed: n.Stamp}
		if target, err := os.Readlink(e.Dir); err == nil && isCheckpointName(target) && !exists(filepath.Join(dir, target)) {
			e.Kind, e.DanglingClaim = KindPartial, true
			out = append(out, withModTime(e, de))
			continue
		}
		c, err := s.readLink(r, dir, de.Name())
		switch {
		case err != nil:
			errs = append(errs, err)
			linkErr = errors.Join(linkErr, err)
		case c != nil:
			claims[c.Name] = e
		}
	}
	for _, de := range des {
		n := Classify(de.Name(), de.Type())
		e := Entry{Ref: r, Name: de.Name(), NameKind: n.Kind, Dir: filepath.Join(dir, de.Name()), Stamp: n.Stamp}
		switch n.Kind {
		case NameCheckpoint:
			if cl, ok := claims[e.Name]; ok {
				e.Kind, e.Claim, e.ClaimOwner, e.Claimed = KindClaimed, cl.Claim, cl.ClaimOwner, cl.Claimed
				break
			}
			switch {
			case cur != nil && cur.Name == e.Name:
				e.Kind = KindCurrent
			case linkErr != nil:
				continue // a link is unreadable: do not guess which one it meant
			default:
				e.Kind = KindOrphan
			}
		case NameAside:
			e.Kind = KindAside
			if st, err := os.Lstat(filepath.Join(e.Dir, ReasonFile)); err == nil {
				e.SetAside = st.ModTime()
			}
		case NameTemp, NameTempLink, NameConsumed:
			e.Kind = KindPartial
		default:
			continue
		}
		out = append(out, withModTime(e, de))
	}
	rank := map[string]int{KindCurrent: 0, KindClaimed: 1, KindAside: 2, KindOrphan: 3, KindPartial: 4}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return rank[out[i].Kind] < rank[out[j].Kind]
		}
		return out[i].Name < out[j].Name
	})
	if linkErr != nil {
		errs = append(errs, linkErr)
	}
	return out, errors.Join(errs...)
}

func withModTime(e Entry, de fs.DirEntry) Entry {
	if info, err := de.Info(); err == nil {
		e.ModTime = info.ModTime()
	}
	return e
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// maxReason bounds what is read of a REASON file.
const maxReason = 64 << 10

// ReadReason returns the REASON of a set-aside checkpoint directory, without its final newline.
func ReadReason(dir string) (string, error) {
	f, err := os.OpenFile(filepath.Join(dir, ReasonFile), os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return "", fmt.Errorf("reason: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReason))
	if err != nil {
		return "", fmt.Errorf("reason: %w", err)
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// RemoveEntry removes what Entries listed. A current checkpoint is unlinked first (as
// Consume does), so that no reader is left with a current link to a half-removed
// directory. A claimed checkpoint is never removed here: see ReleaseClaim. The caller
// holds the key's lock.
func (s Store) RemoveEntry(e Entry) error {
	keyDir, err := s.keyDir(e.Ref, false)
	if err != nil {
		return err
	}
	if filepath.Base(e.Name) != e.Name || e.Dir != filepath.Join(keyDir, e.Name) {
		return fmt.Errorf("remove %s: not an entry of key %s", e.Dir, e.Ref)
	}
	switch e.Kind {
	case KindCurrent:
		err = s.Consume(e.Checkpoint())
	case KindAside, KindOrphan, KindPartial:
		// Garbage in a key directory that passed its checks goes whatever its owner or
		// mode; it is only never followed if it is a symlink where a directory should be.
		if e.NameKind != NameTempLink && !e.DanglingClaim {
			if st, lerr := os.Lstat(e.Dir); lerr == nil && !st.IsDir() {
				return fmt.Errorf("remove %s: %w", e.Name, unsafef("%s is not a directory", e.Dir))
			}
		}
		if err = os.RemoveAll(e.Dir); err != nil {
			err = fmt.Errorf("remove %s: %w", e.Name, err)
		}
	case KindClaimed:
		return fmt.Errorf("remove %s: claimed by %s for a restore (release the claim first)", e.Name, e.ClaimOwner)
	default:
		return fmt.Errorf("remove %s: unknown kind %q", e.Name, e.Kind)
	}
	if err != nil {
		return err
	}
	return syncPath(keyDir)
}

// ReleaseClaim ends a claim that its node left (tardisctl gc, past an explicit age): the
// claimed checkpoint becomes current again when the key has none, and is set aside (with
// the reason) when a newer one was published since. It returns what became of it.
func (s Store) ReleaseClaim(e Entry, reason string) (string, error) {
	if e.Kind != KindClaimed {
		return "", fmt.Errorf("release %s: not claimed", e.Name)
	}
	c := e.Checkpoint()
	keyDir, err := s.keyDir(e.Ref, false)
	if err != nil {
		return "", err
	}
	if cur, _ := s.readLink(e.Ref, keyDir, CurrentLink); cur == nil {
		if err := os.Rename(c.Claim, filepath.Join(keyDir, CurrentLink)); err != nil {
			return "", fmt.Errorf("release %s: %w", e.Name, err)
		}
		return "current again", syncPath(keyDir)
	}
	aside, err := s.SetAside(c, reason)
	if err != nil {
		return "", err
	}
	return "set aside as " + filepath.Base(aside), nil
}

// RemoveKeyDirIfEmpty removes the key's directory when nothing is left in it (and then the
// tenant's, when that is empty too); it reports whether it removed the key's.
func (s Store) RemoveKeyDirIfEmpty(r Ref) bool {
	dir, err := s.keyDir(r, false)
	if err != nil || os.Remove(dir) != nil {
		return false
	}
	_ = os.Remove(filepath.Dir(dir))
	return true
}

// DirSize is the total size of the regular files under dir (for checkpoints whose
// manifest cannot be read).
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// Size is the sum of the sizes of the files a manifest lists.
func (m *Manifest) Size() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}
