package tardis

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/runc"
)

// A container's CUDA processes hold GPU memory and /dev/nvidia* files, which CRIU cannot
// dump. Around a checkpoint and a restore tardis therefore uses package gpu (NVIDIA's
// cuda-checkpoint and nvidia-smi):
//
//	stop      precheck: the container's processes (runc ps), its CUDA ones among them
//	          (gpu.Find); with GPU support off, one that holds the GPU refuses the
//	          checkpoint before anything is done, and the signal is delivered as asked.
//	          suspend: each CUDA process locked and checkpointed (gpu.Suspend), under
//	          deadlines of its own; the record goes into the journal, then the manifest.
//	          A checkpoint that fails while the container lives resumes them.
//	validate  a checkpoint with CUDA state needs GPU support and a node that can take it:
//	          the driver branch, GPU model and count, free GPU memory (gpu.Node.Fits).
//	restore   after runc restore, each CUDA process of the restored container (its host
//	          pids, from runc ps) resumed (gpu.Resume); a failure is a failed restore.
//
// None of this costs a non-GPU container anything but one stat: runc ps and /proc are read
// only for a container that can see the GPU's control device (mayHoldGPU).

// gpu is the node's GPU as the configuration and the environment describe it.
func (a *app) gpu() *gpu.GPU {
	g := gpu.New(a.cfg.Config)
	g.DevPrefix = a.env.GPUDevPrefix
	g.Env = a.env.Environ
	return g
}

// mayHoldGPU reports whether the container whose init is pid can hold a GPU: it sees the
// GPU's control device (/dev/nvidiactl) in its own root. Every GPU container does (the
// NVIDIA container toolkit and CDI both add it); other containers, and every container on a
// node without a GPU, do not. When its root cannot be looked into, the node's own device
// decides.
func (a *app) mayHoldGPU(pid int) bool {
	prefix := a.env.GPUDevPrefix
	if prefix == "" {
		prefix = gpu.DefaultDevPrefix
	}
	ctl := prefix + "ctl"
	_, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/root" + ctl)
	switch {
	case err == nil:
		return true
	case errors.Is(err, fs.ErrNotExist):
		return false
	}
	_, err = os.Stat(ctl)
	return err == nil
}

// findCUDA lists the container's processes and finds its CUDA ones. A process that holds
// the GPU but cannot be suspended (GPU support off, or not a CUDA process) is an error
// naming it.
func (a *app) findCUDA(r Runc, id string) ([]gpu.Process, error) {
	ctx, cancel := a.bounded(statusTimeout)
	pids, err := r.Ps(ctx, id)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("the container's processes: %w", err)
	}
	return a.gpu().Find(a.ctx, pids)
}

// gpuFits says why this node cannot take a checkpoint's CUDA state (gpu.GPU.Fits).
func (a *app) gpuFits(ctx context.Context, rec *gpu.Checkpoint) error {
	_, err := a.gpu().Fits(ctx, rec)
	return err
}

// wake brings back what a checkpoint left of a container that lives on (the checkpoint
// failed, or was interrupted, before the dump ended it): the container thawed if the dump
// left it frozen, then its suspended CUDA processes resumed (its processes must run for
// that). cuda are the pids the suspend was given (none: nothing was suspended); rec, the
// suspend's record, may be nil (a suspend interrupted part-way).
func (a *app) wake(r Runc, id string, cuda []int, rec *gpu.Checkpoint) error {
	st, err := a.stateIn(r, id)
	if errors.Is(err, runc.ErrNotExist) || err == nil && st.Status == runc.Stopped {
		return nil // its processes are gone
	}
	if err == nil && st.Status == runc.Paused {
		ctx, cancel := a.bounded(statusTimeout)
		err := r.Resume(ctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("thaw the container: %w", err)
		}
	}
	if len(cuda) == 0 {
		return nil
	}
	pids := cuda
	ctx, cancel := a.bounded(statusTimeout)
	if listed, err := r.Ps(ctx, id); err == nil {
		pids = listed
	}
	cancel()
	resumed, err := a.gpu().Resume(a.ctx, pids, rec)
	if len(resumed) > 0 {
		a.log.Info("resumed the container's CUDA processes", "container", id, "processes", resumed)
	}
	if err != nil {
		return fmt.Errorf("resume its CUDA processes: %w", err)
	}
	return nil
}
