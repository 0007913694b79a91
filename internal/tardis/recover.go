package tardis

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/node"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/store"
)

// recoverKey puts right what operations on the key left when the tardis running them died
// (SIGKILL, a node's power, a caller's timeout): every operation journals what it starts
// in its work directory, and the next operation on the key, holding the key's lock, finds
// it there. Nothing tardis started is left running unnoticed:
//
//   - an interrupted restore: its runc (and CRIU) is stopped if still running, CRIU first;
//     the container it was making is removed (its create never succeeded, and a second
//     restore of the checkpoint must never run beside it); the rootfs is put back from the
//     undo journal; the claim on the checkpoint is given back.
//   - an interrupted checkpoint: its runc is given until the checkpoint deadline to finish,
//     then stopped; a container that still lives gets back the CUDA processes it had
//     suspended; a complete dump is published (with the container's files and CUDA state)
//     if the container has ended, and discarded otherwise (the container still runs: the
//     stop that follows checkpoints it again).
func (a *app) recoverKey(r store.Ref) {
	for _, op := range []string{node.OpRestore, node.OpCheckpoint} {
		dirs, err := a.paths.Ops(r, op)
		if err != nil {
			a.log.Warn("cannot look for interrupted operations", err)
		}
		for _, dir := range dirs {
			var err error
			if op == node.OpRestore {
				err = a.recoverRestore(r, dir)
			} else {
				err = a.recoverCheckpoint(r, dir)
			}
			if err != nil {
				a.log.Warn("cannot put right an interrupted "+op, err, "work_dir", dir)
				continue
			}
			if err := node.Finish(dir); err != nil {
				a.log.Warn("cannot remove the work dir of an interrupted "+op, err)
			}
		}
	}
	// An unsafe store is reported by what reads the checkpoint next, once.
	if back, err := a.store.Reclaim(r, a.paths.Owner()); err != nil && !errors.Is(err, store.ErrUnsafe) {
		a.log.Warn("cannot take back the checkpoint of an interrupted restore", err)
	} else if len(back) > 0 {
		a.log.Info("took back the checkpoint of an interrupted restore", "checkpoint", back)
	}
}

// grace is how long a runc gets to clean up after its CRIU was stopped.
const grace = 5 * time.Second

func (a *app) recoverRestore(r store.Ref, dir string) error {
	j, err := node.ReadJournal(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var errs []error
	if j != nil {
		if j.Runc != nil && j.Runc.Alive() {
			a.log.Warn("a restore's runc outlived the tardis that ran it; stopping it", nil, "pid", j.Runc.Pid)
			runc.Terminate(*j.Runc, grace)
		}
		if j.ID != "" && j.Runc != nil {
			if err := a.removeContainer(j.Root, j.ID); err != nil {
				errs = append(errs, err)
			} else {
				a.log.Info("removed the container of an interrupted restore", "container", j.ID)
			}
		}
	}
	if backup := filepath.Join(dir, "backup"); exists(backup) { // else no file was touched
		roots, err := rootfs.Recover(backup)
		if err != nil {
			errs = append(errs, fmt.Errorf("put back the rootfs: %w", err))
		} else if len(roots) > 0 {
			a.log.Info("put back the rootfs of an interrupted restore", "rootfs", roots)
		}
	}
	return errors.Join(errs...)
}

func (a *app) recoverCheckpoint(r store.Ref, dir string) error {
	j, err := node.ReadJournal(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // it died before it started anything
	}
	if err != nil {
		return err
	}
	if j.Runc != nil && j.Runc.Alive() {
		end := j.Started.Add(a.cfg.Timeouts.Checkpoint.Duration)
		for time.Now().Before(end) && j.Runc.Alive() {
			time.Sleep(20 * time.Millisecond)
		}
		if j.Runc.Alive() {
			a.log.Warn("a checkpoint's runc outlived the tardis that ran it and its deadline; stopping it", nil, "pid", j.Runc.Pid)
			runc.Terminate(*j.Runc, grace)
		}
	}
	if len(j.CUDA) > 0 {
		if err := a.wake(a.inRoot(j.Root), j.ID, j.CUDA, j.GPU); err != nil {
			a.log.Warn("cannot resume the CUDA processes of an interrupted checkpoint", err, "container", j.ID)
		}
	}
	if j.Checkpoint == "" {
		return nil
	}
	if !exists(j.Checkpoint) { // renamed into place, perhaps not yet current
		ck, err := a.store.Adopt(r, j.Checkpoint)
		if ck != nil {
			a.log.Info("published the complete dump of an interrupted checkpoint", "checkpoint", ck.Name, "container", j.ID)
			a.markCheckpointed(j.Root, j.ID)
		}
		return err
	}
	p, err := a.store.Reopen(r, j.Checkpoint)
	if err != nil {
		return err
	}
	discard := func(why string) error {
		a.log.Info("discarded the dump of an interrupted checkpoint", "why", why, "container", j.ID)
		return p.Discard()
	}
	if verr := criuimg.Validate(p.Images()); verr != nil {
		return discard("incomplete: " + verr.Error())
	}
	st, err := a.inRoot(j.Root).State(a.ctx, j.ID)
	switch {
	case errors.Is(err, runc.ErrNotExist) || err == nil && st.Status == runc.Stopped:
	case err != nil:
		return errors.Join(err, p.Discard())
	default:
		return discard("the container still runs")
	}
	kind, upper, err := rootfsKind(a.env.Mountinfo, j.Rootfs)
	var stats *rootfs.Stats
	if err == nil && kind == "overlay" {
		stats, err = saveFiles(upper, p.RootfsArchive())
	}
	if err != nil {
		return errors.Join(fmt.Errorf("save the files of an interrupted checkpoint: %w", err), p.Discard())
	}
	m := &store.Manifest{ContainerID: j.ID, Created: time.Now().UTC(), Node: a.thisNode(), Rootfs: kind, RootfsStats: stats,
		GPU: j.GPU}
	if sf, err := a.states.Read(j.Root, j.ID); err == nil {
		m.NetworkFS = sf.NetworkFS
		if sf.Identity != nil {
			m.Identity = *sf.Identity
		}
	}
	ck, err := p.Publish(m)
	if err != nil && ck == nil {
		return errors.Join(err, p.Discard())
	}
	a.log.Info("published the complete dump of an interrupted checkpoint", "checkpoint", ck.Name, "container", j.ID)
	a.markCheckpointed(j.Root, j.ID)
	return nil
}

// markCheckpointed records in a container's state file that it was checkpointed.
func (a *app) markCheckpointed(root, id string) {
	sf, err := a.states.Read(root, id)
	if err != nil {
		return
	}
	now := time.Now().UTC()
	sf.Checkpointed = &now
	a.writeState(sf)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
