package tardis

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/store"
)

// Background work: what a create or a stop need not wait for runs in a detached tardis
// (its own session, so that the caller's signals and waits never reach it), started with
// backgroundEnv set to the job:
//
//	remove:<path>   remove a retired checkpoint (gigabytes a create should not wait for)
//	expire          the expiry sweep: checkpoints nothing restored for checkpoint_expiry
const backgroundEnv = "TARDIS_BACKGROUND"

// later runs a job in the background (or at once, with Env.Inline).
func (a *app) later(job string) error {
	if a.env.Inline {
		if code := a.runJob(job); code != 0 {
			return fmt.Errorf("%s: exit %d", job, code)
		}
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%s later: %w", job, err)
	}
	cmd := exec.Command(self)
	cmd.Args[0] = "tardis"
	cmd.Env = append(slices.DeleteFunc(slices.Clone(a.env.Environ), func(kv string) bool {
		return strings.HasPrefix(kv, backgroundEnv+"=")
	}), backgroundEnv+"="+job)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s later: %w", job, err)
	}
	return cmd.Process.Release()
}

// runJob is the detached tardis's work.
func (a *app) runJob(job string) int {
	a.log.Op = "background"
	switch {
	case strings.HasPrefix(job, "remove:"):
		return a.removeRetired(strings.TrimPrefix(job, "remove:"))
	case job == "expire":
		a.expire()
		return 0
	}
	a.log.Error("unknown background job", errors.New(job))
	return ExitRefused
}

// removeLater removes a retired checkpoint in the background. What it leaves (if it dies)
// the key's next natural exit, the expiry sweep or `tardisctl gc` removes.
func (a *app) removeLater(path string) error { return a.later("remove:" + path) }

func (a *app) removeRetired(path string) int {
	if !a.store.IsRetired(path) {
		a.log.Error("refusing to remove what is not a retired checkpoint", errors.New(path))
		return ExitRefused
	}
	if err := os.RemoveAll(path); err != nil {
		a.log.Warn("cannot remove a retired checkpoint", err)
		return 1
	}
	return 0
}

// expireEvery is how often a node sweeps the store for expired checkpoints.
const expireEvery = time.Hour

// expireLater starts the expiry sweep in the background, at most once every expireEvery on
// this node (the time of a stamp file in the state directory says when it last ran).
// Checkpoints that nothing will restore (Docker's `docker rm` of a stopped container never
// calls the runtime; a pod that never comes back) go after checkpoint_expiry without anyone
// having to remember them.
func (a *app) expireLater() {
	if a.cfg.CheckpointExpiry.Duration <= 0 {
		return
	}
	stamp := filepath.Join(a.cfg.StateDir, "expire.stamp")
	if st, err := os.Stat(stamp); err == nil && time.Since(st.ModTime()) < expireEvery {
		return
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		a.log.Warn("cannot note the expiry sweep", err)
		return
	}
	now := time.Now()
	_ = os.Chtimes(stamp, now, now)
	if err := a.later("expire"); err != nil {
		a.log.Warn("cannot start the expiry sweep", err)
	}
}

// expire removes, under each key's lock (a key busy now is left for the next sweep),
// current and set-aside checkpoints older than checkpoint_expiry, and what crashes left
// (partial ones) as old. A claimed checkpoint is never touched: a restore holds it.
func (a *app) expire() {
	maxAge := a.cfg.CheckpointExpiry.Duration
	refs, err := a.store.Refs()
	if err != nil {
		a.log.Warn("expiry sweep: cannot list every key", err)
	}
	for _, r := range refs {
		lk, err := a.paths.Lock(r, 0)
		if err != nil {
			continue
		}
		entries, _ := a.store.Entries(r)
		for _, e := range entries {
			if age, ok := entryAge(e); ok && age > maxAge {
				if err := a.store.RemoveEntry(e); err != nil {
					a.log.Warn("expiry sweep: cannot remove a checkpoint", err, "checkpoint", e.Dir)
					continue
				}
				a.log.Info("expired", "tenant", r.Tenant, "key", r.Key, "checkpoint", e.Name, "kind", e.Kind,
					"age", age.Round(time.Second).String())
			}
		}
		a.store.RemoveKeyDirIfEmpty(r)
		lk.Release()
	}
}

// entryAge is how long ago a store entry was made (a checkpoint), set aside, or last
// written (a partial one); claimed checkpoints have none.
func entryAge(e store.Entry) (time.Duration, bool) {
	var t time.Time
	switch e.Kind {
	case store.KindCurrent, store.KindOrphan:
		t = e.Stamp
		if m, err := store.ReadManifest(e.Dir); err == nil && !m.Created.IsZero() {
			t = m.Created
		}
	case store.KindAside:
		t = e.SetAside
	case store.KindPartial:
		t = e.ModTime
	default:
		return 0, false
	}
	if t.IsZero() {
		t = e.ModTime
	}
	return time.Since(t), !t.IsZero()
}
