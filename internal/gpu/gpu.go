// Package gpu suspends and resumes the CUDA state of a container's processes with NVIDIA's
// cuda-checkpoint, so that CRIU can dump and restore them like any CPU process.
//
// A CUDA process holds /dev/nvidia* open and mapped; CRIU cannot dump it. Suspended
// (`cuda-checkpoint --action lock`, then `--action checkpoint`), it holds no GPU memory and
// no /dev/nvidia* file, but still maps the driver's library. After `runc restore` it is
// resumed (`--action restore`, then `--action unlock`). Every step runs under a deadline
// that grows with the memory the process holds on the GPU, and kills the tool when it
// passes. A suspend that fails part-way resumes whatever it had suspended.
//
// The facts this package relies on (outputs, exit codes, rates) were measured on an H200
// with driver 580.159.04: see notes/gpu.md.
//
// The order of use, with pids every pid of the container's cgroup:
//
//	stop:     procs, err := g.Find(ctx, pids)       // none: nothing to do
//	          rec, err := g.Suspend(ctx, procs)     // rec goes in the manifest
//	          runc checkpoint; if it fails: g.Resume(ctx, pids, rec)
//	validate: node, err := g.Node(ctx); node.Fits(manifest's rec)
//	restore:  runc restore; g.Resume(ctx, restored pids, manifest's rec)
package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Defaults of the GPU fields left empty.
const (
	DefaultProc      = "/proc"
	DefaultDevPrefix = "/dev/nvidia"
	// DefaultLibrary is the driver's library, which a suspended CUDA process keeps mapped.
	DefaultLibrary = "libcuda.so"
)

// The CUDA states that `cuda-checkpoint --get-state` prints.
const (
	StateRunning      = "running"
	StateLocked       = "locked"
	StateCheckpointed = "checkpointed"
)

var (
	// ErrDisabled: GPU support is off (no cuda_checkpoint configured), yet a process holds
	// the GPU.
	ErrDisabled = errors.New("GPU support is off (set cuda_checkpoint or TARDIS_CUDA_CHECKPOINT)")
	// ErrNotCUDA: a process holds the GPU but cuda-checkpoint says it has no CUDA state (an
	// NVML or OpenGL user, say): cuda-checkpoint cannot suspend it, CRIU cannot dump it.
	ErrNotCUDA = errors.New("holds the GPU but is not a CUDA process cuda-checkpoint can suspend")
	// ErrState: cuda-checkpoint reported success, but the process is not in the state the
	// step leads to.
	ErrState = errors.New("not in the state the step leads to")
	// ErrMissing: fewer CUDA processes were found to resume than the checkpoint held.
	ErrMissing = errors.New("CUDA processes of the checkpoint not found to resume")
)

// GPU runs cuda-checkpoint and nvidia-smi on this node.
type GPU struct {
	CudaCheckpoint string // "" means GPU support is off
	NvidiaSMI      string
	Limits         Limits
	// Proc is where /proc is; DevPrefix starts the path of every GPU device node;
	// Library starts the base name of the driver's library. Empty means the defaults.
	Proc, DevPrefix, Library string
	// Env is the tools' environment; nil means this process's.
	Env []string
}

// New is the GPU of a configuration, with the default /proc, device and library names.
func New(c Config) *GPU {
	return &GPU{CudaCheckpoint: c.CudaCheckpoint, NvidiaSMI: c.NvidiaSMI, Limits: c.GPU}
}

// Enabled reports whether GPU support is on.
func (g *GPU) Enabled() bool { return g.CudaCheckpoint != "" }

func (g *GPU) proc() procFS { return procFS(or(g.Proc, DefaultProc)) }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Process is one CUDA process of a container.
type Process struct {
	PID   int    `json:"pid"`              // on the host, when the checkpoint was taken
	NSPID int    `json:"ns_pid,omitempty"` // in the container's pid namespace (kept by a restore)
	Comm  string `json:"comm"`
	Bytes uint64 `json:"bytes"` // what it held on the GPU (nvidia-smi), all copied out
}

func (p Process) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Comm) }

// ProcessError is a step that failed for one process.
type ProcessError struct {
	PID  int
	Comm string
	Step string // get-state, lock, checkpoint, restore, unlock
	Err  error
}

func (e *ProcessError) Error() string {
	return fmt.Sprintf("gpu: %s of pid %d (%s): %v", e.Step, e.PID, e.Comm, e.Err)
}

func (e *ProcessError) Unwrap() error { return e.Err }

func (g *GPU) process(pid int) Process {
	p := g.proc()
	return Process{PID: pid, NSPID: p.nsPID(pid), Comm: p.comm(pid)}
}

// Holders returns the processes among pids that have a GPU device (DevPrefix) open or
// mapped, reading /proc only. Processes that are gone are left out.
func (g *GPU) Holders(pids []int) ([]Process, error) {
	prefix := or(g.DevPrefix, DefaultDevPrefix)
	var out []Process
	for _, pid := range pids {
		ok, err := g.proc().holds(pid, func(path string) bool { return strings.HasPrefix(path, prefix) })
		if err != nil {
			return nil, fmt.Errorf("gpu: pid %d: %w", pid, err)
		}
		if ok {
			out = append(out, g.process(pid))
		}
	}
	return out, nil
}

// Find returns the CUDA processes among pids: those that hold a GPU device, confirmed by
// `cuda-checkpoint --get-state` (exit 0). A holder that cuda-checkpoint does not know as
// a CUDA process is an error wrapping ErrNotCUDA; with GPU support off, any holder is an
// error wrapping ErrDisabled. The processes found are returned with either error.
func (g *GPU) Find(ctx context.Context, pids []int) ([]Process, error) {
	holders, err := g.Holders(pids)
	if err != nil || len(holders) == 0 {
		return nil, err
	}
	if !g.Enabled() {
		return holders, fmt.Errorf("gpu: %s holds the GPU: %w", holders[0], ErrDisabled)
	}
	var found []Process
	var errs []error
	for _, p := range holders {
		_, err := g.State(ctx, p.PID)
		switch {
		case err == nil:
			found = append(found, p)
		case g.isGone(p.PID):
		case notCUDA(err):
			errs = append(errs, &ProcessError{PID: p.PID, Comm: p.Comm, Step: "get-state", Err: fmt.Errorf("%w: %w", ErrNotCUDA, err)})
		default:
			errs = append(errs, &ProcessError{PID: p.PID, Comm: p.Comm, Step: "get-state", Err: err})
		}
	}
	return found, errors.Join(errs...)
}

// notCUDA reports cuda-checkpoint's answer for a process without CUDA state: the driver's
// "initialization error" (notes/gpu.md section 4).
func notCUDA(err error) bool {
	var te *ToolError
	return errors.As(err, &te) && te.Code == 1 && strings.Contains(te.Msg, `"initialization error"`)
}

func (g *GPU) isGone(pid int) bool {
	_, err := os.Stat(g.proc().path(pid, ""))
	return gone(err)
}

// State is the process's CUDA state as `cuda-checkpoint --get-state` prints it.
func (g *GPU) State(ctx context.Context, pid int) (string, error) {
	out, err := g.run(ctx, g.Limits.Query.Duration, g.CudaCheckpoint, "--get-state", "--pid", strconv.Itoa(pid))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// action runs one `cuda-checkpoint --action` step and checks the state it leads to.
func (g *GPU) action(ctx context.Context, p Process, action string) error {
	args := []string{"--action", action, "--pid", strconv.Itoa(p.PID)}
	timeout, want := g.Limits.Base.Duration, StateRunning
	switch action {
	case "lock":
		args = append(args, "--timeout", strconv.FormatInt(g.Limits.Lock.Milliseconds(), 10))
		timeout, want = g.Limits.LockTimeout(), StateLocked
	case "checkpoint":
		timeout, want = g.Limits.SuspendTimeout(p.Bytes), StateCheckpointed
	case "restore":
		timeout, want = g.Limits.ResumeTimeout(p.Bytes), StateLocked
	}
	if _, err := g.run(ctx, timeout, g.CudaCheckpoint, args...); err != nil {
		return &ProcessError{PID: p.PID, Comm: p.Comm, Step: action, Err: err}
	}
	// Only the two steps whose success matters to CRIU are checked: after a checkpoint the
	// process must hold nothing on the GPU, after an unlock it must run again.
	if action != "checkpoint" && action != "unlock" {
		return nil
	}
	st, err := g.State(ctx, p.PID)
	if err != nil {
		return &ProcessError{PID: p.PID, Comm: p.Comm, Step: action, Err: fmt.Errorf("checking the state after it: %w", err)}
	}
	if st != want {
		return &ProcessError{PID: p.PID, Comm: p.Comm, Step: action,
			Err: fmt.Errorf("cuda-checkpoint reported success, but the state is %q: %w", st, ErrState)}
	}
	return nil
}

// Suspend records what the processes hold on the GPU (nvidia-smi), then suspends each one:
// lock, then checkpoint. If a step fails, the processes it had touched are resumed and the
// error names the process and what cuda-checkpoint said. The record is what a checkpoint's
// manifest keeps; it is returned only on success.
func (g *GPU) Suspend(ctx context.Context, procs []Process) (*Checkpoint, error) {
	if len(procs) == 0 {
		return nil, nil
	}
	if !g.Enabled() {
		return nil, fmt.Errorf("gpu: %s holds the GPU: %w", procs[0], ErrDisabled)
	}
	rec, err := g.Record(ctx, procs)
	if err != nil {
		return nil, err
	}
	type touched struct {
		p     Process
		state string // the state its last successful step led to
	}
	var done []touched
	for _, p := range rec.Processes {
		state := StateRunning
		err := g.action(ctx, p, "lock")
		if err == nil {
			state = StateLocked
			err = g.action(ctx, p, "checkpoint")
		}
		if err == nil {
			done = append(done, touched{p, StateCheckpointed})
			continue
		}
		// Undo, the failed process first (a step cut by its deadline may have done its
		// work), whatever the caller's context says: each step has its own deadline.
		undo := context.WithoutCancel(ctx)
		errs := []error{err}
		if rerr := g.resume(undo, p, state); rerr != nil {
			errs = append(errs, fmt.Errorf("and resuming it: %w", rerr))
		}
		for i := len(done) - 1; i >= 0; i-- {
			if rerr := g.resume(undo, done[i].p, done[i].state); rerr != nil {
				errs = append(errs, fmt.Errorf("and resuming %s: %w", done[i].p, rerr))
			}
		}
		return nil, errors.Join(errs...)
	}
	return rec, nil
}

// resume brings one process back to running from the state it is in: get-state when it
// answers, else known (the state the last step known to succeed led to).
func (g *GPU) resume(ctx context.Context, p Process, known string) error {
	state := known
	if st, err := g.State(ctx, p.PID); err == nil {
		state = st
	}
	switch state {
	case StateRunning:
		return nil
	case StateCheckpointed:
		if err := g.action(ctx, p, "restore"); err != nil {
			return err
		}
		fallthrough
	case StateLocked:
		return g.action(ctx, p, "unlock")
	}
	return &ProcessError{PID: p.PID, Comm: p.Comm, Step: "get-state", Err: fmt.Errorf("unknown CUDA state %q", state)}
}

// Resume resumes the suspended CUDA processes among pids (those of the restored container,
// or of one whose dump failed): each process that maps the driver's library or holds a GPU
// device is asked its state, and one that is checkpointed is restored and unlocked, one
// that is locked unlocked. saved, the record of the suspend, gives each process's memory
// (matched by its pid in the container's namespace) for the deadlines. Every process is
// tried; the errors name each one that failed. It returns the processes it resumed.
func (g *GPU) Resume(ctx context.Context, pids []int, saved *Checkpoint) ([]Process, error) {
	if !g.Enabled() {
		if saved != nil && len(saved.Processes) > 0 {
			return nil, fmt.Errorf("gpu: the checkpoint holds CUDA state: %w", ErrDisabled)
		}
		return nil, nil
	}
	prefix, lib := or(g.DevPrefix, DefaultDevPrefix), or(g.Library, DefaultLibrary)
	match := func(path string) bool {
		return strings.HasPrefix(path, prefix) || strings.HasPrefix(filepath.Base(path), lib)
	}
	var resumed []Process
	var errs []error
	found := 0 // CUDA processes, resumed or not
	for _, pid := range pids {
		ok, err := g.proc().holds(pid, match)
		if err != nil {
			errs = append(errs, fmt.Errorf("gpu: pid %d: %w", pid, err))
			continue
		}
		if !ok {
			continue
		}
		p := g.process(pid)
		p.Bytes = saved.bytesOf(p.NSPID)
		state, err := g.State(ctx, pid)
		switch {
		case err != nil && (notCUDA(err) || g.isGone(pid)):
			continue
		}
		found++
		if err != nil {
			errs = append(errs, &ProcessError{PID: pid, Comm: p.Comm, Step: "get-state", Err: err})
			continue
		}
		if state == StateRunning {
			continue
		}
		if err := g.resume(ctx, p, state); err != nil {
			errs = append(errs, err)
			continue
		}
		resumed = append(resumed, p)
	}
	if saved != nil && found < len(saved.Processes) {
		errs = append(errs, fmt.Errorf("gpu: the checkpoint held %d CUDA processes, %d found: %w",
			len(saved.Processes), found, ErrMissing))
	}
	return resumed, errors.Join(errs...)
}
