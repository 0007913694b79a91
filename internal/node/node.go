// Package node owns what tardis keeps on one node, outside the checkpoint store: the
// lock of each key, the work directory of each operation with its journal (op.json), and
// the link through which runc finds the configured CRIU. tardis, tardisctl and the
// recovery of interrupted operations all find these paths here.
//
//	<state_dir>/<id>.<hash>.json                 state files (package state)
//	<state_dir>/locks/<tenant>/<key>.lock        one flock per key
//	<state_dir>/criu-bin/criu                    link to the configured CRIU
//	<work_dir>/<tenant>/<key>/<op>-<stamp>/      one operation: op.json, CRIU's logs, a restore's rootfs backup
package node

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/lock"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/store"
)

// Paths are the node-local directories of the configuration.
type Paths struct{ StateDir, WorkDir string }

// Lock takes the key's lock, waiting up to timeout.
func (p Paths) Lock(r store.Ref, timeout time.Duration) (*lock.Lock, error) {
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	return lock.Acquire(filepath.Join(p.StateDir, "locks", r.Tenant), r.Key, timeout)
}

// CriuBin is the directory holding the "criu" link runc finds on its PATH.
func (p Paths) CriuBin() string { return filepath.Join(p.StateDir, "criu-bin") }

// KeyWork is the key's work directory.
func (p Paths) KeyWork(r store.Ref) (string, error) {
	if err := r.Check(); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	return filepath.Join(p.WorkDir, r.Tenant, r.Key), nil
}

// Operation kinds, the prefixes of their work directories.
const (
	OpCheckpoint = "checkpoint"
	OpRestore    = "restore"
)

// NewOp makes the work directory of a new operation of kind op on a key (0700).
func (p Paths) NewOp(r store.Ref, op string) (string, error) {
	kw, err := p.KeyWork(r)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(kw, op+"-"+time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	return dir, nil
}

// Ops lists the work directories of operations of kind op on a key that are still there:
// operations in progress elsewhere (the caller holds the key's lock, so none) or left by a
// tardis that died. Oldest first.
func (p Paths) Ops(r store.Ref, op string) ([]string, error) {
	kw, err := p.KeyWork(r)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(kw)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), op+"-") {
			dirs = append(dirs, filepath.Join(kw, e.Name()))
		}
	}
	sort.Strings(dirs)
	return dirs, nil
}

// Journal is what an operation records in its work directory (op.json) before it starts
// anything that can outlive it, so that the next operation on the key can tell what a
// tardis that died left behind: which container, which checkpoint, which runc.
type Journal struct {
	Op     string `json:"op"`
	ID     string `json:"id"`
	Root   string `json:"root"` // runc's --root
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
	// Started is when the operation started; for a checkpoint, once its runc has started,
	// when that runc started (the checkpoint deadline counts from there, not from the
	// suspend of its CUDA processes before it).
	Started time.Time `json:"started"`
	// Checkpoint is the checkpoint restored from (restore) or the pending directory the dump
	// goes to (checkpoint); Claim is a restore's claim link.
	Checkpoint string `json:"checkpoint,omitempty"`
	Claim      string `json:"claim,omitempty"`
	// Runc is the runc process of the operation, once started.
	Runc *runc.Proc `json:"runc,omitempty"`
	// RuncDone is set once that runc has exited (whatever its result).
	RuncDone bool `json:"runc_done,omitempty"`
	// CUDA are the host pids of the container's CUDA processes a checkpoint suspends,
	// written before the first of them is touched; GPU is the suspend's record, once it is
	// done (it goes into the manifest). While the container lives, they must be resumed.
	CUDA []int           `json:"cuda,omitempty"`
	GPU  *gpu.Checkpoint `json:"gpu,omitempty"`
}

const journalName = "op.json"

// WriteJournal replaces the journal of the operation in dir (synced, renamed into place).
func WriteJournal(dir string, j *Journal) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	tmp := filepath.Join(dir, journalName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, journalName))
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Finish ends an operation: its journal goes first, so that an operation whose directory
// could not be removed is never mistaken for an interrupted one, then its directory.
func Finish(dir string) error {
	if err := os.Remove(filepath.Join(dir, journalName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("end journal: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove work dir: %w", err)
	}
	return nil
}

// Abandon ends an operation that failed: its journal goes, and everything in its
// directory but the logs (*.log: CRIU's dump.log or restore.log, runc's runc.log), which
// the failure's warning names; the next operation on the key removes them.
func Abandon(dir string) error {
	if err := os.Remove(filepath.Join(dir, journalName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("end journal: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	var errs []error
	kept := 0
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".log") {
			kept++
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if kept == 0 {
		errs = append(errs, os.Remove(dir))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	return nil
}

// ReadJournal reads the journal of the operation in dir; fs.ErrNotExist when it has none
// (an operation that died before it started anything).
func ReadJournal(dir string) (*Journal, error) {
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("journal %s: %w", dir, err)
	}
	return &j, nil
}

// Owner names this node in claim links: its host name as a safe file-name part, and a
// digest of its state directory (whose locks serialise its operations), so that two
// tardis "nodes" on one host never take each other's claims for their own.
func (p Paths) Owner() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '-' || r == '.' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, h)
	h = strings.TrimLeft(h, "-._")
	if h == "" {
		h = "node"
	}
	if len(h) > 64 {
		h = h[:64]
	}
	sum := sha256.Sum256([]byte(p.StateDir))
	return h + "-" + hex.EncodeToString(sum[:4])
}
