package tardis

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/runcargs"
	"github.com/tardis-runtime/tardis/internal/state"
)

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
	switch a.stop() {
	case stopDone:
		return 0
	}
	return a.passThrough()
}

// delete: a running opted-in container is checkpointed first (delete --force is how a
// running one arrives). A stopped one that tardis never stopped ended on its own: its key's
// checkpoint and work files go, so the next create starts fresh.
func (a *app) delete() int {
	switch a.stop() {
	case stopDone:
		if sf := a.readState(); sf != nil {
			a.removeState(sf)
		}
		return 0
	case stopNotOurs:
		return a.passThrough()
	}
	return a.deleteAsAsked()
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

// stopOutcome is what the stop path did.
type stopOutcome int

const (
	stopNotOurs stopOutcome = iota // the container did not opt in: runc's business
	stopAsAsked                    // no checkpoint (not running, or it failed and the container lives): do as asked
	stopDone                       // the container's processes are gone by tardis's doing: the stop is done
)

// stop is the one stop path of kill and delete. Under the key's lock, with the state file
// read again (what another operation did while this one waited counts) and what an
// interrupted operation left put right first, a running container is checkpointed. A
// container that runc no longer knows but that tardis was stopping is stopped: the stop
// the caller asks for is done. A stopped container that tardis never stopped ended on its
// own, and its key is forgotten.
func (a *app) stop() stopOutcome {
	sf := a.readState()
	if sf == nil {
		return stopNotOurs
	}
	a.log.Key = sf.Key
	if sf.Key == "" {
		return stopAsAsked
	}
	r := ref(sf)
	lk, err := a.lockKey(r)
	if err != nil {
		if now := a.readState(); now != nil && now.Stopping != nil {
			// The lock's holder is checkpointing this container for a stop: a signal now
			// would end it under CRIU and lose the dump. That stop ends the container;
			// wait for it, as long as its own deadline allows.
			a.log.Info("the container is being checkpointed for a stop; waiting for that stop, which ends it",
				"stopping_since", now.Stopping.Format(time.RFC3339Nano))
			lk, err = a.paths.Lock(r, a.stopBound())
		}
	}
	if err != nil {
		a.log.Warn("cannot serialise on the key; doing as asked without a checkpoint", err)
		return stopAsAsked
	}
	defer lk.Release()
	a.recoverKey(r)
	if sf = a.readState(); sf == nil {
		return stopNotOurs
	}
	st, err := a.state(sf.ID)
	switch {
	case errors.Is(err, runc.ErrNotExist):
		if sf.Checkpointed != nil || sf.Stopping != nil {
			return stopDone // tardis's checkpoint already ended it
		}
		return stopAsAsked
	case err != nil:
		a.log.Warn("cannot read the container's runtime state; doing as asked without a checkpoint", err)
		return stopAsAsked
	case st.Status == runc.Running:
		tx := &checkpointTx{a: a, sf: sf, r: r, pid: st.Pid}
		if tx.run() {
			return stopDone
		}
		return stopAsAsked
	case st.Status == runc.Stopped && sf.Checkpointed == nil && sf.Stopping == nil && a.inv.Command == "delete":
		a.forgetKey(sf)
	}
	return stopAsAsked
}

// stopBound is how long a stop's checkpoint may go on holding the key's lock: the dump's
// deadline, the fixed allowances of the GPU steps when GPU support is on (a suspend that
// copies many gigabytes may take longer: the signal is then delivered), and the lock
// timeout again for the rest (saving files, publishing).
func (a *app) stopBound() time.Duration {
	d := a.cfg.Timeouts.Checkpoint.Duration + a.cfg.Timeouts.Lock.Duration
	if a.cfg.Enabled() {
		d += a.cfg.GPU.LockTimeout() + a.cfg.GPU.SuspendTimeout(0)
	}
	return d
}

// deleteAsAsked runs the caller's delete and removes the state file once the container is
// gone (deleted now, or never known to runc: a failed create). Mounts that an interrupted
// restore left under the container's runc directory go first: runc deletes that directory
// recursively, and must never do it through a mount.
func (a *app) deleteAsAsked() int {
	sf := a.readState()
	if sf != nil {
		if err := unmountUnder(sf.Root + "/" + sf.ID); err != nil {
			a.log.Warn("cannot take away what runc left mounted under the container's directory", err)
		}
	}
	code := a.runCaller()
	if sf == nil {
		return code
	}
	if _, err := a.state(sf.ID); code == 0 || errors.Is(err, runc.ErrNotExist) {
		a.removeState(sf)
	}
	return code
}

// forgetKey removes what a container that ended on its own leaves behind for its key.
func (a *app) forgetKey(sf *state.File) {
	r := ref(sf)
	removed, err := a.store.ForgetBefore(r, sf.Created)
	if err != nil {
		a.log.Warn("cannot remove the key's checkpoint files", err)
	}
	// Under the key's lock, after recoverKey: no operation of the key is live in there.
	if kw, err := a.paths.KeyWork(r); err == nil {
		if err := os.RemoveAll(kw); err != nil {
			a.log.Warn("cannot remove the key's work directory", err)
		}
	}
	if len(removed) > 0 {
		a.log.Info("container ended on its own; its key's checkpoint is removed", "removed", removed)
	}
}
