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
	KindAside   = "aside"   // set aside after a failed restore, with REASON
	KindOrphan  = "orphan"  // a ckpt-* directory current does not name (a crash between rename and link swap)
	KindPartial = "partial" // a .tmp-* directory being written or left by a crash, a stray .current-* link, or a consumed-* one restored from and not yet removed
)

// stampLayout is the time part of a checkpoint's stamp (see stamp).
const stampLayout = "20060102T150405.000000000Z"

// Entry is one thing in a key's directory.
type Entry struct {
	Key, Name, Kind string
	Dir             string    // its path
	Stamp           time.Time // from its name; zero when the name carries none
	ModTime         time.Time // of the directory (or link)
	SetAside        time.Time // KindAside: when REASON was written (zero when unknown)
}

// Checkpoint returns the entry as a checkpoint (for ReadManifest, Validate and Images).
func (e Entry) Checkpoint() *Checkpoint { return &Checkpoint{Key: e.Key, Name: e.Name, Dir: e.Dir} }

// StampTime is the time in a checkpoint name (ckpt-, aside-, .tmp-, .current-); zero when
// it has none.
func StampTime(name string) time.Time {
	for _, p := range []string{"ckpt-", "aside-", ".tmp-", ".current-"} {
		if rest, ok := strings.CutPrefix(name, p); ok {
			if i := strings.LastIndexByte(rest, '-'); i > 0 {
				rest = rest[:i]
			}
			t, err := time.Parse(stampLayout, rest)
			if err == nil {
				return t
			}
			return time.Time{}
		}
	}
	return time.Time{}
}

// Entries lists what the key's directory holds (the key is a safe name the caller has
// checked), sorted by kind (current, aside, orphan, partial) then by name. A current link
// that does not name a checkpoint is reported in the error; then no ckpt-* directory is
// called an orphan. A key without a directory has no entries.
func (s Store) Entries(key string) ([]Entry, error) {
	dir := s.KeyDir(key)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", key, err)
	}
	cur, curErr := s.Current(key)
	var out []Entry
	for _, de := range des {
		name := de.Name()
		e := Entry{Key: key, Name: name, Dir: filepath.Join(dir, name), Stamp: StampTime(name)}
		switch {
		case strings.HasPrefix(name, "ckpt-") && de.IsDir():
			switch {
			case cur != nil && cur.Name == name:
				e.Kind = KindCurrent
			case curErr != nil:
				continue // current is unreadable: do not guess which one it meant
			default:
				e.Kind = KindOrphan
			}
		case strings.HasPrefix(name, "aside-") && de.IsDir():
			e.Kind = KindAside
			if st, err := os.Stat(filepath.Join(e.Dir, ReasonFile)); err == nil {
				e.SetAside = st.ModTime()
			}
		case strings.HasPrefix(name, ".tmp-") && de.IsDir(),
			strings.HasPrefix(name, "consumed-") && de.IsDir(),
			strings.HasPrefix(name, ".current-") && de.Type()&fs.ModeSymlink != 0:
			e.Kind = KindPartial
		default:
			continue
		}
		if info, err := de.Info(); err == nil {
			e.ModTime = info.ModTime()
		}
		out = append(out, e)
	}
	rank := map[string]int{KindCurrent: 0, KindAside: 1, KindOrphan: 2, KindPartial: 3}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return rank[out[i].Kind] < rank[out[j].Kind]
		}
		return out[i].Name < out[j].Name
	})
	return out, curErr
}

// maxReason bounds what is read of a REASON file.
const maxReason = 64 << 10

// ReadReason returns the REASON of a set-aside checkpoint directory, without its final newline.
func ReadReason(dir string) (string, error) {
	f, err := os.Open(filepath.Join(dir, ReasonFile))
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
// directory. The caller holds the key's lock.
func (s Store) RemoveEntry(e Entry) error {
	if filepath.Base(e.Name) != e.Name || e.Dir != filepath.Join(s.KeyDir(e.Key), e.Name) {
		return fmt.Errorf("remove %s: not an entry of key %s", e.Dir, e.Key)
	}
	var err error
	switch e.Kind {
	case KindCurrent:
		err = s.Consume(e.Checkpoint())
	case KindAside, KindOrphan, KindPartial:
		if err = os.RemoveAll(e.Dir); err != nil {
			err = fmt.Errorf("remove %s: %w", e.Name, err)
		}
	default:
		return fmt.Errorf("remove %s: unknown kind %q", e.Name, e.Kind)
	}
	if err != nil {
		return err
	}
	return syncPath(s.KeyDir(e.Key))
}

// RemoveKeyDirIfEmpty removes the key's directory when nothing is left in it; it reports
// whether it did.
func (s Store) RemoveKeyDirIfEmpty(key string) bool {
	return os.Remove(s.KeyDir(key)) == nil
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
