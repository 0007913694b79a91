package tardis

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/bundle"
	"github.com/tardis-runtime/tardis/internal/deadline"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// create handles `create` and `run`: for an opted-in container it writes the state file,
// makes the network filesystem available, and restores from the key's checkpoint when
// there is one; every failure ends in the caller's own command run by runc.
func (a *app) create() int {
	id := a.inv.ID
	dir, err := a.bundleDir()
	if id == "" || err != nil {
		return a.passThrough()
	}
	b, err := bundle.Load(a.env.FS, dir)
	if err != nil {
		return a.passThrough() // runc reports a missing or broken config.json itself
	}
	st, stErr := optin.Resolve(b, id, a.root(), a.policy)
	if !st.Enabled {
		return a.passThrough()
	}
	a.log.Key = st.Key
	if err := optin.CheckName(id); err != nil {
		a.log.Warn("container id cannot name a state file; creating it as plain runc would", err)
		return a.passThrough()
	}
	// A container runc knows is never touched by a create: runc refuses it, and tardis
	// leaves it, its state file and its key alone.
	if _, err := a.state(id); !errors.Is(err, runc.ErrNotExist) {
		if err != nil {
			a.log.Warn("cannot tell whether the container exists; creating it as plain runc would", err)
		}
		return a.passThrough()
	}
	sf := a.newStateFile(id, dir, st, stErr, state.StartedCreated)
	if stErr != nil {
		a.writeState(sf)
		msg := "opted in with an unusable setting; creating the container as plain runc would"
		if errors.Is(stErr, optin.ErrNotAllowed) {
			msg = "opted in with a setting this node does not allow; creating the container as plain runc would"
		}
		a.log.Warn(msg, stErr)
		return a.passThrough()
	}
	a.writeState(sf)

	r := ref(sf)
	lk, err := a.lockKey(r)
	if err != nil {
		a.log.Warn("cannot serialise on the key; creating the container as plain runc would", err)
		return a.passThrough()
	}
	defer lk.Release()
	a.recoverKey(r)

	var nfsErr error
	if st.NetworkFS != nil {
		if nfsErr = a.bindNetworkFS(b, st.NetworkFS); nfsErr != nil {
			a.log.Warn("network filesystem unavailable; the container is created without it", nfsErr,
				"networkfs", st.NetworkFS.String())
		}
	}
	ck, err := a.store.Current(r)
	if err != nil {
		a.log.Warn("cannot read the key's checkpoint; creating the container fresh", err)
		return a.passThrough()
	}
	if ck == nil {
		return a.passThrough()
	}
	keep := func(why error) int {
		sf.Fallback = why.Error()
		a.writeState(sf)
		a.log.Warn("restore not attempted, checkpoint kept; creating the container fresh", why, "checkpoint", ck.Name)
		return a.passThrough()
	}
	if m, err := store.ReadManifest(ck.Dir); err == nil && m.Tenant == r.Tenant {
		if d := m.Identity.Diff(st.Identity); d != nil {
			return keep(fmt.Errorf("the checkpoint is of another container: %s", strings.Join(d, "; ")))
		}
	}
	if nfsErr != nil {
		return keep(fmt.Errorf("networkfs: %w", nfsErr)) // the checkpoint waits for it to come back
	}
	if a.inv.Command == "run" && !a.inv.Bool("detach") {
		return keep(errors.New("run without --detach cannot be restored (restore is always detached)"))
	}
	if err := a.restorableHere(); err != nil {
		return keep(err) // a node whose runc can restore it may take it
	}
	if ck, err = a.store.Claim(r, a.paths.Owner()); err != nil {
		a.log.Warn("cannot claim the key's checkpoint; creating the container fresh", err)
		return a.passThrough()
	}
	if ck == nil {
		a.log.Info("checkpoint taken by another node's restore; creating the container fresh")
		return a.passThrough()
	}
	tx := &restoreTx{a: a, sf: sf, st: st, b: b, ck: ck}
	if tx.run() {
		return 0
	}
	return a.passThrough()
}

// bundleDir is the bundle directory, absolute: --bundle, or the current directory.
func (a *app) bundleDir() (string, error) {
	b, _ := a.inv.Value("bundle")
	if b == "" {
		b = "."
	}
	return filepath.Abs(b)
}

// bindNetworkFS checks, under a deadline, that the host directory answers and resolves
// inside an allowed root, and makes sure config.json bind-mounts the resolved directory
// where the container expects it (the same on a fresh create and a restore, so that CRIU
// finds at restore the mount it saw at dump).
func (a *app) bindNetworkFS(b *bundle.Bundle, m *optin.Mount) error {
	src, err := deadline.Run(a.cfg.Timeouts.NetworkFS.Duration, func() (string, error) {
		st, err := a.env.FS.Stat(m.Host)
		if err != nil {
			return "", err
		}
		if !st.IsDir() {
			return "", fmt.Errorf("%s is not a directory", m.Host)
		}
		return optin.ResolveHost(m.Host, a.cfg.NetworkFSRoots)
	})
	if err != nil {
		return fmt.Errorf("host path %s: %w", m.Host, err)
	}
	if b.AddMount(bundle.Mount{Destination: m.Container, Type: "bind", Source: src, Options: []string{"rbind", "rw"}}) {
		return b.Save()
	}
	return nil
}

// start: after a restore done in place of create the process already runs, so the start
// that follows only records it; every other start is runc's.
func (a *app) start() int {
	sf := a.readState()
	if sf == nil || !sf.StartPending {
		return a.passThrough()
	}
	a.log.Key = sf.Key
	st, err := a.state(sf.ID)
	if err != nil || st.Status != runc.Running {
		status := runc.Status("")
		if st != nil {
			status = st.Status
		}
		a.log.Warn("restored container is not running; passing start to runc", err, "status", status)
		return a.passThrough()
	}
	sf.StartPending = false
	a.writeState(sf)
	return 0
}

// clientRestore handles a `restore` the caller runs itself (docker checkpoint, podman
// container checkpoint): it is runc's, passed through; an opted-in container restored so
// is tracked as tardis tracks its own, so that its next stop checkpoints it.
func (a *app) clientRestore() int {
	id := a.inv.ID
	dir, err := a.bundleDir()
	if id == "" || err != nil || optin.CheckName(id) != nil {
		return a.passThrough()
	}
	b, err := bundle.Load(a.env.FS, dir)
	if err != nil {
		return a.passThrough()
	}
	st, stErr := optin.Resolve(b, id, a.root(), a.policy)
	if !st.Enabled {
		return a.passThrough()
	}
	if _, err := a.state(id); !errors.Is(err, runc.ErrNotExist) {
		return a.passThrough() // runc refuses to restore over a container it knows
	}
	a.writeState(a.newStateFile(id, dir, st, stErr, state.StartedClient))
	return a.passThrough()
}

// newStateFile is the state file of an opted-in container of bundle dir, as its spec
// resolved: with an unusable or refused setting (stErr), it has no key and says why.
func (a *app) newStateFile(id, dir string, st optin.Settings, stErr error, started string) *state.File {
	sf := &state.File{ID: id, Root: a.root(), Bundle: dir, Key: st.Key, KeySource: st.KeySource, Tenant: st.Tenant,
		Rootfs: st.Rootfs, NetworkFS: st.NetworkFS.String(), Identity: &st.Identity,
		Started: started, Created: time.Now().UTC()}
	if stErr != nil {
		sf.Key, sf.Fallback = "", stErr.Error()
	}
	return sf
}
