// Package fakecuda is a fake of NVIDIA's GPU tools for tests, without a GPU: a fake
// cuda-checkpoint (CheckpointMain), a fake nvidia-smi (SMIMain) and a fake CUDA process
// (ProcessMain), which a test binary plays as programs (testscript.Main).
//
// They share a directory, $FAKECUDA_DIR, where each fake CUDA process keeps its CUDA
// state: <pid>.json (state, MiB held on the GPU, the process's start time, so that a
// reused pid is not taken for it) and <pid>.devices ("open" or "closed", written by the
// process when it has taken or let go of its device files).
//
// cuda-checkpoint answers as the real one (580 driver line) does in notes/gpu.md section 4:
// the same lines, exit codes and state transitions (running, locked, checkpointed). A
// checkpoint makes the process let go of its device files (SIGUSR1), a restore makes it
// take them again (SIGUSR2), as a real CUDA process does.
//
// Environment:
//
//	FAKECUDA_DIR     the state directory (no CUDA process is known without it)
//	FAKECUDA_CALLS   every call of cuda-checkpoint and nvidia-smi is appended here, one line each
//	FAKECUDA_FAULTS  faults, "ACTION:KIND[=ARG][@PID]" separated by ";" (also read, one a
//	                 line, from $FAKECUDA_DIR/faults). ACTION is a cuda-checkpoint operation
//	                 (get-state, lock, checkpoint, restore, unlock, toggle, get-restore-tid),
//	                 an nvidia-smi query (query-gpu, query-compute-apps) or "*". KIND:
//	                   fail[=MSG]  fail as the real tool does, with the driver's message MSG
//	                               (default "unknown error"; nvidia-smi: its no-driver message)
//	                   hang        never answer, having done nothing
//	                   hang-after  do the step, then never answer
//	                   lie[=STATE] exit 0 silently, state unchanged (get-state: print STATE)
//	                 @PID limits an entry to one pid; the first entry that applies wins.
//	FAKECUDA_DEV     the fake CUDA process's device prefix: it opens PREFIX0, PREFIXctl,
//	                 PREFIX-uvm and PREFIX-uvm-tools (created when missing), as /dev/nvidia*
//	FAKECUDA_LIB     a file the fake CUDA process maps for good, as the driver's libcuda.so.1
//	FAKERUNC_RESTORED set by the fake runc's restore: the fake CUDA process starts as one
//	                 that CRIU restored with its CUDA state suspended (checkpointed, no device)
//	FAKESMI_GPUS     the GPUs, "NAME:TOTAL_MIB[:FREE_MIB]" separated by ";" (default one
//	                 "NVIDIA H200:143771"; free by default is total less what the fake
//	                 processes hold, all on GPU 0)
//	FAKESMI_DRIVER   the driver version (default 580.159.04)
package fakecuda

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The CUDA states.
const (
	running      = "running"
	locked       = "locked"
	checkpointed = "checkpointed"
)

// The driver's error strings that the real tool prints (notes/gpu.md section 4).
const (
	errInit    = "initialization error"
	errNoProc  = "OS call failed or operation not supported on this OS"
	errState   = "the operation cannot be performed in the present state"
	errUnknown = "unknown error"
)

// pstate is one fake CUDA process's file.
type pstate struct {
	State string `json:"state"`
	MiB   uint64 `json:"mib"`
	Start string `json:"start"` // field 22 of /proc/PID/stat when it started
}

func dir() string { return os.Getenv("FAKECUDA_DIR") }

func statePath(pid int) string { return filepath.Join(dir(), strconv.Itoa(pid)+".json") }
func ackPath(pid int) string   { return filepath.Join(dir(), strconv.Itoa(pid)+".devices") }

// alive reports whether pid is a live process.
func alive(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// startTime is the process's start time in clock ticks since boot, "" if it is gone (a
// zombie, which no parent has reaped yet, is gone too).
func startTime(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	// The command name, in parentheses, may hold spaces: count fields after its end.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return ""
	}
	return f[19] // field 22 overall: 3 is f[0]
}

// load is the CUDA state of a live fake CUDA process; nil for any other process.
func load(pid int) (*pstate, error) { return loadIn(dir(), pid) }

// loadIn is load with the state directory d.
func loadIn(d string, pid int) (*pstate, error) {
	if d == "" {
		return nil, nil
	}
	p := filepath.Join(d, strconv.Itoa(pid)+".json")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st pstate
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if st.Start != startTime(pid) {
		return nil, nil // a process that has gone, or another that took its pid
	}
	return &st, nil
}

// save writes the state whole (rename), so that a reader never sees half of it.
func save(pid int, st *pstate) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeAtomic(statePath(pid), b)
}

func writeAtomic(path string, b []byte) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// logCall appends the program's name and argv as one line to $FAKECUDA_CALLS, in one write
// on an O_APPEND file, so that lines of calls in parallel stay whole.
func logCall(prog string, args []string) {
	name := os.Getenv("FAKECUDA_CALLS")
	if name == "" {
		return
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(strings.Join(append([]string{prog}, args...), " ") + "\n")
}

// fault is an injected misbehaviour.
type fault struct {
	kind string // "", fail, hang, hang-after, lie
	arg  string
}

// findFault returns the first fault entry for this action and pid.
func findFault(action string, pid int) (fault, error) {
	entries := strings.Split(os.Getenv("FAKECUDA_FAULTS"), ";")
	if dir() != "" {
		if b, err := os.ReadFile(filepath.Join(dir(), "faults")); err == nil {
			entries = append(entries, strings.Split(string(b), "\n")...)
		}
	}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		act, rest, ok := strings.Cut(e, ":")
		if !ok {
			return fault{}, fmt.Errorf("bad fault %q: want ACTION:KIND[=ARG][@PID]", e)
		}
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			p, err := strconv.Atoi(rest[i+1:])
			if err != nil {
				return fault{}, fmt.Errorf("bad fault %q: %q is not a pid", e, rest[i+1:])
			}
			if p != pid {
				continue
			}
			rest = rest[:i]
		}
		if act != action && act != "*" {
			continue
		}
		kind, arg, _ := strings.Cut(rest, "=")
		switch kind {
		case "fail", "hang", "hang-after", "lie":
			return fault{kind: kind, arg: arg}, nil
		}
		return fault{}, fmt.Errorf("bad fault %q: unknown kind %q", e, kind)
	}
	return fault{}, nil
}

// hang never returns: the tool is stuck in the driver until someone kills it.
func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

// signalAndWait sends sig to a fake CUDA process and waits (up to 10 s) until it says its
// devices are in want ("open" or "closed").
func signalAndWait(pid int, sig syscall.Signal, want string) error {
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(ackPath(pid)); err == nil && string(b) == want {
			return nil
		}
	}
	return fmt.Errorf("pid %d did not make its devices %s", pid, want)
}

// Programs are the fakes as a test binary plays them (testscript.Main's commands, put on
// PATH under these names): "cuda-checkpoint", "nvidia-smi" and "cudaproc".
func Programs() map[string]func() {
	return map[string]func(){
		"cuda-checkpoint": func() { os.Exit(CheckpointMain()) },
		"nvidia-smi":      func() { os.Exit(SMIMain()) },
		"cudaproc":        func() { os.Exit(ProcessMain()) },
	}
}
