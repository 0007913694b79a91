// Package state keeps tardis's own state file for every opted-in container (not to be
// confused with runc's runtime state: created, running, paused, stopped). Other tools find
// every tardis-enabled container on a node with one read of the state directory.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/fsys"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/optin"
)

// How a container started.
const (
	StartedCreated  = "created"        // runc create ran (fresh start, or after a fallback)
	StartedRestored = "restored"       // runc restore ran in place of create
	StartedClient   = "client restore" // the caller's own `restore` (docker/podman checkpoint) passed through
)

// File is the state file; README.md documents it. Version changes when a field changes meaning.
type File struct {
	Version   int    `json:"version"`
	ID        string `json:"id"`
	Root      string `json:"root"` // runc's --root, as runc resolves it
	Bundle    string `json:"bundle"`
	Key       string `json:"key"`
	KeySource string `json:"key_source,omitempty"`
	Tenant    string `json:"tenant,omitempty"`
	Rootfs    string `json:"rootfs,omitempty"` // the container's root filesystem, absolute
	NetworkFS string `json:"networkfs,omitempty"`
	// Identity is what the container runs, recorded in its checkpoints.
	Identity   *optin.Identity `json:"identity,omitempty"`
	Started    string          `json:"started"`              // StartedCreated or StartedRestored
	Checkpoint string          `json:"checkpoint,omitempty"` // the checkpoint restored from
	Fallback   string          `json:"fallback,omitempty"`   // why a restore was not done, if one was tried
	Created    time.Time       `json:"created"`
	Updated    time.Time       `json:"updated"`
	// StartPending: restored in place of create; the next `start` only records it.
	StartPending bool `json:"start_pending,omitempty"`
	// Checkpointed is when the container was checkpointed during its life (then its exit is
	// not its own and its key's checkpoint stays).
	Checkpointed *time.Time `json:"checkpointed,omitempty"`
	// Stopping is when tardis began to checkpoint the container for a stop: from then on,
	// the container's end is tardis's doing (even if the checkpoint failed or tardis died
	// during it), never "ended on its own".
	Stopping *time.Time         `json:"stopping,omitempty"`
	Timings  map[string]float64 `json:"timings_ms,omitempty"`
	// RestoreStats is CRIU's statistics of the restore (stats-restore), when there was one.
	RestoreStats *criuimg.RestoreStats `json:"restore_stats,omitempty"`
}

const version = 2

// DefaultRoot is runc's --root when none is given (as root).
const DefaultRoot = "/run/runc"

// Store reads and writes state files in one directory.
type Store struct {
	FS  fsys.FS
	Dir string
}

// Name is the state file's name for a container: the id, and a digest of the runc root
// (containerd namespaces reuse ids under different roots). The caller checks the id is safe.
func Name(root, id string) string {
	if root == "" {
		root = DefaultRoot
	}
	sum := sha256.Sum256([]byte(filepath.Clean(root)))
	return id + "." + hex.EncodeToString(sum[:4]) + ".json"
}

func (s Store) path(root, id string) string { return filepath.Join(s.Dir, Name(root, id)) }

// Read returns the state file of a container; fs.ErrNotExist when it has none.
func (s Store) Read(root, id string) (*File, error) {
	b, err := s.FS.ReadFile(s.path(root, id))
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("state file %s: %w", s.path(root, id), err)
	}
	return &f, nil
}

// Write replaces the state file atomically (temporary file, sync, rename).
func (s Store) Write(f *File) error {
	f.Version = version
	if f.Root == "" {
		f.Root = DefaultRoot
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := s.FS.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	final := s.path(f.Root, f.ID)
	tmp, err := s.FS.CreateTemp(s.Dir, ".tmp-"+f.ID+"-")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = s.FS.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = s.FS.Rename(tmp.Name(), final)
	}
	if err != nil {
		_ = s.FS.Remove(tmp.Name())
		return fmt.Errorf("state file %s: %w", final, err)
	}
	return nil
}

// Remove deletes a container's state file; a missing one is not an error.
func (s Store) Remove(root, id string) error {
	err := s.FS.Remove(s.path(root, id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// List reads every state file with one directory read, sorted by id. Unreadable files are
// reported in the error and skipped.
func (s Store) List() ([]*File, error) {
	entries, err := s.FS.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	var out []*File
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := s.FS.ReadFile(filepath.Join(s.Dir, e.Name()))
		var f File
		if err == nil {
			err = json.Unmarshal(b, &f)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("state file %s: %w", e.Name(), err))
			continue
		}
		out = append(out, &f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}
