package tardis

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/afero"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/deadline"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/runcargs"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// create handles `create` and `run`: for an opted-in container it writes the state file,
// makes the network filesystem available, and restores from the key's checkpoint when
// there is one; every failure ends in the caller's own command run by runc.
func (a *app) create() int {
	id := a.inv.ID
	bundle, err := a.bundle()
	if id == "" || err != nil {
		return a.passThrough()
	}
	spec, err := optin.ReadSpec(a.env.FS, bundle)
	if err != nil {
		return a.passThrough() // runc reports a missing or broken config.json itself
	}
	st, stErr := optin.FromSpec(spec, bundle, id)
	if !st.Enabled {
		return a.passThrough()
	}
	if err := optin.CheckName(id); err != nil {
		a.log.Warn("container id cannot name a state file; creating it as plain runc would", err)
		return a.passThrough()
	}
	a.log.Key = st.Key
	now := time.Now().UTC()
	sf := &state.File{ID: id, Root: a.root(), Bundle: bundle, Key: st.Key, KeySource: st.KeySource,
		NetworkFS: st.NetworkFS.String(), Started: state.StartedCreated, Created: now}
	if stErr != nil {
		sf.Key, sf.Fallback = "", stErr.Error()
		a.writeState(sf)
		a.log.Warn("opted in with an unusable setting; creating the container as plain runc would", stErr)
		return a.passThrough()
	}
	a.writeState(sf)

	lk, err := a.lockKey(st.Key)
	if err != nil {
		a.log.Warn("cannot serialise on the key; creating the container as plain runc would", err)
		return a.passThrough()
	}
	defer lk.Release()

	a.recoverRootfs(st.Key)
	owner := a.owner()
	if back, err := a.store.Reclaim(st.Key, owner); err != nil {
		a.log.Warn("cannot take back the checkpoint of an interrupted restore", err)
	} else if len(back) > 0 {
		a.log.Info("took back the checkpoint of an interrupted restore", "checkpoint", back)
	}

	var nfsErr error
	if st.NetworkFS != nil {
		if nfsErr = a.bindNetworkFS(bundle, st.NetworkFS); nfsErr != nil {
			a.log.Warn("network filesystem unavailable; the container is created without it", nfsErr,
				"networkfs", st.NetworkFS.String())
		}
	}
	ck, err := a.store.Current(st.Key)
	if err != nil {
		a.log.Warn("cannot read the key's checkpoint; creating the container fresh", err)
		return a.passThrough()
	}
	if ck == nil {
		return a.passThrough()
	}
	if nfsErr != nil {
		// The checkpoint is sound; it waits for the network filesystem to come back.
		sf.Fallback = "networkfs: " + nfsErr.Error()
		a.writeState(sf)
		a.log.Warn("restore not attempted, checkpoint kept; creating the container fresh",
			fmt.Errorf("networkfs: %w", nfsErr), "checkpoint", ck.Name)
		return a.passThrough()
	}
	if a.inv.Command == "run" && !a.inv.Bool("detach") {
		a.log.Warn("restore not attempted, checkpoint kept; creating the container fresh",
			errors.New("run without --detach cannot be restored (restore is always detached)"), "checkpoint", ck.Name)
		return a.passThrough()
	}
	if ck, err = a.store.Claim(st.Key, owner); err != nil {
		a.log.Warn("cannot claim the key's checkpoint; creating the container fresh", err)
		return a.passThrough()
	}
	if ck == nil {
		a.log.Info("checkpoint taken by another node's restore; creating the container fresh")
		return a.passThrough()
	}
	if a.restore(sf, st, ck) {
		return 0
	}
	return a.passThrough()
}

// owner names this node in claim links: its host name as a safe file-name part, and a
// digest of its state directory (whose locks serialise its operations), so that two
// tardis "nodes" on one host never take each other's claims for their own.
func (a *app) owner() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '-' || r == '.' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return '_'
	}, h)
	sum := sha256.Sum256([]byte(a.cfg.StateDir))
	return h + "-" + hex.EncodeToString(sum[:4])
}

// recoverRootfs puts back rootfs changes that a restore of this key made before tardis
// died (its work dir is still there): whatever happened, a rootfs ends untouched or fully
// restored. The caller holds the key's lock, so no live restore of the key is running.
func (a *app) recoverRootfs(key string) {
	dirs, _ := filepath.Glob(filepath.Join(a.cfg.WorkDir, key, "restore-*"))
	for _, dir := range dirs {
		var roots []string
		var err error
		if backup := filepath.Join(dir, "backup"); exists(backup) { // else no file was touched
			roots, err = rootfs.Recover(backup)
		}
		if err != nil {
			a.log.Warn("cannot put back the rootfs of an interrupted restore", err, "work_dir", dir)
			continue
		}
		if len(roots) > 0 {
			a.log.Info("put back the rootfs of an interrupted restore", "rootfs", roots)
		}
		if err := os.RemoveAll(dir); err != nil {
			a.log.Warn("cannot remove the work dir of an interrupted restore", err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// bundle is the bundle directory, absolute: --bundle, or the current directory.
func (a *app) bundle() (string, error) {
	b, _ := a.inv.Value("bundle")
	if b == "" {
		b = "."
	}
	return filepath.Abs(b)
}

// restore brings the container back from ck in place of create. On any failure it warns
// with the specific error, undoes what it did, sets the checkpoint aside, and returns false.
func (a *app) restore(sf *state.File, st optin.Settings, ck *store.Checkpoint) bool {
	start := time.Now()
	timings := map[string]float64{}
	step := func(name string, t time.Time) { timings[name] = ms(time.Since(t)) }

	var undo *rootfs.Undo
	restoreRan := false
	work := ""
	fail := func(what string, err error) bool {
		err = fmt.Errorf("%s: %w", what, err)
		var cleanup []error
		if restoreRan {
			if _, derr := a.runc.Run(a.ctx, a.cfg.Timeouts.Restore.Duration, runc.Stdio{}, "delete", "--force", sf.ID); derr != nil {
				cleanup = append(cleanup, fmt.Errorf("remove half-restored container: %w", derr))
			}
		}
		if undo != nil {
			if uerr := undo.Rollback(); uerr != nil {
				cleanup = append(cleanup, fmt.Errorf("put the rootfs back: %w", uerr))
			}
		}
		aside, aerr := a.store.SetAside(ck, err.Error())
		if aerr != nil {
			cleanup = append(cleanup, fmt.Errorf("set the checkpoint aside: %w", aerr))
		}
		if work != "" {
			if rerr := os.RemoveAll(work); rerr != nil {
				cleanup = append(cleanup, fmt.Errorf("remove work dir: %w", rerr))
			}
		}
		a.log.Warn("restore failed; creating the container fresh", err, "checkpoint", ck.Name, "set_aside", aside)
		if c := errors.Join(cleanup...); c != nil {
			a.log.Warn("cleanup after the failed restore was incomplete", c, "checkpoint", ck.Name)
		}
		sf.Fallback = err.Error()
		a.writeState(sf)
		return false
	}

	t := time.Now()
	m, err := deadline.Run(a.cfg.Timeouts.Validate.Duration, func() (*store.Manifest, error) {
		return store.Validate(ck, a.thisNode())
	})
	step("validate", t)
	if err != nil {
		return fail("validate", err)
	}

	a.crash("restore:after-validate")
	work, err = a.workDir(ck.Key, "restore")
	if err != nil {
		return fail("prepare", err)
	}
	if m.Rootfs == "overlay" {
		t = time.Now()
		f, err := os.Open(filepath.Join(ck.Dir, store.RootfsTar))
		if err != nil {
			return fail("restore files", err)
		}
		backup := filepath.Join(work, "backup")
		if err := os.Mkdir(backup, 0o700); err != nil {
			f.Close()
			return fail("restore files", err)
		}
		undo, _, err = rootfs.Apply(st.Rootfs, f, backup)
		f.Close()
		step("restore_files", t)
		if err != nil {
			return fail("restore files", err)
		}
	}

	a.crash("restore:before-runc")
	t = time.Now()
	restoreRan = true
	args := restoreArgs(a.inv, sf.Bundle, ck.Images(), work, a.cfg.RestoreArgs)
	// runc's own log goes to the work dir so that its error names the failure in the
	// warning (which reaches the caller's --log too).
	_, err = a.runc.Run(a.ctx, a.cfg.Timeouts.Restore.Duration, runc.Stdio{Stdin: a.env.Stdin,
		Stdout: a.env.Stdout, Stderr: a.env.Stderr, Log: filepath.Join(work, "runc.log")}, args...)
	step("runc_restore", t)
	if err != nil {
		return fail("runc restore", withCriuLog(err, filepath.Join(work, "restore.log")))
	}

	a.crash("restore:after-runc")
	if rs, err := criuimg.ReadRestoreStats(work); err == nil { // CRIU writes it to the work path
		sf.RestoreStats = rs
	}
	var cleanup []error
	if undo != nil {
		cleanup = append(cleanup, undo.Commit())
	}
	retired, err := a.store.Retire(ck)
	if err == nil {
		err = a.removeLater(retired)
	}
	cleanup = append(cleanup, err, os.RemoveAll(work))
	if err := errors.Join(cleanup...); err != nil {
		a.log.Warn("cleanup after the restore was incomplete", err, "checkpoint", ck.Name)
	}
	a.crash("restore:before-state")
	timings["total"] = ms(time.Since(start))
	sf.Started, sf.Checkpoint, sf.Fallback = state.StartedRestored, ck.Name, ""
	sf.StartPending = a.inv.Command == "create"
	sf.Timings = timings
	a.writeState(sf)
	a.log.Info("restored from checkpoint", "checkpoint", ck.Name, "timings_ms", timings)
	return true
}

// restoreArgs turns the caller's create (or run) into `runc restore --detach`: the one place
// a restore command is built. Options restore does not accept are dropped.
func restoreArgs(inv *runcargs.Invocation, bundle, images, work string, extra []string) []string {
	args := []string{"restore", "--detach", "--bundle=" + bundle, "--image-path=" + images, "--work-path=" + work}
	for _, name := range []string{"pid-file", "console-socket"} {
		if v, ok := inv.Value(name); ok && v != "" {
			if abs, err := filepath.Abs(v); err == nil {
				v = abs
			}
			args = append(args, "--"+name+"="+v)
		}
	}
	for _, name := range []string{"no-pivot", "no-subreaper"} {
		if inv.Bool(name) {
			args = append(args, "--"+name)
		}
	}
	args = append(args, extra...)
	return append(args, inv.ID)
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

// bindNetworkFS checks, under a deadline, that the host directory answers, and makes sure
// the bundle's config.json bind-mounts it where the container expects it (the same on a
// fresh create and a restore, so that CRIU finds at restore the mount it saw at dump).
func (a *app) bindNetworkFS(bundle string, m *optin.Mount) error {
	_, err := deadline.Run(a.cfg.Timeouts.NetworkFS.Duration, func() (struct{}, error) {
		st, err := a.env.FS.Stat(m.Host)
		if err != nil {
			return struct{}{}, err
		}
		if !st.IsDir() {
			return struct{}{}, fmt.Errorf("%s is not a directory", m.Host)
		}
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("host path %s: %w", m.Host, err)
	}
	return addBindMount(a.env.FS, bundle, m)
}

// addBindMount adds {destination, source, bind} to config.json's mounts unless a mount at
// that destination is already there, and writes config.json back atomically.
func addBindMount(fsys afero.Fs, bundle string, m *optin.Mount) error {
	p := filepath.Join(bundle, "config.json")
	b, err := afero.ReadFile(fsys, p)
	if err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	type mount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type,omitempty"`
		Source      string   `json:"source,omitempty"`
		Options     []string `json:"options,omitempty"`
	}
	var mounts []json.RawMessage
	if raw, ok := spec["mounts"]; ok {
		if err := json.Unmarshal(raw, &mounts); err != nil {
			return fmt.Errorf("bundle config mounts: %w", err)
		}
	}
	for _, raw := range mounts {
		var mt mount
		if json.Unmarshal(raw, &mt) == nil && filepath.Clean(mt.Destination) == m.Container {
			return nil
		}
	}
	nm, _ := json.Marshal(mount{Destination: m.Container, Type: "bind", Source: m.Host,
		Options: []string{"rbind", "rw"}})
	mounts = append(mounts, nm)
	spec["mounts"], _ = json.Marshal(mounts)
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	info, err := fsys.Stat(p)
	if err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	tmp := p + ".tardis-tmp"
	if err := afero.WriteFile(fsys, tmp, out, info.Mode().Perm()); err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	if err := fsys.Rename(tmp, p); err != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("bundle config: %w", err)
	}
	return nil
}
