package tardis

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc/fakecuda"
	"github.com/tardis-runtime/tardis/internal/store"
)

// The test binary is also the fake cuda-checkpoint, nvidia-smi and CUDA process (package
// fakecuda), on PATH under those names.
func TestMain(m *testing.M) {
	testscript.Main(m, fakecuda.Programs())
}

var cudaApp = []string{"cudaproc", "-mib", "256"}

// newGPUWorld is a world on a node with one fake GPU, GPU support on: every container the
// fake runc runs is a real fake CUDA process holding 256 MiB; a restored one starts with
// its CUDA state suspended, as CRIU brings it back.
func newGPUWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t)
	for _, d := range []string{"cuda", "dev", "lib"} {
		if err := os.MkdirAll(filepath.Join(w.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.devPrefix = filepath.Join(w.dir, "dev", "nvidia")
	w.environ = []string{"FAKECUDA_DIR=" + filepath.Join(w.dir, "cuda"), "FAKECUDA_CALLS=" + filepath.Join(w.dir, "cuda-calls"),
		"FAKECUDA_DEV=" + w.devPrefix, "FAKECUDA_LIB=" + filepath.Join(w.dir, "lib", "libcuda.so.1"),
		"FAKECUDA_FAULTS=", "FAKESMI_GPUS=", "FAKESMI_DRIVER="}
	w.env["TARDIS_CUDA_CHECKPOINT"] = "cuda-checkpoint"
	w.env["TARDIS_GPU_BASE_TIMEOUT"] = "20s" // the tools are this test binary: slow under -race
	w.runc.start = func(id string, restored bool) (int, func()) {
		cmd := exec.Command(cudaApp[0], cudaApp[1:]...)
		cmd.Env = append(os.Environ(), w.environ...)
		if restored {
			cmd.Env = append(cmd.Env, "FAKERUNC_RESTORED=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			t.Fatalf("cudaproc for %s: %q, %v", id, line, err)
		}
		end := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		t.Cleanup(end)
		return cmd.Process.Pid, end
	}
	return w
}

// setGPU sets variables of the fake GPU tools: faults (FAKECUDA_FAULTS), the node's GPUs.
func (w *world) setGPU(kv ...string) { w.environ = append(w.environ, kv...) }

// cudaCalls is the fake GPU tools' call log, with pids written as "P".
func (w *world) cudaCalls() string {
	b, _ := os.ReadFile(filepath.Join(w.dir, "cuda-calls"))
	f := strings.Fields(string(b))
	for i := range f {
		if i > 0 && f[i-1] == "--pid" {
			f[i] = "P"
		}
	}
	return strings.Join(f, " ")
}

// cudaState is the CUDA state of the container's process, as cuda-checkpoint tells it.
func (w *world) cudaState(id string) string {
	w.t.Helper()
	st := w.runc.get(id)
	if st == nil {
		w.t.Fatalf("no container %s", id)
	}
	cmd := exec.Command("cuda-checkpoint", "--get-state", "--pid", strconv.Itoa(st.Pid))
	cmd.Env = append(os.Environ(), w.environ...)
	cmd.Env = append(cmd.Env, "FAKECUDA_FAULTS=", "FAKECUDA_CALLS=")
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("get-state of %s: %v", id, err)
	}
	return strings.TrimSpace(string(out))
}

func (w *world) manifest(key string) *store.Manifest {
	w.t.Helper()
	m, err := store.ReadManifest(filepath.Join(w.env["TARDIS_CHECKPOINT_ROOT"], "default", key, "current"))
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

// A GPU container is suspended, checkpointed with its CUDA state in the manifest, then
// restored and resumed: the restored process runs on the GPU again.
func TestGPUCheckpointAndRestore(t *testing.T) {
	w := newGPUWorld(t)
	w.checkpointed("gpu", "c0", cudaApp)
	m := w.manifest("gpu")
	if m.Version != 3 || m.GPU == nil || m.GPU.Driver != "580.159.04" || m.GPU.GPUModel != "NVIDIA H200" ||
		m.GPU.GPUCount != 1 || len(m.GPU.Processes) != 1 || m.GPU.Processes[0].Bytes != 256<<20 ||
		m.GPU.Processes[0].Comm != "cudaproc" {
		t.Fatalf("manifest version %d, GPU %+v", m.Version, m.GPU)
	}
	if _, ok := m.Timings["gpu_suspend"]; !ok {
		t.Errorf("no gpu_suspend timing: %v", m.Timings)
	}
	calls := w.cudaCalls()
	for _, want := range []string{"--action lock --pid P --timeout 10000", "--action checkpoint --pid P"} {
		if !strings.Contains(calls, want) {
			t.Errorf("cuda-checkpoint was not called with %q: %s", want, calls)
		}
	}
	if w.runc.called("ps c0") != 1 {
		t.Errorf("calls %v", *w.runc.calls)
	}

	b := w.bundle("b", cudaApp, "dev.tardis.enabled=true", "dev.tardis.key=gpu")
	if code := w.tardis("run", "-d", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	sf := w.state("c1")
	if sf.Started != "restored" || sf.Fallback != "" {
		t.Fatalf("state %+v\n%s", sf, w.log())
	}
	if _, ok := sf.Timings["gpu_resume"]; !ok {
		t.Errorf("no gpu_resume timing: %v", sf.Timings)
	}
	if st := w.cudaState("c1"); st != "running" {
		t.Fatalf("the restored process is %s, not running", st)
	}
}

// A suspend that fails (the tool fails, lies, or hangs past its deadline) resumes what
// it had suspended, and the signal is delivered as asked, with the process named.
func TestGPUSuspendFails(t *testing.T) {
	const unlocked = "--action unlock --pid P cuda-checkpoint --get-state --pid P"
	for name, tt := range map[string]struct{ fault, msg, last string }{
		"lock fails": {"lock:fail", `suspend CUDA: gpu: lock of pid \d+ \(cudaproc\): cuda-checkpoint exit status 1: Could not lock on process ID \d+: \\"unknown error\\"`,
			"--action lock --pid P --timeout 10000 cuda-checkpoint --get-state --pid P"},
		"checkpoint fails": {"checkpoint:fail=out of memory", `suspend CUDA: gpu: checkpoint of pid \d+ \(cudaproc\): .*Could not checkpoint on process ID \d+: \\"out of memory\\"`, unlocked},
		"the tool lies":    {"checkpoint:lie", `suspend CUDA: gpu: checkpoint of pid \d+ \(cudaproc\): cuda-checkpoint reported success, but the state is \\"locked\\"`, unlocked},
		"a hang":           {"checkpoint:hang", `suspend CUDA: gpu: checkpoint of pid \d+ \(cudaproc\): cuda-checkpoint --action checkpoint --pid \d+: deadline exceeded after \S+ \(killed\)`, unlocked},
	} {
		t.Run(name, func(t *testing.T) {
			w := newGPUWorld(t)
			if tt.fault == "checkpoint:hang" { // every step's allowance short, to cut the hang
				w.env["TARDIS_GPU_BASE_TIMEOUT"] = "3s"
				w.env["TARDIS_GPU_SUSPEND_RATE"] = "1TB/s"
			}
			b := w.bundle("b", cudaApp, "dev.tardis.enabled=true", "dev.tardis.key=gpu")
			w.tardis("run", "-d", "--bundle", b, "c1")
			w.setGPU("FAKECUDA_FAULTS=" + tt.fault)
			if code := w.tardis("kill", "c1", "15"); code != 0 {
				t.Fatalf("exit %d", code)
			}
			w.wantLogMatch(`"msg":"checkpoint failed; carrying on as asked","op":"kill","id":"c1","key":"gpu","error":"` + tt.msg)
			if w.runc.called("checkpoint") != 0 || w.runc.called("exec kill c1 15") != 1 || w.current("gpu") != "" {
				t.Fatalf("dumped, or the signal not delivered: %v", *w.runc.calls)
			}
			if !strings.HasSuffix(w.cudaCalls(), tt.last) {
				t.Errorf("the process was not left running: %s", w.cudaCalls())
			}
		})
	}
}

// A dump that fails after the suspend, with the container alive, resumes its CUDA
// processes before the signal is delivered.
func TestGPUDumpFailsResumes(t *testing.T) {
	w := newGPUWorld(t)
	b := w.bundle("b", cudaApp, "dev.tardis.enabled=true", "dev.tardis.key=gpu")
	w.tardis("run", "-d", "--bundle", b, "c1")
	w.runc.faults["checkpoint"] = fault{err: errors.New("criu failed: type DUMP errno 0")}
	w.tardis("kill", "c1", "15")
	w.wantLog(`"msg":"checkpoint failed; carrying on as asked","op":"kill","id":"c1","key":"gpu","error":"runc checkpoint: criu failed`)
	w.wantLog(`"msg":"resumed the container's CUDA processes"`)
	const resumed = "--get-state --pid P cuda-checkpoint --action restore --pid P cuda-checkpoint --action unlock --pid P cuda-checkpoint --get-state --pid P"
	if !strings.HasSuffix(w.cudaCalls(), resumed) || w.runc.called("exec kill c1 15") != 1 {
		t.Fatalf("GPU tools %s, calls %v", w.cudaCalls(), *w.runc.calls)
	}
}

// With GPU support off, a container that holds the GPU is refused before the dump, before
// anything is changed: the signal is delivered, the warning says why.
func TestGPUSupportOff(t *testing.T) {
	w := newGPUWorld(t)
	delete(w.env, "TARDIS_CUDA_CHECKPOINT")
	b := w.bundle("b", cudaApp, "dev.tardis.enabled=true", "dev.tardis.key=gpu")
	w.tardis("run", "-d", "--bundle", b, "c1")
	pid := w.runc.get("c1").Pid
	w.tardis("kill", "c1", "15")
	w.wantLog(`"error":"precheck: gpu: pid ` + strconv.Itoa(pid) + ` (cudaproc) holds the GPU: GPU support is off (set cuda_checkpoint or TARDIS_CUDA_CHECKPOINT)"`)
	if w.runc.called("checkpoint") != 0 || w.runc.called("exec kill c1 15") != 1 || w.cudaCalls() != "" {
		t.Fatalf("calls %v, GPU tools %q", *w.runc.calls, w.cudaCalls())
	}
	if sf := w.state("c1"); sf.Stopping != nil {
		t.Fatal("the state file says tardis was stopping it")
	}
}

// A resume that fails after runc restore is a failed restore: the container is removed,
// the checkpoint set aside with the reason, and the caller's create runs.
func TestGPUResumeFails(t *testing.T) {
	w := newGPUWorld(t)
	w.checkpointed("gpu", "c0", cudaApp)
	w.setGPU("FAKECUDA_FAULTS=restore:fail")
	b := w.bundle("b", cudaApp, "dev.tardis.enabled=true", "dev.tardis.key=gpu")
	if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	w.wantLogMatch(`"msg":"restore failed; creating the container fresh","op":"create","id":"c1","key":"gpu","error":"resume CUDA: gpu: restore of pid \d+ \(cudaproc\): cuda-checkpoint exit status 1: Could not restore`)
	if w.runc.called("restore c1") != 1 || w.runc.called("delete force=true c1") != 1 || w.runc.called("exec create") != 1 {
		t.Fatalf("calls %v", *w.runc.calls)
	}
	if len(w.asides("gpu")) != 1 || w.current("gpu") != "" {
		t.Fatalf("asides %v, current %q", w.asides("gpu"), w.current("gpu"))
	}
	reason, _ := os.ReadFile(filepath.Join(w.asides("gpu")[0], "REASON"))
	if !strings.HasPrefix(string(reason), "resume CUDA: gpu: restore of pid") {
		t.Errorf("REASON %q", reason)
	}
	if sf := w.state("c1"); sf.Started != "created" || !strings.HasPrefix(sf.Fallback, "resume CUDA:") {
		t.Fatalf("state %+v", sf)
	}
}

// A node that cannot take the CUDA state is refused at validation, before runc restore,
// with the reason; the checkpoint is set aside, as for the other node refusals.
func TestGPUNodeCannotTakeIt(t *testing.T) {
	for name, tt := range map[string]struct {
		env []string
		msg string
	}{
		"another driver branch": {[]string{"FAKESMI_DRIVER=570.86.15"}, `gpu: the node's driver 570.86.15 is of another branch than the checkpoint's 580.159.04`},
		"another model":         {[]string{"FAKESMI_GPUS=NVIDIA A100-SXM4-80GB:81920"}, `gpu: the node has \"NVIDIA A100-SXM4-80GB\", the checkpoint was taken on \"NVIDIA H200\"`},
		"too little memory":     {[]string{"FAKESMI_GPUS=NVIDIA H200:143771:100"}, `gpu: the checkpoint's processes held 256 MiB on the GPU, the node has 100 MiB free`},
		"GPU support off":       {nil, `gpu: the checkpoint holds the CUDA state of 1 processes, this node cannot resume it: GPU support is off`},
	} {
		t.Run(name, func(t *testing.T) {
			w := newGPUWorld(t)
			w.checkpointed("gpu", "c0", cudaApp)
			w.setGPU(tt.env...)
			if tt.env == nil {
				delete(w.env, "TARDIS_CUDA_CHECKPOINT")
			}
			b := w.bundle("b", cudaApp, "dev.tardis.enabled=true", "dev.tardis.key=gpu")
			w.tardis("create", "--bundle", b, "c1")
			w.wantLog(`"error":"validate: checkpoint not restorable: ` + tt.msg)
			if w.runc.called("restore") != 0 || w.runc.called("exec create") != 1 || len(w.asides("gpu")) != 1 {
				t.Fatalf("calls %v, asides %v", *w.runc.calls, w.asides("gpu"))
			}
		})
	}
}

// A container that cannot see the GPU costs a stop nothing more: runc ps is not run, nor
// any GPU tool, whether GPU support is on or not.
func TestNonGPUContainerNotLookedInto(t *testing.T) {
	w := newGPUWorld(t)
	w.runc.start = func(string, bool) (int, func()) { return os.Getpid(), func() {} } // sees no fake device
	w.checkpointed("web", "c0", counter)
	if w.runc.called("ps") != 0 || w.cudaCalls() != "" || w.manifest("web").GPU != nil {
		t.Fatalf("calls %v, GPU tools %q", *w.runc.calls, w.cudaCalls())
	}
}

func (w *world) wantLogMatch(re string) {
	w.t.Helper()
	if !regexp.MustCompile(re).MatchString(w.log()) {
		w.t.Fatalf("tardis.log lacks %s:\n%s", re, w.log())
	}
}
