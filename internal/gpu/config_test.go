package gpu_test

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"

	"github.com/tardis-runtime/tardis/internal/gpu"
)

// fileConfig is how the core's config embeds the GPU settings.
type fileConfig struct {
	Runc string `toml:"runc"`
	gpu.Config
}

func TestConfigInTheFile(t *testing.T) {
	c := fileConfig{Config: gpu.DefaultConfig()}
	md, err := toml.Decode(`
runc = "/usr/sbin/runc"
cuda_checkpoint = "/opt/nvidia/cuda-checkpoint"
nvidia_smi = "/usr/local/nvidia/bin/nvidia-smi"
[gpu]
lock = "5s"
suspend_rate = "1GiB/s"
safety = 2
`, &c)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("undecoded keys %v", und)
	}
	want := gpu.DefaultConfig()
	want.CudaCheckpoint = "/opt/nvidia/cuda-checkpoint"
	want.NvidiaSMI = "/usr/local/nvidia/bin/nvidia-smi"
	want.GPU.Lock = gpu.Duration{Duration: 5 * time.Second}
	want.GPU.SuspendRate = 1 << 30
	want.GPU.Safety = 2
	if diff := cmp.Diff(want, c.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if c.Runc != "/usr/sbin/runc" || !c.Enabled() {
		t.Errorf("runc %q, enabled %v", c.Runc, c.Enabled())
	}
	if err := c.Check(); err != nil {
		t.Error(err)
	}
}

func TestConfigEnvironment(t *testing.T) {
	c := gpu.DefaultConfig()
	if c.Enabled() {
		t.Error("GPU support is on by default")
	}
	env := map[string]string{
		"TARDIS_CUDA_CHECKPOINT": "/carry/cuda-checkpoint", "TARDIS_NVIDIA_SMI": "/nv/nvidia-smi",
		"TARDIS_GPU_LOCK_TIMEOUT": "3s", "TARDIS_GPU_BASE_TIMEOUT": "20s", "TARDIS_GPU_QUERY_TIMEOUT": "1s",
		"TARDIS_GPU_SUSPEND_RATE": "800MB/s", "TARDIS_GPU_RESUME_RATE": "4e9", "TARDIS_GPU_SAFETY": "1.5",
	}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := gpu.Config{CudaCheckpoint: "/carry/cuda-checkpoint", NvidiaSMI: "/nv/nvidia-smi", GPU: gpu.Limits{
		Lock: gpu.Duration{Duration: 3 * time.Second}, Base: gpu.Duration{Duration: 20 * time.Second},
		Query: gpu.Duration{Duration: time.Second}, SuspendRate: 8e8, ResumeRate: 4e9, Safety: 1.5,
	}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	bad := map[string]string{"TARDIS_GPU_SUSPEND_RATE": "fast", "TARDIS_GPU_SAFETY": "x", "TARDIS_GPU_LOCK_TIMEOUT": "-1s"}
	err := c.ApplyEnv(func(k string) string { return bad[k] })
	for _, name := range []string{"TARDIS_GPU_SUSPEND_RATE", "TARDIS_GPU_SAFETY", "TARDIS_GPU_LOCK_TIMEOUT"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v, want it to name %s", err, name)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	c := gpu.DefaultConfig()
	c.GPU.Safety = 0.5
	c.GPU.ResumeRate = 0
	c.GPU.Query = gpu.Duration{}
	err := c.Check()
	for _, s := range []string{"gpu.safety 0.5", "resume_rate", "gpu.query"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("err = %v, want it to say %q", err, s)
		}
	}
}

func TestRate(t *testing.T) {
	for in, want := range map[string]gpu.Rate{
		"1.6GB/s": 1.6e9, "6GB/s": 6e9, "500MiB/s": 500 << 20, "2 GiB/s": 2 << 30, "1000": 1000, "10KB": 1e4,
	} {
		var r gpu.Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r != want {
			t.Errorf("%q: %v, %v; want %v", in, float64(r), err, float64(want))
		}
	}
	for _, in := range []string{"", "fast", "-1GB/s", "0", "1.6XB/s", "NaN", "+Inf"} {
		var r gpu.Rate
		if err := r.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %v", in, float64(r))
		}
	}
	if b, _ := gpu.MeasuredSuspendRate.MarshalText(); string(b) != "1.6GB/s" {
		t.Errorf("marshalled %q", b)
	}
}

// TestTimeouts: deadlines grow with what a process holds (arithmetic, no clock).
func TestTimeouts(t *testing.T) {
	l := gpu.DefaultConfig().GPU // base 10s, safety 3, 1.6 GB/s out, 6 GB/s in, lock 10s
	for _, tt := range []struct {
		got, want time.Duration
	}{
		{l.SuspendTimeout(0), 10 * time.Second},
		{l.SuspendTimeout(16e9), 10*time.Second + 30*time.Second},
		{l.ResumeTimeout(12e9), 10*time.Second + 6*time.Second},
		{l.LockTimeout(), 20 * time.Second},
	} {
		if tt.got != tt.want {
			t.Errorf("timeout %s, want %s", tt.got, tt.want)
		}
	}
	if l.SuspendTimeout(33e9) <= l.SuspendTimeout(2e9) {
		t.Error("a bigger process gets no longer deadline")
	}
}
