package tardis

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/runcargs"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// start: after a restore done in place of create the process already runs, so the start
// that follows only records it; every other start is runc's.
func (a *app) start() int {
	sf := a.stateOf()
	if sf == nil || !sf.StartPending {
		return a.passThrough()
	}
	status, err := a.status(sf.ID)
	if err != nil || status != "running" {
		a.log.Warn("restored container is not running; passing start to runc", err, "status", status)
		return a.passThrough()
	}
	sf.StartPending = false
	a.writeState(sf)
	return 0
}

// kill: a terminating signal to a running opted-in container is the moment to checkpoint
// it (containerd, Docker and Kubernetes only delete once the container has exited). On
// success its processes are gone, as the caller asked; on failure the signal is delivered.
func (a *app) kill() int {
	var sigWord string
	if len(a.inv.Positional) > 1 {
		sigWord = a.inv.Positional[1]
	}
	sig, err := runcargs.ParseSignal(sigWord)
	if err != nil || !a.checkpointsOn(sig) {
		return a.passThrough()
	}
	sf := a.stateOf()
	if sf == nil || sf.Key == "" {
		return a.passThrough()
	}
	lk, err := a.lockKey(sf.Key)
	if err != nil {
		a.log.Warn("cannot serialise on the key; delivering the signal without a checkpoint", err)
		return a.passThrough()
	}
	defer lk.Release()
	if sf = a.stateOf(); sf == nil { // what another operation did while we waited counts
		return a.passThrough()
	}
	status, err := a.status(sf.ID)
	if err != nil {
		a.log.Warn("cannot read the container's runtime state; delivering the signal without a checkpoint", err)
		return a.passThrough()
	}
	if status == "running" && a.checkpointOrWarn(sf) {
		return 0
	}
	if status == "" && sf.Checkpointed != nil {
		return 0 // tardis's checkpoint already ended it: the stop the caller asks for is done
	}
	return a.passThrough()
}

// checkpointsOn reports whether sig is one of the configured checkpoint signals.
func (a *app) checkpointsOn(sig syscall.Signal) bool {
	for _, s := range a.cfg.CheckpointOn {
		if want, err := runcargs.ParseSignal(strings.TrimSpace(s)); err == nil && want == sig {
			return true
		}
	}
	return false
}

// delete: a running opted-in container is checkpointed first (delete --force is how a
// running one arrives). A stopped one that was never checkpointed ended on its own: its
// key's checkpoint and work files go, so the next create starts fresh.
func (a *app) delete() int {
	sf := a.stateOf()
	if sf == nil {
		return a.passThrough()
	}
	status := "unknown"
	if sf.Key != "" {
		lk, err := a.lockKey(sf.Key)
		if err != nil {
			a.log.Warn("cannot serialise on the key; deleting without a checkpoint", err)
			return a.deleteAsAsked(sf, "unknown")
		}
		defer lk.Release()
		if sf = a.stateOf(); sf == nil {
			return a.passThrough()
		}
		status, err = a.status(sf.ID)
		switch {
		case err != nil:
			a.log.Warn("cannot read the container's runtime state; deleting as asked", err)
		case status == "running":
			if gone := a.checkpointOrWarn(sf); gone {
				a.removeState(sf)
				return 0
			}
		case status == "" && sf.Checkpointed != nil:
			// tardis's checkpoint ended it; for the caller the delete is done.
			a.removeState(sf)
			return 0
		case status == "stopped" && sf.Checkpointed == nil:
			a.forgetKey(sf)
		}
	}
	return a.deleteAsAsked(sf, status)
}

// deleteAsAsked runs the caller's delete and removes the state file once the container is
// gone (deleted now, or never known to runc: a failed create).
func (a *app) deleteAsAsked(sf *state.File, status string) int {
	code := a.runCaller()
	if code == 0 || status == "" {
		a.removeState(sf)
	}
	return code
}

func (a *app) removeState(sf *state.File) {
	if err := a.states.Remove(sf.Root, sf.ID); err != nil {
		a.log.Warn("cannot remove state file", err)
	}
}

// forgetKey removes what a container that ended on its own leaves behind for its key.
func (a *app) forgetKey(sf *state.File) {
	removed, err := a.store.RemoveOlderThan(sf.Key, sf.Created)
	if err != nil {
		a.log.Warn("cannot remove the key's checkpoint files", err)
	}
	if werr := os.RemoveAll(filepath.Join(a.cfg.WorkDir, sf.Key)); werr != nil {
		a.log.Warn("cannot remove the key's work directory", werr)
	}
	if len(removed) > 0 {
		a.log.Info("container ended on its own; its key's checkpoint is removed", "removed", removed)
	}
}

// checkpointOrWarn checkpoints a running container. It reports whether the container's
// processes are gone (the checkpoint succeeded, or failed after runc had already ended the
// container). Failures are warnings with the specific error.
func (a *app) checkpointOrWarn(sf *state.File) (gone bool) {
	gone, err := a.checkpoint(sf)
	if err == nil {
		return true
	}
	if gone {
		a.log.Warn("checkpoint failed after the container had ended; nothing saved", err)
		return true
	}
	a.log.Warn("checkpoint failed; carrying on as asked", err)
	// A dump that died or hung can leave the container frozen; thaw it so the signal lands.
	if st, serr := a.status(sf.ID); serr == nil && st == "paused" {
		if _, rerr := a.runc.Run(a.ctx, statusTimeout, runc.Stdio{}, "resume", sf.ID); rerr != nil {
			a.log.Warn("cannot resume the container after the failed checkpoint", rerr)
		}
	}
	return false
}

// checkpoint saves a running container: `runc checkpoint` into a new checkpoint directory,
// then the changes in its writable layer, then the manifest, published atomically.
func (a *app) checkpoint(sf *state.File) (gone bool, err error) {
	start := time.Now()
	timings := map[string]float64{}
	spec, err := optin.ReadSpec(a.env.FS, sf.Bundle)
	if err != nil {
		return false, err
	}
	st, _ := optin.FromSpec(spec, sf.Bundle, sf.ID)
	pending, err := a.store.Begin(sf.Key)
	if err != nil {
		return false, err
	}
	pending.Crash = a.env.Crash
	work, err := a.workDir(sf.Key, "checkpoint")
	if err != nil {
		return false, errors.Join(err, a.discard(pending))
	}
	defer func() {
		if rerr := os.RemoveAll(work); rerr != nil {
			a.log.Warn("cannot remove work dir", rerr)
		}
	}()
	fail := func(what string, err error) (bool, error) {
		return gone, errors.Join(fmt.Errorf("%s: %w", what, err), a.discard(pending))
	}

	t := time.Now()
	args := append([]string{"checkpoint", "--image-path=" + pending.Images(), "--work-path=" + work},
		a.cfg.CheckpointArgs...)
	_, err = a.runc.Run(a.ctx, a.cfg.Timeouts.Checkpoint.Duration, runc.Stdio{}, append(args, sf.ID)...)
	timings["runc_checkpoint"] = ms(time.Since(t))
	if err != nil {
		return fail("runc checkpoint", withCriuLog(err, filepath.Join(work, "dump.log")))
	}
	gone = true
	a.crash("checkpoint:after-runc")

	t = time.Now()
	kind, stats, err := a.saveFiles(st.Rootfs, pending)
	timings["save_files"] = ms(time.Since(t))
	if err != nil {
		return fail("save container files", err)
	}
	dumpStats, err := criuimg.ReadDumpStats(work) // CRIU writes stats-dump to the work path
	if err != nil {
		dumpStats = nil // CRIU's statistics are informative only
	}
	timings["total"] = ms(time.Since(start))
	m := &store.Manifest{Key: sf.Key, ContainerID: sf.ID, Created: time.Now().UTC(), Node: a.thisNode(),
		Rootfs: kind, RootfsStats: stats, NetworkFS: sf.NetworkFS, DumpStats: dumpStats, Timings: timings}
	a.crash("checkpoint:before-publish")
	ck, err := pending.Publish(m)
	if err != nil && ck == nil {
		return fail("publish", err)
	}
	if err != nil {
		a.log.Warn("checkpoint published, but the previous one could not be removed", err)
	}
	a.crash("checkpoint:before-state")
	now := time.Now().UTC()
	sf.Checkpointed = &now
	sf.Timings = timings
	a.writeState(sf)
	a.log.Info("checkpointed", "checkpoint", ck.Name, "timings_ms", timings)
	return true, nil
}

func (a *app) discard(p *store.Pending) error {
	if err := p.Discard(); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// saveFiles writes the changes of an overlay rootfs's upper directory into the checkpoint.
// A rootfs that is not an overlay is used in place at restore: nothing to save.
func (a *app) saveFiles(rootfsPath string, p *store.Pending) (string, any, error) {
	real, err := filepath.EvalSymlinks(rootfsPath)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs: %w", err)
	}
	mi, err := os.Open(a.env.Mountinfo)
	if err != nil {
		return "", nil, fmt.Errorf("mountinfo: %w", err)
	}
	upper, err := rootfs.UpperDir(mi, real)
	mi.Close()
	if errors.Is(err, rootfs.ErrNotOverlay) {
		return "in-place", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	f, err := os.OpenFile(p.RootfsArchive(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	stats, err := rootfs.Save(upper, w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", nil, err
	}
	return "overlay", stats, nil
}
