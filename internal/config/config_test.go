package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tardis-runtime/tardis/internal/fsys/fsystest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaultsWhenDefaultFileMissing(t *testing.T) {
	c, err := Load(fsystest.Files{}, DefaultPath, false, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("defaults differ (-want +got):\n%s", diff)
	}
}

func TestLoadFileThenEnvironment(t *testing.T) {
	fs := fsystest.Files{}
	fs["/etc/t.toml"] = `
runc = "/usr/sbin/runc"
checkpoint_root = "/nfs/ckpt"
checkpoint_on = ["TERM"]
checkpoint_args = ["--tcp-established"]
[timeouts]
restore = "45s"
`
	c, err := Load(fs, "/etc/t.toml", true, env(map[string]string{
		"TARDIS_CHECKPOINT_ROOT": "/other", "TARDIS_LOCK_TIMEOUT": "3s", "TARDIS_CHECKPOINT_ON": "SIGINT,SIGTERM",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Runc = "/usr/sbin/runc"
	want.CheckpointRoot = "/other"
	want.CheckpointOn = []string{"SIGINT", "SIGTERM"}
	want.CheckpointArgs = []string{"--tcp-established"}
	want.Timeouts.Restore = Duration{Duration: 45 * time.Second}
	want.Timeouts.Lock = Duration{Duration: 3 * time.Second}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config differs (-want +got):\n%s", diff)
	}
}

// The GPU settings are top-level (cuda_checkpoint, nvidia_smi) and a [gpu] table, each with
// its variable, as package gpu defines them.
func TestLoadGPUSettings(t *testing.T) {
	fs := fsystest.Files{}
	fs["/etc/t.toml"] = `
cuda_checkpoint = "/usr/local/bin/cuda-checkpoint"
[gpu]
lock = "5s"
suspend_rate = "1GB/s"
`
	c, err := Load(fs, "/etc/t.toml", true, env(map[string]string{
		"TARDIS_NVIDIA_SMI": "/usr/local/nvidia/bin/nvidia-smi", "TARDIS_GPU_SAFETY": "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.CudaCheckpoint = "/usr/local/bin/cuda-checkpoint"
	want.NvidiaSMI = "/usr/local/nvidia/bin/nvidia-smi"
	want.GPU.Lock.Duration = 5 * time.Second
	want.GPU.SuspendRate = 1e9
	want.GPU.Safety = 2
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config differs (-want +got):\n%s", diff)
	}
	if Default().CudaCheckpoint != "" || !c.Config.Enabled() {
		t.Error("GPU support must be off by default and on once cuda_checkpoint is set")
	}
	c, err = Load(fs, DefaultPath, false, env(map[string]string{"TARDIS_CUDA_CHECKPOINT": "cuda-checkpoint"}))
	if err != nil || c.CudaCheckpoint != "cuda-checkpoint" {
		t.Errorf("a name on PATH: %q, %v", c.CudaCheckpoint, err)
	}
}

func TestLoadErrorsStillGiveDefaults(t *testing.T) {
	for name, tt := range map[string]struct {
		file, msg string
		explicit  bool
		env       map[string]string
	}{
		"bad toml":           {file: "runc = [", msg: "toml:"},
		"unknown setting":    {file: `runk = "x"`, msg: "unknown setting runk"},
		"relative path":      {file: `state_dir = "run"`, msg: `state_dir "run" is not an absolute path`},
		"negative duration":  {file: "[timeouts]\nrestore = \"-1s\"", msg: "must be positive"},
		"bad env duration":   {env: map[string]string{"TARDIS_RESTORE_TIMEOUT": "x"}, msg: "TARDIS_RESTORE_TIMEOUT"},
		"missing explicit":   {explicit: true, msg: "file does not exist"},
		"wrong type setting": {file: `checkpoint_on = "TERM"`, msg: "toml:"},
		"unknown gpu limit":  {file: "[gpu]\nlok = \"1s\"", msg: "unknown setting gpu.lok"},
		"zero gpu rate":      {file: "[gpu]\nsuspend_rate = \"0GB/s\"", msg: "rate"},
		"gpu safety under 1": {env: map[string]string{"TARDIS_GPU_SAFETY": "0.5"}, msg: "gpu.safety 0.5"},
		"bad gpu env":        {env: map[string]string{"TARDIS_GPU_LOCK_TIMEOUT": "soon"}, msg: "TARDIS_GPU_LOCK_TIMEOUT"},
		"relative tool path": {file: `cuda_checkpoint = "bin/cuda-checkpoint"`, msg: "neither an absolute path nor a name on PATH"},
		"tenant climbs out":  {file: `tenant = "../etc"`, msg: `tenant "../etc" is not a safe name`},
		"tenant with slash":  {file: `tenant = "a/b"`, msg: `tenant "a/b" is not a safe name`},
		"tenant too long":    {file: `tenant = "` + strings.Repeat("t", 65) + `"`, msg: "at most 64"},
	} {
		t.Run(name, func(t *testing.T) {
			fs := fsystest.Files{}
			if tt.file != "" {
				fs["/c.toml"] = tt.file
			}
			c, err := Load(fs, "/c.toml", tt.explicit, env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.msg)
			}
			if c.StateDir != Default().StateDir || c.Timeouts.Restore != Default().Timeouts.Restore || c.CudaCheckpoint != "" {
				t.Errorf("on error Load must return defaults, got %+v", c)
			}
		})
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("runc = \"/x\"\n[timeouts]\nlock = \"1s\"\n")
	f.Add("checkpoint_on = [\"TERM\", 9]")
	f.Fuzz(func(t *testing.T, s string) {
		fs := fsystest.Files{}
		fs["/c.toml"] = s
		c, err := Load(fs, "/c.toml", true, env(nil))
		if err == nil {
			for _, p := range []string{c.StateDir, c.CheckpointRoot, c.WorkDir, c.LogFile} {
				if !strings.HasPrefix(p, "/") {
					t.Fatalf("accepted relative path %q", p)
				}
			}
			if c.Timeouts.Restore.Duration <= 0 {
				t.Fatal("accepted non-positive timeout")
			}
		}
	})
}
