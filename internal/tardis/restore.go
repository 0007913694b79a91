package tardis

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/bundle"
	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/deadline"
	"github.com/tardis-runtime/tardis/internal/node"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// restoreTx brings a container back from a claimed checkpoint in place of create. Its
// steps run in order; what each has done is recorded in the transaction, so that one
// rollback undoes exactly that, whichever step failed:
//
//	validate  the checkpoint as it is on disk, against this node (its GPUs too, when it
//	          holds CUDA state)
//	prepare   the work directory and its journal (what the next operation on the key
//	          needs to clean up after a tardis that died from here on)
//	files     the saved files into the new rootfs, with an undo journal
//	restore   `runc restore --detach` on the caller's stdio, under a deadline
//	resume    the restored container's CUDA processes resumed, under the GPU deadlines
//	commit    the undo journal dropped, the checkpoint retired, the state file updated
type restoreTx struct {
	a  *app
	sf *state.File
	st optin.Settings
	b  *bundle.Bundle
	ck *store.Checkpoint

	m          *store.Manifest
	work       string
	journal    *node.Journal
	undo       *rootfs.Undo
	restoreRan bool // runc restore was started: a container may exist
	timings    map[string]float64
}

// run runs the steps; on failure it rolls back, and reports false.
func (t *restoreTx) run() bool {
	start := time.Now()
	t.timings = map[string]float64{}
	for _, s := range []struct {
		name string
		do   func() error
	}{
		{"validate", t.validate},
		{"prepare", t.prepare},
		{"restore files", t.files},
		{"runc restore", t.restore},
		{"resume CUDA", t.resume},
	} {
		if err := s.do(); err != nil {
			t.rollback(fmt.Errorf("%s: %w", s.name, err))
			return false
		}
	}
	t.commit(start)
	return true
}

// restorableHere is why this node restores no checkpoint at all, nil when it can. runc
// before 1.2 on cgroup v2 restores a container into the cgroup of the container that was
// checkpointed (CRIU re-creates it), not into the new container's, which stays empty:
// the new container's limits do not apply to it, and its next checkpoint fails, since
// runc freezes the empty cgroup and CRIU cannot seize the process. A runc whose version
// cannot be read is left to try.
func (a *app) restorableHere() error {
	if a.env.CgroupV2 == nil || !a.env.CgroupV2() {
		return nil
	}
	ctx, cancel := a.bounded(statusTimeout)
	defer cancel()
	v, err := a.runc.Version(ctx)
	if err != nil || v.AtLeast(1, 2) {
		return nil
	}
	return fmt.Errorf("%s on cgroup v2 restores a container into the cgroup of the one that was checkpointed, "+
		"not into its own (its limits would not apply, and it could not be checkpointed again): restoring needs runc 1.2 or later", v.Text)
}

func (t *restoreTx) step(name string, since time.Time) { t.timings[name] = ms(time.Since(since)) }

func (t *restoreTx) validate() error {
	since := time.Now()
	defer t.step("validate", since)
	d := t.a.cfg.Timeouts.Validate.Duration
	if m, err := store.ReadManifest(t.ck.Dir); err == nil {
		d += t.a.store.VerifyAllowance(m) // hashing a signed checkpoint's files takes its time
	}
	ctx, cancel := t.a.bounded(d)
	defer cancel()
	m, err := deadline.Run(d, func() (*store.Manifest, error) {
		return t.a.store.Validate(t.ck, t.a.thisNode())
	})
	if err != nil {
		return err
	}
	if d := m.Identity.Diff(t.st.Identity); d != nil {
		return fmt.Errorf("%w: the checkpoint is of another container: %s", store.ErrInvalid, strings.Join(d, "; "))
	}
	if err := t.a.gpuFits(ctx, m.GPU); err != nil {
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	t.m = m
	t.a.crash("restore:after-validate")
	return nil
}

func (t *restoreTx) prepare() error {
	changed, err := t.b.ResolveBindSources()
	if err == nil && len(changed) > 0 {
		err = t.b.Save()
	}
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		t.a.log.Info("bind mount sources that are symlinks resolved for CRIU", "mounts", changed)
	}
	work, err := t.a.paths.NewOp(ref(t.sf), node.OpRestore)
	if err != nil {
		return err
	}
	t.work = work
	t.journal = &node.Journal{Op: node.OpRestore, ID: t.sf.ID, Root: t.sf.Root, Bundle: t.sf.Bundle,
		Rootfs: t.st.Rootfs, Started: time.Now().UTC(), Checkpoint: t.ck.Name, Claim: t.ck.Claim}
	return node.WriteJournal(work, t.journal)
}

func (t *restoreTx) files() error {
	if t.m.Rootfs != "overlay" {
		return nil
	}
	since := time.Now()
	defer t.step("restore_files", since)
	f, err := os.Open(filepath.Join(t.ck.Dir, store.RootfsTar))
	if err != nil {
		return err
	}
	defer f.Close()
	backup := filepath.Join(t.work, "backup")
	if err := os.Mkdir(backup, 0o700); err != nil {
		return err
	}
	t.undo, _, err = rootfs.Apply(t.st.Rootfs, f, backup)
	return err
}

func (t *restoreTx) restore() error {
	t.a.crash("restore:before-runc")
	since := time.Now()
	defer t.step("runc_restore", since)
	t.restoreRan = true
	ctx, cancel := t.a.bounded(t.a.cfg.Timeouts.Restore.Duration)
	defer cancel()
	o := runc.RestoreOpts{Bundle: t.sf.Bundle, ImagePath: t.ck.Images(), WorkPath: t.work,
		NoPivot: t.a.inv.Bool("no-pivot"), NoSubreaper: t.a.inv.Bool("no-subreaper"), Extra: t.a.cfg.RestoreArgs,
		Stdio: runc.Stdio{Stdin: t.a.env.Stdin, Stdout: t.a.env.Stdout, Stderr: t.a.env.Stderr},
		// runc's own log goes to the work dir, so that its error names the failure in the
		// warning (which reaches the caller's --log too).
		LogFile: filepath.Join(t.work, "runc.log"),
		Started: func(p runc.Proc) {
			t.journal.Runc = &p
			if err := node.WriteJournal(t.work, t.journal); err != nil {
				t.a.log.Warn("cannot journal the restore's runc", err)
			}
		},
	}
	for _, name := range []string{"pid-file", "console-socket"} {
		if v, ok := t.a.inv.Value(name); ok && v != "" {
			if abs, err := filepath.Abs(v); err == nil {
				v = abs
			}
			if name == "pid-file" {
				o.PidFile = v
			} else {
				o.ConsoleSocket = v
			}
		}
	}
	err := t.a.runc.Restore(ctx, t.sf.ID, o)
	if err != nil {
		return withCriuLog(err, filepath.Join(t.work, "restore.log"))
	}
	t.a.crash("restore:after-runc")
	return nil
}

// resume resumes the CUDA processes of the restored container: its host pids are runc's
// (a restore keeps only the pids inside the container), the memory each held the
// manifest's.
func (t *restoreTx) resume() error {
	if t.m.GPU == nil || len(t.m.GPU.Processes) == 0 {
		return nil
	}
	since := time.Now()
	defer t.step("gpu_resume", since)
	ctx, cancel := t.a.bounded(statusTimeout)
	pids, err := t.a.runc.Ps(ctx, t.sf.ID)
	cancel()
	if err != nil {
		return fmt.Errorf("the restored container's processes: %w", err)
	}
	_, err = t.a.gpu().Resume(t.a.ctx, pids, t.m.GPU)
	return err
}

// commit makes the restore final: the rootfs changes stay, the checkpoint is consumed, the
// journal goes, the state file says how the container started.
func (t *restoreTx) commit(start time.Time) {
	a := t.a
	if rs, err := criuimg.ReadRestoreStats(t.work); err == nil { // CRIU writes it to the work path
		t.sf.RestoreStats = rs
	}
	var cleanup []error
	if t.undo != nil {
		cleanup = append(cleanup, t.undo.Commit())
	}
	retired, err := a.store.Retire(t.ck)
	if err == nil {
		err = a.removeLater(retired)
	}
	cleanup = append(cleanup, err, node.Finish(t.work))
	if err := errors.Join(cleanup...); err != nil {
		a.log.Warn("cleanup after the restore was incomplete", err, "checkpoint", t.ck.Name)
	}
	a.crash("restore:before-state")
	t.timings["total"] = ms(time.Since(start))
	t.sf.Started, t.sf.Checkpoint, t.sf.Fallback = state.StartedRestored, t.ck.Name, ""
	t.sf.StartPending = a.inv.Command == "create"
	t.sf.Timings = t.timings
	a.writeState(t.sf)
	a.log.Info("restored from checkpoint", "checkpoint", t.ck.Name, "timings_ms", t.timings)
}

// rollback undoes what the steps did: a half-restored container is stopped and removed
// (never through a mount runc left), the rootfs put back, the checkpoint set aside with
// the reason, the work directory removed. Whatever cleanup fails is a warning of its own.
func (t *restoreTx) rollback(err error) {
	a := t.a
	var cleanup []error
	if t.restoreRan {
		cleanup = append(cleanup, a.removeContainer(t.sf.Root, t.sf.ID))
	}
	if t.undo != nil {
		if uerr := t.undo.Rollback(); uerr != nil {
			cleanup = append(cleanup, fmt.Errorf("put the rootfs back: %w", uerr))
		}
	}
	aside, aerr := a.store.SetAside(t.ck, err.Error())
	if aerr != nil {
		cleanup = append(cleanup, fmt.Errorf("set the checkpoint aside: %w", aerr))
	}
	if t.work != "" {
		cleanup = append(cleanup, node.Abandon(t.work)) // the logs the warning names stay
	}
	a.log.Warn("restore failed; creating the container fresh", err, "checkpoint", t.ck.Name, "set_aside", aside)
	if c := errors.Join(cleanup...); c != nil {
		a.log.Warn("cleanup after the failed restore was incomplete", c, "checkpoint", t.ck.Name)
	}
	t.sf.Fallback = err.Error()
	a.writeState(t.sf)
}

// withCriuLog adds CRIU's first error from its log to err: the first "Error (" line
// names the cause ("Can't lookup mount=24 for fd=1"); the last one only says the dump or
// restore failed. CRIU's complaint that it cannot raise its own RLIMIT_NOFILE is harmless
// and skipped.
func withCriuLog(err error, logPath string) error {
	b, rerr := os.ReadFile(logPath)
	if rerr != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Error (") && !strings.Contains(line, "RLIMIT_NOFILE") {
			return fmt.Errorf("%w; %s: %s", err, filepath.Base(logPath), strings.TrimSpace(line))
		}
	}
	return err
}
