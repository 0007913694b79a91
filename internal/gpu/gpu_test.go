package gpu_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc/fakecuda"
	"github.com/tardis-runtime/tardis/internal/gpu"
)

// The test binary is also the fake cuda-checkpoint, nvidia-smi and CUDA process (package
// fakecuda), on PATH under those names.
func TestMain(m *testing.M) {
	testscript.Main(m, fakecuda.Programs())
}

// world is one test's fake GPU node.
type world struct {
	t     *testing.T
	root  string
	env   []string
	calls string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"cuda", "dev", "lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w := &world{t: t, root: root, calls: filepath.Join(root, "calls")}
	w.env = append(os.Environ(), "FAKECUDA_DIR="+filepath.Join(root, "cuda"), "FAKECUDA_CALLS="+w.calls,
		"FAKECUDA_DEV="+filepath.Join(root, "dev", "nvidia"), "FAKECUDA_LIB="+filepath.Join(root, "lib", "libcuda.so.1"),
		"FAKECUDA_FAULTS=", "FAKESMI_GPUS=", "FAKESMI_DRIVER=")
	return w
}

// gpu is a GPU over the fakes, with the default limits.
func (w *world) gpu() *gpu.GPU {
	c := gpu.DefaultConfig()
	c.CudaCheckpoint = "cuda-checkpoint"
	g := gpu.New(c)
	g.DevPrefix = filepath.Join(w.root, "dev", "nvidia")
	g.Env = w.env
	return g
}

// setenv adds to the fakes' environment (a later entry wins).
func (w *world) setenv(g *gpu.GPU, kv ...string) {
	w.env = append(w.env, kv...)
	g.Env = w.env
}

// start runs a fake CUDA process with args, waits until it is ready, and kills it at the end.
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
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		w.t.Fatalf("cudaproc %v: %q, %v; stderr: %s", args, line, err, stderr.String())
	}
	return cmd.Process.Pid
}

// state asks the fake cuda-checkpoint for pid's state.
func (w *world) state(pid int) string {
	w.t.Helper()
	cmd := exec.Command("cuda-checkpoint", "--get-state", "--pid", strconv.Itoa(pid))
	cmd.Env = append(append([]string{}, w.env...), "FAKECUDA_FAULTS=", "FAKECUDA_CALLS=")
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("get-state %d: %v", pid, err)
	}
	return strings.TrimSpace(string(out))
}

// takeCalls returns the calls logged since the last time, with pids named.
func (w *world) takeCalls(names map[int]string) []string {
	w.t.Helper()
	b, err := os.ReadFile(w.calls)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		w.t.Fatal(err)
	}
	_ = os.Remove(w.calls)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		for i, s := range f {
			if n, err := strconv.Atoi(s); err == nil && i > 0 && (f[i-1] == "--pid") {
				if name, ok := names[n]; ok {
					f[i] = name
				}
			}
		}
		out = append(out, strings.Join(f, " "))
	}
	return out
}

func pidsOf(ps []gpu.Process) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.PID)
	}
	return out
}

func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

const (
	smiGPU  = "nvidia-smi --query-gpu=index,name,memory.total,memory.free,driver_version --format=csv,noheader,nounits"
	smiApps = "nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits"
)

func TestFind(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	holds := w.start("-mib", "100")
	maps := w.start("-map", "-mib", "200")
	nvml := w.start("-nocuda")
	ctx := context.Background()

	// The test process holds no GPU device; 999999999 is no process at all.
	found, err := g.Find(ctx, []int{os.Getpid(), holds, 999999999, maps})
	if err != nil {
		t.Fatal(err)
	}
	want := []gpu.Process{{PID: holds, NSPID: holds, Comm: "cudaproc"}, {PID: maps, NSPID: maps, Comm: "cudaproc"}}
	if diff := cmp.Diff(want, found); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}
	names := map[int]string{holds: "H", maps: "M", nvml: "N"}
	wantCalls(t, w.takeCalls(names), "cuda-checkpoint --get-state --pid H", "cuda-checkpoint --get-state --pid M")

	// A process that holds the GPU but that cuda-checkpoint does not know as a CUDA one.
	found, err = g.Find(ctx, []int{holds, nvml})
	var pe *gpu.ProcessError
	if !errors.Is(err, gpu.ErrNotCUDA) || !errors.As(err, &pe) || pe.PID != nvml || pe.Comm != "cudaproc" {
		t.Fatalf("err = %v, want a ProcessError of pid %d wrapping ErrNotCUDA", err, nvml)
	}
	if !strings.Contains(err.Error(), `Error getting process state for process ID `+strconv.Itoa(nvml)+`: "initialization error"`) {
		t.Errorf("the error does not carry the tool's message: %v", err)
	}
	if diff := cmp.Diff([]int{holds}, pidsOf(found)); diff != "" {
		t.Errorf("found (-want +got):\n%s", diff)
	}

	// GPU support off: the holders are named, no tool is run.
	w.takeCalls(nil)
	g.CudaCheckpoint = ""
	found, err = g.Find(ctx, []int{holds})
	if !errors.Is(err, gpu.ErrDisabled) || len(found) != 1 {
		t.Errorf("with GPU support off: %v, %v; want the holder and ErrDisabled", found, err)
	}
	wantCalls(t, w.takeCalls(nil))
}

// TestHolders reads a /proc made by hand: an fd link, a mapping, neither, a process gone.
func TestHolders(t *testing.T) {
	proc := t.TempDir()
	mk := func(pid, fdTarget, maps string) {
		d := filepath.Join(proc, pid)
		if err := os.MkdirAll(filepath.Join(d, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if fdTarget != "" {
			if err := os.Symlink(fdTarget, filepath.Join(d, "fd", "3")); err != nil {
				t.Fatal(err)
			}
		}
		_ = os.Symlink("/dev/null", filepath.Join(d, "fd", "0"))
		files := map[string]string{"maps": maps, "comm": "proc" + pid + "\n", "status": "Name:\tx\nNSpid:\t" + pid + "\t7\n"}
		for name, s := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	lib := "7f0000000000-7f0000100000 r-xp 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04\n"
	mk("10", "/dev/nvidiactl", lib)
	mk("11", "", "7f0000000000-7f0000001000 rw-s 00000000 00:05 9   /dev/nvidia0\n"+lib)
	mk("12", "/usr/lib/libnvidia-ml.so", lib+"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n")
	mk("13", "socket:[1234]", "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n")
	g := &gpu.GPU{Proc: proc}
	got, err := g.Holders([]int{10, 11, 12, 13, 14})
	if err != nil {
		t.Fatal(err)
	}
	want := []gpu.Process{{PID: 10, NSPID: 7, Comm: "proc10"}, {PID: 11, NSPID: 7, Comm: "proc11"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("holders (-want +got):\n%s", diff)
	}
}

func TestSuspendAndResume(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a, b := w.start("-mib", "2669"), w.start("-map", "-mib", "1024")
	names := map[int]string{a: "A", b: "B"}
	ctx := context.Background()
	procs, err := g.Find(ctx, []int{a, b})
	if err != nil {
		t.Fatal(err)
	}
	w.takeCalls(nil)

	rec, err := g.Suspend(ctx, procs)
	if err != nil {
		t.Fatal(err)
	}
	want := &gpu.Checkpoint{Driver: "580.159.04", GPUModel: "NVIDIA H200", GPUCount: 1,
		Processes: []gpu.Process{
			{PID: a, NSPID: a, Comm: "cudaproc", Bytes: 2669 << 20},
			{PID: b, NSPID: b, Comm: "cudaproc", Bytes: 1024 << 20},
		},
		TotalBytes: (2669 + 1024) << 20}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	wantCalls(t, w.takeCalls(names), smiGPU, smiApps,
		"cuda-checkpoint --action lock --pid A --timeout 10000",
		"cuda-checkpoint --action checkpoint --pid A",
		"cuda-checkpoint --get-state --pid A",
		"cuda-checkpoint --action lock --pid B --timeout 10000",
		"cuda-checkpoint --action checkpoint --pid B",
		"cuda-checkpoint --get-state --pid B")
	for _, pid := range []int{a, b} {
		if st := w.state(pid); st != "checkpointed" {
			t.Errorf("pid %d is %s after the suspend", pid, st)
		}
	}
	if h, _ := g.Holders([]int{a, b}); len(h) != 0 {
		t.Errorf("suspended processes still hold the GPU: %v", h)
	}

	// The resume finds the suspended processes by the driver's library they still map;
	// the test process maps none and is not asked.
	resumed, err := g.Resume(ctx, []int{os.Getpid(), a, b}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{a, b}, pidsOf(resumed)); diff != "" {
		t.Errorf("resumed (-want +got):\n%s", diff)
	}
	wantCalls(t, w.takeCalls(names),
		"cuda-checkpoint --get-state --pid A",
		"cuda-checkpoint --get-state --pid A",
		"cuda-checkpoint --action restore --pid A",
		"cuda-checkpoint --action unlock --pid A",
		"cuda-checkpoint --get-state --pid A",
		"cuda-checkpoint --get-state --pid B",
		"cuda-checkpoint --get-state --pid B",
		"cuda-checkpoint --action restore --pid B",
		"cuda-checkpoint --action unlock --pid B",
		"cuda-checkpoint --get-state --pid B")
	for _, pid := range []int{a, b} {
		if st := w.state(pid); st != "running" {
			t.Errorf("pid %d is %s after the resume", pid, st)
		}
	}
	if h, _ := g.Holders([]int{a, b}); len(h) != 2 {
		t.Errorf("resumed processes do not hold the GPU again: %v", h)
	}

	// Nothing left to resume: nothing is done, and the count still adds up.
	if _, err := g.Resume(ctx, []int{a, b}, rec); err != nil {
		t.Errorf("a second resume: %v", err)
	}
}

// suspendFails suspends A and B with a fault, checks the error names the process and
// carries the tool's message, and that both run again afterwards.
func suspendFails(t *testing.T, w *world, g *gpu.GPU, a, b int, wantPID int, wantStep, wantMsg string) error {
	t.Helper()
	procs, err := g.Find(context.Background(), []int{a, b})
	if err != nil {
		t.Fatal(err)
	}
	w.takeCalls(nil)
	rec, err := g.Suspend(context.Background(), procs)
	if err == nil || rec != nil {
		t.Fatalf("Suspend = %v, %v; want an error", rec, err)
	}
	var pe *gpu.ProcessError
	if !errors.As(err, &pe) || pe.PID != wantPID || pe.Step != wantStep || pe.Comm != "cudaproc" {
		t.Errorf("err = %v, want the %s of pid %d", err, wantStep, wantPID)
	}
	if !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(wantPID)+" (cudaproc)") {
		t.Errorf("err = %v, want it to name the process and say %q", err, wantMsg)
	}
	for _, pid := range []int{a, b} {
		if st := w.state(pid); st != "running" {
			t.Errorf("pid %d is left %s", pid, st)
		}
	}
	return err
}

func TestSuspendFailsAtLock(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a, b := w.start(), w.start()
	w.setenv(g, "FAKECUDA_FAULTS=lock:fail@"+strconv.Itoa(a))
	suspendFails(t, w, g, a, b, a, "lock", `Could not lock on process ID `+strconv.Itoa(a)+`: "unknown error"`)
	wantCalls(t, w.takeCalls(map[int]string{a: "A", b: "B"}), smiGPU, smiApps,
		"cuda-checkpoint --action lock --pid A --timeout 10000",
		"cuda-checkpoint --get-state --pid A")
}

func TestSuspendFailsAtCheckpointOfSecond(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a, b := w.start(), w.start()
	w.setenv(g, "FAKECUDA_FAULTS=checkpoint:fail=out of memory@"+strconv.Itoa(b))
	suspendFails(t, w, g, a, b, b, "checkpoint", `Could not checkpoint on process ID `+strconv.Itoa(b)+`: "out of memory"`)
	wantCalls(t, w.takeCalls(map[int]string{a: "A", b: "B"}), smiGPU, smiApps,
		"cuda-checkpoint --action lock --pid A --timeout 10000",
		"cuda-checkpoint --action checkpoint --pid A",
		"cuda-checkpoint --get-state --pid A",
		"cuda-checkpoint --action lock --pid B --timeout 10000",
		"cuda-checkpoint --action checkpoint --pid B",
		// B only locked: unlocked; A checkpointed: restored and unlocked.
		"cuda-checkpoint --get-state --pid B",
		"cuda-checkpoint --action unlock --pid B",
		"cuda-checkpoint --get-state --pid B",
		"cuda-checkpoint --get-state --pid A",
		"cuda-checkpoint --action restore --pid A",
		"cuda-checkpoint --action unlock --pid A",
		"cuda-checkpoint --get-state --pid A")
}

// shortLimits make a hang end sooner, yet leave a step that does not hang (a fresh
// process of the test binary, slow to start under -race) time enough.
func shortLimits(g *gpu.GPU) {
	g.Limits.Lock = gpu.Duration{Duration: 100 * time.Millisecond}
	g.Limits.Base = gpu.Duration{Duration: 2 * time.Second}
}

func TestSuspendHangAtLockCutByDeadline(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	shortLimits(g)
	a, b := w.start(), w.start()
	w.setenv(g, "FAKECUDA_FAULTS=lock:hang@"+strconv.Itoa(a))
	err := suspendFails(t, w, g, a, b, a, "lock", "deadline exceeded after 2.1s (killed)")
	if !errors.Is(err, gpu.ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}
}

// TestSuspendHangAfterCheckpoint: the tool did the checkpoint, then hung and was killed;
// the process is found checkpointed and resumed.
func TestSuspendHangAfterCheckpoint(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	shortLimits(g)
	a, b := w.start("-mib", "1"), w.start("-mib", "1")
	w.setenv(g, "FAKECUDA_FAULTS=checkpoint:hang-after@"+strconv.Itoa(b))
	err := suspendFails(t, w, g, a, b, b, "checkpoint", "deadline exceeded")
	if !errors.Is(err, gpu.ErrTimeout) {
		t.Errorf("err = %v, want ErrTimeout", err)
	}
	calls := strings.Join(w.takeCalls(map[int]string{a: "A", b: "B"}), "\n")
	want := strings.Join([]string{
		"cuda-checkpoint --action checkpoint --pid B",
		"cuda-checkpoint --get-state --pid B",
		"cuda-checkpoint --action restore --pid B",
		"cuda-checkpoint --action unlock --pid B",
		"cuda-checkpoint --get-state --pid B"}, "\n")
	if !strings.Contains(calls, want) {
		t.Errorf("calls:\n%s\nwant among them:\n%s", calls, want)
	}
}

// TestSuspendLie: the tool said it checkpointed, but the process still holds the GPU.
func TestSuspendLie(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a, b := w.start(), w.start()
	w.setenv(g, "FAKECUDA_FAULTS=checkpoint:lie@"+strconv.Itoa(a))
	err := suspendFails(t, w, g, a, b, a, "checkpoint", `cuda-checkpoint reported success, but the state is "locked"`)
	if !errors.Is(err, gpu.ErrState) {
		t.Errorf("err = %v, want ErrState", err)
	}
}

// TestSuspendNeedsNvidiaSMI: without the record nothing is suspended.
func TestSuspendNeedsNvidiaSMI(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a := w.start()
	procs, err := g.Find(context.Background(), []int{a})
	if err != nil {
		t.Fatal(err)
	}
	w.takeCalls(nil)
	w.setenv(g, "FAKECUDA_FAULTS=query-compute-apps:fail")
	_, err = g.Suspend(context.Background(), procs)
	var te *gpu.ToolError
	if !errors.As(err, &te) || te.Tool != "nvidia-smi" || te.Code != 9 || !strings.Contains(te.Msg, "couldn't communicate") {
		t.Fatalf("err = %v, want nvidia-smi's exit 9 and message", err)
	}
	wantCalls(t, w.takeCalls(nil), smiGPU, smiApps)
}

func TestResumeFailure(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a, b := w.start(), w.start()
	ctx := context.Background()
	procs, err := g.Find(ctx, []int{a, b})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := g.Suspend(ctx, procs)
	if err != nil {
		t.Fatal(err)
	}
	w.setenv(g, "FAKECUDA_FAULTS=restore:fail=out of memory@"+strconv.Itoa(a))
	resumed, err := g.Resume(ctx, []int{a, b}, rec)
	var pe *gpu.ProcessError
	if !errors.As(err, &pe) || pe.PID != a || pe.Step != "restore" ||
		!strings.Contains(err.Error(), `Could not restore on process ID `+strconv.Itoa(a)+`: "out of memory"`) {
		t.Fatalf("err = %v, want the restore of pid %d with the tool's message", err, a)
	}
	if diff := cmp.Diff([]int{b}, pidsOf(resumed)); diff != "" {
		t.Errorf("resumed (-want +got):\n%s", diff)
	}
	if sa, sb := w.state(a), w.state(b); sa != "checkpointed" || sb != "running" {
		t.Errorf("states %s, %s; want checkpointed, running", sa, sb)
	}

	// The fault gone, a second resume brings a back; a hang at its unlock is cut.
	shortLimits(g)
	w.setenv(g, "FAKECUDA_FAULTS=unlock:hang@"+strconv.Itoa(a))
	_, err = g.Resume(ctx, []int{a, b}, rec)
	if !errors.Is(err, gpu.ErrTimeout) || !errors.As(err, &pe) || pe.PID != a || pe.Step != "unlock" {
		t.Fatalf("err = %v, want the unlock of pid %d cut by its deadline", err, a)
	}
	w.setenv(g, "FAKECUDA_FAULTS=")
	if _, err := g.Resume(ctx, []int{a, b}, rec); err != nil {
		t.Fatal(err)
	}
	if st := w.state(a); st != "running" {
		t.Errorf("pid %d is %s", a, st)
	}
}

// TestResumeMissing: a suspended process the caller did not give is reported, and a
// process that maps the driver's library without CUDA state is not taken for one.
func TestResumeMissing(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a, b := w.start(), w.start()
	plain := w.start("-nocuda")
	ctx := context.Background()
	procs, err := g.Find(ctx, []int{a, b})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := g.Suspend(ctx, procs)
	if err != nil {
		t.Fatal(err)
	}
	resumed, err := g.Resume(ctx, []int{a, plain}, rec)
	if !errors.Is(err, gpu.ErrMissing) || !strings.Contains(err.Error(), "held 2 CUDA processes, 1 found") {
		t.Errorf("err = %v, want ErrMissing", err)
	}
	if diff := cmp.Diff([]int{a}, pidsOf(resumed)); diff != "" {
		t.Errorf("resumed (-want +got):\n%s", diff)
	}
	if st := w.state(b); st != "checkpointed" {
		t.Errorf("pid %d is %s", b, st)
	}
}

func TestNodeFromNvidiaSMI(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	w.setenv(g, "FAKESMI_GPUS=NVIDIA H100 80GB HBM3:81559:81000;NVIDIA H100 80GB HBM3:81559:500", "FAKESMI_DRIVER=580.65.06")
	n, err := g.Node(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &gpu.Node{Driver: "580.65.06", GPUs: []gpu.GPUInfo{
		{Index: 0, Name: "NVIDIA H100 80GB HBM3", TotalBytes: 81559 << 20, FreeBytes: 81000 << 20},
		{Index: 1, Name: "NVIDIA H100 80GB HBM3", TotalBytes: 81559 << 20, FreeBytes: 500 << 20},
	}}
	if diff := cmp.Diff(want, n); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
	if n.Model() != "NVIDIA H100 80GB HBM3" {
		t.Errorf("model %q", n.Model())
	}

	w.setenv(g, "FAKECUDA_FAULTS=query-gpu:hang")
	g.Limits.Query = gpu.Duration{Duration: 200 * time.Millisecond}
	if _, err := g.Node(context.Background()); !errors.Is(err, gpu.ErrTimeout) {
		t.Errorf("a hanging nvidia-smi: %v, want ErrTimeout", err)
	}
}

func TestFits(t *testing.T) {
	h200 := func(freeMiB ...uint64) *gpu.Node {
		n := &gpu.Node{Driver: "580.159.04"}
		for i, f := range freeMiB {
			n.GPUs = append(n.GPUs, gpu.GPUInfo{Index: i, Name: "NVIDIA H200", TotalBytes: 143771 << 20, FreeBytes: f << 20})
		}
		return n
	}
	ckpt := func(mib ...uint64) *gpu.Checkpoint {
		c := &gpu.Checkpoint{Driver: "580.95.05", GPUModel: "NVIDIA H200", GPUCount: 1}
		for i, m := range mib {
			c.Processes = append(c.Processes, gpu.Process{PID: 100 + i, Comm: "python3", Bytes: m << 20})
			c.TotalBytes += m << 20
		}
		return c
	}
	other := func(f func(n *gpu.Node)) *gpu.Node { n := h200(143000); f(n); return n }
	for name, tt := range map[string]struct {
		node *gpu.Node
		ckpt *gpu.Checkpoint
		want []error
		msg  string
	}{
		"fits, another 580 release": {node: h200(143000), ckpt: ckpt(16000, 2669)},
		"no CUDA state":             {node: &gpu.Node{}, ckpt: &gpu.Checkpoint{}},
		"no record":                 {node: &gpu.Node{}},
		"driver branch": {node: other(func(n *gpu.Node) { n.Driver = "570.86.10" }), ckpt: ckpt(100),
			want: []error{gpu.ErrDriverBranch}, msg: "driver 570.86.10 is of another branch than the checkpoint's 580.95.05"},
		"model": {node: other(func(n *gpu.Node) { n.GPUs[0].Name = "NVIDIA H100 80GB HBM3" }), ckpt: ckpt(100),
			want: []error{gpu.ErrGPUModel}, msg: `the node has "NVIDIA H100 80GB HBM3", the checkpoint was taken on "NVIDIA H200"`},
		"count": {node: h200(143000), ckpt: func() *gpu.Checkpoint { c := ckpt(100); c.GPUCount = 2; return c }(),
			want: []error{gpu.ErrGPUCount}, msg: "the node has 1 GPUs, the checkpoint was taken with 2"},
		"memory in all": {node: h200(2000), ckpt: ckpt(1500, 1000),
			want: []error{gpu.ErrGPUMemory}, msg: "held 2500 MiB on the GPU, the node has 2000 MiB free"},
		"memory on one": {node: h200(2000, 2000), ckpt: func() *gpu.Checkpoint { c := ckpt(3000); c.GPUCount = 2; return c }(),
			want: []error{gpu.ErrGPUMemory}, msg: "held 3000 MiB on one GPU, the node's GPUs have at most 2000 MiB free"},
		"all at once": {node: &gpu.Node{Driver: "550.54.15", GPUs: []gpu.GPUInfo{{Name: "Tesla T4", FreeBytes: 1 << 20}}},
			ckpt: func() *gpu.Checkpoint { c := ckpt(100); c.GPUCount = 2; return c }(),
			want: []error{gpu.ErrDriverBranch, gpu.ErrGPUModel, gpu.ErrGPUCount, gpu.ErrGPUMemory}},
	} {
		t.Run(name, func(t *testing.T) {
			err := tt.node.Fits(tt.ckpt)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Fits = %v, want nil", err)
				}
				return
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Fits = %v, want it to wrap %v", err, w)
				}
			}
			for _, s := range []error{gpu.ErrDriverBranch, gpu.ErrGPUModel, gpu.ErrGPUCount, gpu.ErrGPUMemory} {
				if errors.Is(err, s) && !containsErr(tt.want, s) {
					t.Errorf("Fits = %v, which wraps %v too", err, s)
				}
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Fits = %v, want it to say %q", err, tt.msg)
			}
		})
	}
}

func containsErr(list []error, e error) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// TestFitsRecord: a record made on one fake node, checked on another.
func TestFitsRecord(t *testing.T) {
	w := newWorld(t)
	g := w.gpu()
	a := w.start("-mib", "16000")
	procs, err := g.Find(context.Background(), []int{a})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := g.Record(context.Background(), procs)
	if err != nil {
		t.Fatal(err)
	}
	w.setenv(g, "FAKESMI_DRIVER=590.44.01", "FAKESMI_GPUS=NVIDIA H200:143771:8000")
	n, err := g.Node(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = n.Fits(rec)
	if !errors.Is(err, gpu.ErrDriverBranch) || !errors.Is(err, gpu.ErrGPUMemory) || errors.Is(err, gpu.ErrGPUModel) {
		t.Errorf("Fits = %v, want another driver branch and too little memory", err)
	}
}
