package fakecuda

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// What the real tool prints when an operation fails: the format, then the process ID and
// the driver's error string. The get-state, lock, checkpoint and toggle forms are the
// real ones (notes/gpu.md section 4); restore, unlock and get-restore-tid follow the lock
// and checkpoint form, not seen failing on the real tool.
var failForms = map[string]string{
	"get-state":       `Error getting process state for process ID %d: "%s"`,
	"lock":            `Could not lock on process ID %d: "%s"`,
	"checkpoint":      `Could not checkpoint on process ID %d: "%s"`,
	"restore":         `Could not restore on process ID %d: "%s"`,
	"unlock":          `Could not unlock on process ID %d: "%s"`,
	"toggle":          `Error toggling CUDA in process ID %d: "%s"`,
	"get-restore-tid": `Error getting restore thread ID for process ID %d: "%s"`,
}

const checkpointHelp = `cuda-checkpoint (fake, for tests)

  --get-state --pid <pid>
  --action lock | checkpoint | restore | unlock --pid <pid> [--timeout <ms>]
  --toggle --pid <pid>
  --get-restore-tid --pid <pid>
  --help
`

// CheckpointMain runs the fake cuda-checkpoint over os.Args and returns its exit status.
func CheckpointMain() int {
	args := os.Args[1:]
	logCall("cuda-checkpoint", args)
	op, pid, err := parseCheckpointArgs(args)
	if err != nil {
		// Not checked against the real tool: how it words a bad command line.
		fmt.Fprintf(os.Stderr, "cuda-checkpoint: %v\n\n%s", err, checkpointHelp)
		return 1
	}
	if op == "help" {
		fmt.Print(checkpointHelp)
		return 0
	}
	f, err := findFault(op, pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake cuda-checkpoint: %v\n", err)
		return 2
	}
	fail := func(msg string) int {
		fmt.Fprintf(os.Stderr, failForms[op]+"\n", pid, msg)
		return 1
	}
	switch f.kind {
	case "hang":
		hang()
	case "fail":
		if f.arg == "" {
			f.arg = errUnknown
		}
		return fail(f.arg)
	case "lie":
		if op == "get-state" && f.arg != "" {
			fmt.Println(f.arg)
		}
		return 0
	}
	if !alive(pid) {
		return fail(errNoProc)
	}
	st, err := load(pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake cuda-checkpoint: %v\n", err)
		return 2
	}
	if st == nil {
		return fail(errInit)
	}
	// The step: the state it needs, the state it leads to, and what the process does.
	next := ""
	var sig syscall.Signal
	var devices string
	switch op {
	case "get-state":
		fmt.Println(st.State)
		return 0
	case "get-restore-tid":
		if st.State != checkpointed {
			return fail(errState)
		}
		fmt.Println(pid) // the process's main thread stands for its restore thread
		return 0
	case "lock":
		if st.State == running {
			next = locked
		}
	case "checkpoint":
		if st.State == locked {
			next, sig, devices = checkpointed, syscall.SIGUSR1, "closed"
		}
	case "restore":
		if st.State == checkpointed {
			next, sig, devices = locked, syscall.SIGUSR2, "open"
		}
	case "unlock":
		if st.State == locked {
			next = running
		}
	case "toggle":
		switch st.State {
		case running:
			next, sig, devices = checkpointed, syscall.SIGUSR1, "closed"
		case checkpointed:
			next, sig, devices = running, syscall.SIGUSR2, "open"
		}
	}
	if next == "" {
		return fail(errState)
	}
	if sig != 0 {
		if err := signalAndWait(pid, sig, devices); err != nil {
			fmt.Fprintf(os.Stderr, "fake cuda-checkpoint: %v\n", err)
			return fail(errUnknown)
		}
	}
	st.State = next
	if err := save(pid, st); err != nil {
		fmt.Fprintf(os.Stderr, "fake cuda-checkpoint: %v\n", err)
		return 2
	}
	if f.kind == "hang-after" {
		hang()
	}
	return 0
}

// parseCheckpointArgs reads the command line: one operation and a pid.
func parseCheckpointArgs(args []string) (op string, pid int, err error) {
	pidArg, timeout := "", ""
	set := func(o string) error {
		if op != "" {
			return fmt.Errorf("more than one operation (%s, %s)", op, o)
		}
		op = o
		return nil
	}
	value := func(i *int, name string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", name)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		var err error
		switch a := args[i]; a {
		case "--help", "-h":
			return "help", 0, nil
		case "--get-state", "--toggle", "--get-restore-tid":
			err = set(a[2:])
		case "--action":
			var v string
			if v, err = value(&i, a); err == nil {
				switch v {
				case "lock", "checkpoint", "restore", "unlock":
					err = set(v)
				default:
					err = fmt.Errorf("unknown action %q", v)
				}
			}
		case "--pid", "-p":
			pidArg, err = value(&i, a)
		case "--timeout", "-t":
			timeout, err = value(&i, a)
		default:
			err = fmt.Errorf("unknown option %q", a)
		}
		if err != nil {
			return "", 0, err
		}
	}
	if op == "" {
		return "", 0, fmt.Errorf("no operation given")
	}
	if pid, err = strconv.Atoi(pidArg); err != nil || pid <= 0 {
		return "", 0, fmt.Errorf("a pid is needed (--pid), got %q", pidArg)
	}
	if timeout != "" {
		if ms, err := strconv.Atoi(timeout); err != nil || ms < 0 {
			return "", 0, fmt.Errorf("bad timeout %q", timeout)
		}
	}
	return op, pid, nil
}
