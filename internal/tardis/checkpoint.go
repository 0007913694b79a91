package tardis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/node"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// checkpointTx saves a running container for a stop. Its steps run in order; what each
// has done is recorded in the transaction, so that one rollback undoes exactly that:
//
//	precheck  what can be known before the dump: the writable layer holds nothing that
//	          cannot be saved, the container's CUDA processes (gpu.go) can be suspended,
//	          and the checkpoint root has room for the images and files. A failure here
//	          leaves the container untouched: the signal is delivered as asked and it shuts
//	          down gracefully.
//	begin     a pending checkpoint, the work directory and its journal, and the state
//	          file's mark that tardis is stopping the container (from here on its end is
//	          tardis's, never "ended on its own")
//	suspend   each CUDA process suspended (journalled first), under the GPU deadlines; the
//	          room checked again (what came off the GPU is now memory CRIU writes). From
//	          here on, a failure that leaves the container alive resumes them.
//	dump      `runc checkpoint` under a deadline. If the deadline or an error cut it short
//	          after CRIU had written complete images, those are kept (and the container is
//	          ended if CRIU left it alive): a complete dump is never thrown away.
//	files     the changes in its writable layer
//	publish   the manifest, synced, made current atomically
//
// From begin to publish the disk writes the checkpoint while it is being written
// (store.Pending.StartWriteback), so that the dump and the disk overlap; publish's fsync
// is what makes it durable.
type checkpointTx struct {
	a   *app
	sf  *state.File
	r   store.Ref
	pid int // the container's init, from runc state

	kind    string // "overlay" or "in-place"
	upper   string // the overlay's upper directory
	work    string
	journal *node.Journal
	pending *store.Pending
	// stopWriteback ends the pending checkpoint's background writeback (nil before begin).
	stopWriteback func()
	gone          bool // the container's processes are gone (runc checkpoint ended them)
	stats         *rootfs.Stats
	timings       map[string]float64

	fileBytes int64           // the writable layer's changes
	cuda      []gpu.Process   // the container's CUDA processes
	gpu       *gpu.Checkpoint // their suspend's record
}

// run runs the steps and reports whether the container's processes are gone (checkpointed,
// or ended by a dump whose images could not be kept). Failures are warnings.
func (t *checkpointTx) run() bool {
	start := time.Now()
	t.timings = map[string]float64{}
	steps := []struct {
		name string
		do   func() error
	}{
		{"precheck", t.precheck},
		{"prepare", t.begin},
		{"suspend CUDA", t.suspend},
		{"runc checkpoint", t.dump},
		{"save container files", t.files},
		{"publish", func() error { return t.publish(start) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return t.rollback(fmt.Errorf("%s: %w", s.name, err))
		}
	}
	return true
}

func (t *checkpointTx) precheck() error {
	since := time.Now()
	defer func() { t.timings["precheck"] = ms(time.Since(since)) }()
	kind, upper, err := rootfsKind(t.a.env.Mountinfo, t.sf.Rootfs)
	if err != nil {
		return err
	}
	t.kind, t.upper = kind, upper
	if kind == "overlay" {
		plan, err := rootfs.Precheck(upper)
		if err != nil {
			return err
		}
		t.fileBytes = plan.ArchiveBytes
	}
	if t.a.mayHoldGPU(t.pid) {
		if t.cuda, err = t.a.findCUDA(t.a.runc, t.sf.ID); err != nil {
			return err
		}
	}
	return t.a.checkRoom(t.pid, t.fileBytes)
}

func (t *checkpointTx) begin() error {
	p, err := t.a.store.Begin(t.r)
	if err != nil {
		return err
	}
	p.Crash = t.a.env.Crash
	t.pending = p
	t.stopWriteback = p.StartWriteback(store.WritebackEvery)
	if t.work, err = t.a.paths.NewOp(t.r, node.OpCheckpoint); err != nil {
		return err
	}
	t.journal = &node.Journal{Op: node.OpCheckpoint, ID: t.sf.ID, Root: t.sf.Root, Bundle: t.sf.Bundle,
		Rootfs: t.sf.Rootfs, Started: time.Now().UTC(), Checkpoint: p.Dir}
	if err := node.WriteJournal(t.work, t.journal); err != nil {
		return err
	}
	now := time.Now().UTC()
	t.sf.Stopping = &now
	t.a.writeState(t.sf)
	return nil
}

// suspend suspends the container's CUDA processes, having journalled them, so that a
// tardis that dies from here on leaves them to be resumed by the next operation on the key.
func (t *checkpointTx) suspend() error {
	if len(t.cuda) == 0 {
		return nil
	}
	since := time.Now()
	defer func() { t.timings["gpu_suspend"] = ms(time.Since(since)) }()
	for _, p := range t.cuda {
		t.journal.CUDA = append(t.journal.CUDA, p.PID)
	}
	if err := node.WriteJournal(t.work, t.journal); err != nil {
		return err
	}
	rec, err := t.a.gpu().Suspend(t.a.ctx, t.cuda)
	if err != nil {
		return err // what it had suspended it resumed
	}
	t.gpu, t.journal.GPU = rec, rec
	if err := node.WriteJournal(t.work, t.journal); err != nil {
		return err
	}
	t.a.crash("checkpoint:after-suspend")
	return t.a.checkRoom(t.pid, t.fileBytes)
}

func (t *checkpointTx) dump() error {
	since := time.Now()
	defer func() { t.timings["runc_checkpoint"] = ms(time.Since(since)) }()
	ctx, cancel := t.a.bounded(t.a.cfg.Timeouts.Checkpoint.Duration)
	defer cancel()
	err := t.a.runc.Checkpoint(ctx, t.sf.ID, runc.CheckpointOpts{ImagePath: t.pending.Images(), WorkPath: t.work,
		Extra: t.a.cfg.CheckpointArgs, Started: func(p runc.Proc) {
			t.journal.Runc, t.journal.Started = &p, time.Now().UTC()
			if err := node.WriteJournal(t.work, t.journal); err != nil {
				t.a.log.Warn("cannot journal the checkpoint's runc", err)
			}
		},
		// A dump that hung after CRIU wrote complete images (a post-dump step): the
		// container is killed while CRIU still holds it frozen, so that not one more
		// instruction of it runs beside its checkpoint once CRIU is stopped.
		AtDeadline: func() {
			if criuimg.Validate(t.pending.Images()) == nil {
				kctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
				defer cancel()
				if err := t.a.runc.Kill(kctx, t.sf.ID, syscall.SIGKILL, true); err != nil {
					t.a.log.Warn("cannot end the container whose dump is complete", err)
				}
			}
		}})
	t.a.crash("checkpoint:after-runc")
	if err == nil {
		t.gone = true
		return nil // not validated here (the user's decision): a bad image is found at restore
	}
	err = withCriuLog(err, filepath.Join(t.work, "dump.log"))
	if verr := criuimg.Validate(t.pending.Images()); verr != nil {
		return err // incomplete: the previous checkpoint stays current
	}
	// CRIU wrote complete images, then runc or CRIU failed or hung: keep them, and make sure
	// the container does not run on beside its checkpoint.
	if kerr := t.a.endContainer(t.sf.ID); kerr != nil {
		return errors.Join(err, fmt.Errorf("the dump is complete but the container could not be ended: %w", kerr))
	}
	t.gone = true
	t.a.log.Warn("runc checkpoint did not finish, but CRIU's images are complete: keeping them", err)
	return nil
}

func (t *checkpointTx) files() error {
	if t.kind != "overlay" {
		return nil
	}
	since := time.Now()
	defer func() { t.timings["save_files"] = ms(time.Since(since)) }()
	stats, err := saveFiles(t.upper, t.pending.RootfsArchive())
	t.stats = stats
	return err
}

func (t *checkpointTx) publish(start time.Time) error {
	a := t.a
	t.stopWriteback()
	dumpStats, err := criuimg.ReadDumpStats(t.work) // CRIU writes stats-dump to the work path
	if err != nil {
		dumpStats = nil // CRIU's statistics are informative only
	}
	t.timings["total"] = ms(time.Since(start))
	m := &store.Manifest{ContainerID: t.sf.ID, Created: time.Now().UTC(), Node: a.thisNode(),
		Rootfs: t.kind, RootfsStats: t.stats, NetworkFS: t.sf.NetworkFS, GPU: t.gpu, DumpStats: dumpStats,
		Timings: t.timings}
	if t.sf.Identity != nil {
		m.Identity = *t.sf.Identity
	}
	a.crash("checkpoint:before-publish")
	ck, err := t.pending.Publish(m)
	if err != nil && ck == nil {
		return err
	}
	if err != nil {
		a.log.Warn("checkpoint published, but the previous one could not be removed", err)
	}
	a.crash("checkpoint:before-state")
	now := time.Now().UTC()
	t.sf.Checkpointed = &now
	t.sf.Timings = t.timings
	a.writeState(t.sf)
	if err := node.Finish(t.work); err != nil {
		a.log.Warn("cannot remove the checkpoint's work dir", err)
	}
	a.log.Info("checkpointed", "checkpoint", ck.Name, "timings_ms", t.timings)
	a.expireLater()
	return nil
}

// rollback wakes a container the checkpoint left alive (thawed if a dump that died or hung
// left it frozen, so that the signal the caller asked for lands; its CUDA processes
// resumed if they were suspended), discards the pending checkpoint and the work directory,
// and reports whether the container's processes are gone all the same.
func (t *checkpointTx) rollback(err error) bool {
	a := t.a
	var werr error
	if !t.gone {
		var cuda []int
		if t.gpu != nil { // else nothing is suspended (a failed suspend resumed what it had)
			cuda = t.journal.CUDA
		}
		werr = a.wake(a.runc, t.sf.ID, cuda, t.gpu)
	}
	var cleanup []error
	if t.pending != nil {
		t.stopWriteback()
		if derr := t.pending.Discard(); derr != nil {
			cleanup = append(cleanup, derr)
		}
	}
	if t.work != "" {
		if ferr := node.Abandon(t.work); ferr != nil { // the logs the warning names stay
			cleanup = append(cleanup, ferr)
		}
	}
	if c := errors.Join(cleanup...); c != nil {
		err = errors.Join(err, fmt.Errorf("cleanup: %w", c))
	}
	if t.gone {
		a.log.Warn("checkpoint failed after the container had ended; nothing saved", err)
		return true
	}
	a.log.Warn("checkpoint failed; carrying on as asked", err)
	if werr != nil {
		a.log.Warn("cannot bring the container back as it was before the failed checkpoint", werr)
	}
	if _, serr := a.state(t.sf.ID); errors.Is(serr, runc.ErrNotExist) {
		return true // runc ended it (a dump that failed late)
	}
	return false
}

// endContainer ends a container whose dump is complete but which CRIU may have left
// alive or frozen: SIGKILL to all its processes, then a thaw so that the kill lands.
func (a *app) endContainer(id string) error {
	st, err := a.state(id)
	if errors.Is(err, runc.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Status == runc.Stopped {
		return nil
	}
	ctx, cancel := a.bounded(statusTimeout)
	defer cancel()
	if err := a.runc.Kill(ctx, id, syscall.SIGKILL, true); err != nil {
		return err
	}
	if st.Status == runc.Paused {
		if err := a.runc.Resume(ctx, id); err != nil {
			return err
		}
	}
	for end := time.Now().Add(statusTimeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		st, err := a.state(id)
		if errors.Is(err, runc.ErrNotExist) || err == nil && st.Status == runc.Stopped {
			return nil
		}
	}
	return errors.New("still running after SIGKILL")
}

// rootfsKind says how a rootfs's changes are saved: "overlay" (its upper directory, which
// it returns) or "in-place" (a plain directory, used as it is at restore).
func rootfsKind(mountinfo, path string) (kind, upper string, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", fmt.Errorf("rootfs: %w", err)
	}
	mi, err := os.Open(mountinfo)
	if err != nil {
		return "", "", fmt.Errorf("mountinfo: %w", err)
	}
	defer mi.Close()
	upper, err = rootfs.UpperDir(mi, real)
	if errors.Is(err, rootfs.ErrNotOverlay) {
		return "in-place", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return "overlay", upper, nil
}

// saveFiles writes the changes of an overlay's upper directory into the archive at path (a
// partial one an interrupted stop left there is replaced).
func saveFiles(upper, path string) (*rootfs.Stats, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	stats, err := rootfs.Save(upper, f) // buffered there; large files go in with sendfile
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return &stats, nil
}
