package fakecuda_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc/fakecuda"
)

func TestMain(m *testing.M) {
	testscript.Main(m, fakecuda.Programs())
}

// world is one test's fake GPU: its directory, device prefix and environment.
type world struct {
	t      *testing.T
	dir    string
	prefix string
	env    []string
}

func newWorld(t *testing.T, extra ...string) *world {
	t.Helper()
	d := t.TempDir()
	w := &world{t: t, dir: filepath.Join(d, "cuda"), prefix: filepath.Join(d, "dev", "nvidia")}
	for _, sub := range []string{"cuda", "dev"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.env = append(os.Environ(), "FAKECUDA_DIR="+w.dir, "FAKECUDA_DEV="+w.prefix,
		"FAKECUDA_CALLS="+filepath.Join(d, "calls"), "FAKECUDA_FAULTS=", "FAKESMI_GPUS=", "FAKESMI_DRIVER=")
	w.env = append(w.env, extra...)
	return w
}

// start runs cudaproc with args and waits for its "ready"; it is killed at the end.
func (w *world) start(args ...string) int {
	w.t.Helper()
	cmd := exec.Command("cudaproc", args...)
	cmd.Env = w.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		w.t.Fatalf("cudaproc %v: %q, %v; stderr: %s", args, line, err, stderr.String())
	}
	return cmd.Process.Pid
}

type result struct {
	stdout, stderr string
	code           int
}

func (w *world) run(prog string, args ...string) result {
	w.t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func (w *world) cc(args ...string) result { return w.run("cuda-checkpoint", args...) }

// holdsDevice reports whether pid has a fake device open or mapped.
func (w *world) holdsDevice(pid int) bool {
	w.t.Helper()
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, w.prefix) {
			return true
		}
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		w.t.Fatal(err)
	}
	return strings.Contains(string(maps), w.prefix)
}

func check(t *testing.T, what string, got, want result) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got stdout %q stderr %q exit %d\nwant stdout %q stderr %q exit %d",
			what, got.stdout, got.stderr, got.code, want.stdout, want.stderr, want.code)
	}
}

// TestAnswersAsTheRealOne plays notes/gpu.md section 4, line by line.
func TestAnswersAsTheRealOne(t *testing.T) {
	w := newWorld(t)
	cuda := w.start("-mib", "2669")
	plain := w.start("-nocuda")
	p, q := strconv.Itoa(cuda), strconv.Itoa(plain)
	if !w.holdsDevice(cuda) || !w.holdsDevice(plain) {
		t.Fatal("the processes do not hold their devices")
	}
	ok := func(out string) result { return result{stdout: out} }
	fail := func(msg string) result { return result{stderr: msg + "\n", code: 1} }
	present := `"the operation cannot be performed in the present state"`

	check(t, "get-state", w.cc("--get-state", "--pid", p), ok("running\n"))
	check(t, "get-state plain", w.cc("--get-state", "--pid", q),
		fail(`Error getting process state for process ID `+q+`: "initialization error"`))
	check(t, "get-state no such pid", w.cc("--get-state", "--pid", "999999999"),
		fail(`Error getting process state for process ID 999999999: "OS call failed or operation not supported on this OS"`))
	check(t, "lock plain", w.cc("--action", "lock", "--pid", q, "--timeout", "2000"),
		fail(`Could not lock on process ID `+q+`: "initialization error"`))
	check(t, "toggle plain", w.cc("--toggle", "--pid", q),
		fail(`Error toggling CUDA in process ID `+q+`: "initialization error"`))

	check(t, "lock", w.cc("--action", "lock", "--pid", p, "--timeout", "2000"), ok(""))
	check(t, "locked", w.cc("--get-state", "--pid", p), ok("locked\n"))
	check(t, "lock again", w.cc("--action", "lock", "--pid", p), fail(`Could not lock on process ID `+p+`: `+present))
	check(t, "checkpoint", w.cc("--action", "checkpoint", "--pid", p), ok(""))
	check(t, "checkpointed", w.cc("--get-state", "--pid", p), ok("checkpointed\n"))
	if w.holdsDevice(cuda) {
		t.Error("a checkpointed process still holds its devices")
	}
	check(t, "get-restore-tid", w.cc("--get-restore-tid", "--pid", p), ok(p+"\n"))
	check(t, "checkpoint again", w.cc("--action", "checkpoint", "--pid", p),
		fail(`Could not checkpoint on process ID `+p+`: `+present))
	check(t, "unlock while checkpointed", w.cc("--action", "unlock", "--pid", p),
		fail(`Could not unlock on process ID `+p+`: `+present))
	check(t, "restore", w.cc("--action", "restore", "--pid", p), ok(""))
	check(t, "restored is locked", w.cc("--get-state", "--pid", p), ok("locked\n"))
	if !w.holdsDevice(cuda) {
		t.Error("a restored process does not hold its devices again")
	}
	check(t, "toggle while locked", w.cc("--toggle", "--pid", p), fail(`Error toggling CUDA in process ID `+p+`: `+present))
	check(t, "unlock", w.cc("--action", "unlock", "--pid", p), ok(""))
	check(t, "running", w.cc("--get-state", "--pid", p), ok("running\n"))
	check(t, "restore while running", w.cc("--action", "restore", "--pid", p),
		fail(`Could not restore on process ID `+p+`: `+present))
	check(t, "get-restore-tid while running", w.cc("--get-restore-tid", "--pid", p),
		fail(`Error getting restore thread ID for process ID `+p+`: `+present))
	check(t, "toggle", w.cc("--toggle", "--pid", p), ok(""))
	check(t, "toggled", w.cc("--get-state", "-p", p), ok("checkpointed\n"))
	check(t, "toggle back", w.cc("--toggle", "--pid", p), ok(""))
	check(t, "toggled back", w.cc("--get-state", "--pid", p), ok("running\n"))
	if !w.holdsDevice(cuda) {
		t.Error("a process toggled back does not hold its devices")
	}
	if got := w.cc("--action", "freeze", "--pid", p); got.code != 1 || !strings.Contains(got.stderr, `unknown action "freeze"`) {
		t.Errorf("a bad action: %+v", got)
	}

	calls, err := os.ReadFile(filepath.Join(filepath.Dir(w.dir), "calls"))
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(calls), "\n"); first != "cuda-checkpoint --get-state --pid "+p {
		t.Errorf("first logged call %q", first)
	}
}

// TestMapped: a process that only maps the devices lets go of the mappings too.
func TestMapped(t *testing.T) {
	w := newWorld(t)
	pid := w.start("-map")
	p := strconv.Itoa(pid)
	if !w.holdsDevice(pid) {
		t.Fatal("the mapping process does not map its devices")
	}
	w.cc("--toggle", "--pid", p)
	if w.holdsDevice(pid) {
		t.Error("a checkpointed process still maps its devices")
	}
}

// TestReusedPid: a state file left by a process that has gone does not make the next
// process with that pid a CUDA one.
func TestReusedPid(t *testing.T) {
	w := newWorld(t)
	self := os.Getpid()
	stale := `{"state":"running","mib":1,"start":"1"}`
	if err := os.WriteFile(filepath.Join(w.dir, strconv.Itoa(self)+".json"), []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	got := w.cc("--get-state", "--pid", strconv.Itoa(self))
	if got.code != 1 || !strings.Contains(got.stderr, `"initialization error"`) {
		t.Errorf("stale state file taken for a CUDA process: %+v", got)
	}
}

func TestFaults(t *testing.T) {
	w := newWorld(t)
	a, b := w.start(), w.start()
	pa, pb := strconv.Itoa(a), strconv.Itoa(b)
	fault := func(spec string) {
		w.env = append(w.env, "FAKECUDA_FAULTS="+spec)
	}

	fault("lock:fail=out of memory@" + pa)
	check(t, "lock fails for a", w.cc("--action", "lock", "--pid", pa),
		result{stderr: `Could not lock on process ID ` + pa + `: "out of memory"` + "\n", code: 1})
	check(t, "a still running", w.cc("--get-state", "--pid", pa), result{stdout: "running\n"})
	check(t, "lock works for b", w.cc("--action", "lock", "--pid", pb), result{})

	fault("checkpoint:lie")
	check(t, "checkpoint lies", w.cc("--action", "checkpoint", "--pid", pb), result{})
	check(t, "b still locked", w.cc("--get-state", "--pid", pb), result{stdout: "locked\n"})
	fault("get-state:lie=checkpointed@" + pb)
	check(t, "get-state lies", w.cc("--get-state", "--pid", pb), result{stdout: "checkpointed\n"})

	// Faults from the directory's file, after the variable's.
	fault("")
	if err := os.WriteFile(filepath.Join(w.dir, "faults"), []byte("checkpoint:hang-after@"+pb+"\nunlock:hang\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !hangs(t, w, "--action", "checkpoint", "--pid", pb) {
		t.Error("hang-after did not hang")
	}
	check(t, "hang-after did the step", w.cc("--get-state", "--pid", pb), result{stdout: "checkpointed\n"})
	if !hangs(t, w, "--action", "unlock", "--pid", pa) {
		t.Error("hang did not hang")
	}
	check(t, "hang did nothing", w.cc("--get-state", "--pid", pa), result{stdout: "running\n"})

	fault("lock:explode")
	if got := w.cc("--action", "lock", "--pid", pa); got.code != 2 || !strings.Contains(got.stderr, `unknown kind "explode"`) {
		t.Errorf("a bad fault: %+v", got)
	}
}

// hangs runs cuda-checkpoint and reports whether it was still running after a while; it
// is killed then.
func hangs(t *testing.T, w *world, args ...string) bool {
	t.Helper()
	cmd := exec.Command("cuda-checkpoint", args...)
	cmd.Env = w.env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false
	case <-time.After(500 * time.Millisecond):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return true
	}
}

func TestNvidiaSMI(t *testing.T) {
	w := newWorld(t)
	gpu := func() result {
		return w.run("nvidia-smi", "--query-gpu=index,name,memory.total,memory.free,driver_version", "--format=csv,noheader,nounits")
	}
	apps := func() result {
		return w.run("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
	}
	check(t, "idle node", gpu(), result{stdout: "0, NVIDIA H200, 143771, 143771, 580.159.04\n"})
	check(t, "no apps", apps(), result{})

	pid := w.start("-mib", "2669")
	p := strconv.Itoa(pid)
	check(t, "busy node", gpu(), result{stdout: "0, NVIDIA H200, 143771, 141102, 580.159.04\n"})
	check(t, "one app", apps(), result{stdout: p + ", 2669\n"})
	check(t, "with units and header", w.run("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv"),
		result{stdout: "pid, used_memory [MiB]\n" + p + ", 2669 MiB\n"})
	w.cc("--toggle", "--pid", p)
	check(t, "a suspended process holds nothing", apps(), result{})
	check(t, "and frees its memory", gpu(), result{stdout: "0, NVIDIA H200, 143771, 143771, 580.159.04\n"})

	w.env = append(w.env, "FAKESMI_GPUS=NVIDIA H100 80GB HBM3:81559:100;NVIDIA H100 80GB HBM3:81559", "FAKESMI_DRIVER=570.86.10")
	check(t, "two GPUs", gpu(), result{stdout: "0, NVIDIA H100 80GB HBM3, 81559, 100, 570.86.10\n1, NVIDIA H100 80GB HBM3, 81559, 81559, 570.86.10\n"})

	w.env = append(w.env, "FAKECUDA_FAULTS=query-gpu:fail")
	got := gpu()
	if got.code != 9 || !strings.Contains(got.stdout, "couldn't communicate with the NVIDIA driver") {
		t.Errorf("failing nvidia-smi: %+v", got)
	}
	w.env = append(w.env, "FAKECUDA_FAULTS=")
	if got := w.run("nvidia-smi", "--query-gpu=index,colour", "--format=csv"); got.code != 2 || !strings.Contains(got.stdout, `Field "colour" is not a valid field`) {
		t.Errorf("a bad field: %+v", got)
	}
}

// TestSpawnAndRestored: -spawn makes a program of several CUDA processes; one started as
// the fake runc's restore starts it is checkpointed, holds no device, and comes back
// with cuda-checkpoint's restore and unlock.
func TestSpawnAndRestored(t *testing.T) {
	w := newWorld(t)
	parent := w.start("-mib", "64", "-spawn", "2")
	ps := fakecuda.Procs(w.dir)
	if len(ps) != 3 || ps[0].PID != parent {
		t.Fatalf("processes %+v, want the parent %d then its 2 children", ps, parent)
	}
	for _, p := range ps {
		if p.State != "running" || p.MiB != 64 || p.Devices != "open" || !w.holdsDevice(p.PID) {
			t.Errorf("process %+v does not run holding its devices", p)
		}
	}
	if got := w.run("nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"); strings.Count(got.stdout, ", 64\n") != 3 {
		t.Errorf("nvidia-smi lists %q", got.stdout)
	}
	if err := syscall.Kill(parent, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); len(fakecuda.Procs(w.dir)) > 0 && time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
	}
	if left := fakecuda.Procs(w.dir); len(left) > 0 {
		t.Fatalf("children left after the parent's SIGTERM: %+v", left)
	}

	w.env = append(w.env, "FAKERUNC_RESTORED=/images")
	pid := w.start("-mib", "32")
	p := strconv.Itoa(pid)
	check(t, "restored state", w.cc("--get-state", "--pid", p), result{stdout: "checkpointed\n"})
	if w.holdsDevice(pid) {
		t.Error("a restored process holds its devices before its resume")
	}
	check(t, "restore", w.cc("--action", "restore", "--pid", p), result{})
	check(t, "unlock", w.cc("--action", "unlock", "--pid", p), result{})
	if ps := fakecuda.Procs(w.dir); len(ps) != 1 || ps[0].State != "running" || ps[0].Devices != "open" || !w.holdsDevice(pid) {
		t.Errorf("after the resume: %+v", ps)
	}
	fakecuda.KillAll(w.dir) // the test's cleanup reaps it
}
