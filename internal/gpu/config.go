package gpu

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Config is the GPU part of tardis's configuration, made to be embedded (anonymously) in
// the config file's struct: cuda_checkpoint and nvidia_smi are top-level settings, the
// limits a [gpu] table.
//
//	cuda_checkpoint = "/usr/local/bin/cuda-checkpoint"
//	[gpu]
//	suspend_rate = "1.6GB/s"
type Config struct {
	// CudaCheckpoint is NVIDIA's cuda-checkpoint utility (TARDIS_CUDA_CHECKPOINT). Empty
	// means GPU support is off: a container with CUDA state cannot be checkpointed.
	CudaCheckpoint string `toml:"cuda_checkpoint"`
	// NvidiaSMI is nvidia-smi (TARDIS_NVIDIA_SMI), "nvidia-smi" on PATH by default.
	NvidiaSMI string `toml:"nvidia_smi"`
	GPU       Limits `toml:"gpu"`
}

// Limits bound each step on the GPU. A step that copies memory gets Base plus Safety
// times the time its bytes take at the measured rate; see SuspendTimeout and ResumeTimeout.
type Limits struct {
	// Lock is given to `cuda-checkpoint --action lock --timeout` (TARDIS_GPU_LOCK_TIMEOUT):
	// how long to wait for the process's CUDA calls under way to finish.
	Lock Duration `toml:"lock"`
	// Base is every step's fixed allowance (TARDIS_GPU_BASE_TIMEOUT).
	Base Duration `toml:"base"`
	// SuspendRate is GPU to host, the checkpoint action (TARDIS_GPU_SUSPEND_RATE).
	SuspendRate Rate `toml:"suspend_rate"`
	// ResumeRate is host to GPU, the restore action (TARDIS_GPU_RESUME_RATE).
	ResumeRate Rate `toml:"resume_rate"`
	// Safety multiplies the time the bytes take (TARDIS_GPU_SAFETY), at least 1.
	Safety float64 `toml:"safety"`
	// Query bounds nvidia-smi and `cuda-checkpoint --get-state` (TARDIS_GPU_QUERY_TIMEOUT).
	Query Duration `toml:"query"`
}

// The rates measured on an H200 (notes/gpu.md section 3): a suspend copies about 1.6 GB/s
// from the GPU to the host, a resume about 6 GB/s back.
const (
	MeasuredSuspendRate Rate = 1.6e9
	MeasuredResumeRate  Rate = 6e9
)

// DefaultConfig is GPU support off, with the limits used once it is turned on.
func DefaultConfig() Config {
	return Config{
		NvidiaSMI: "nvidia-smi",
		GPU: Limits{
			Lock:        Duration{10 * time.Second},
			Base:        Duration{10 * time.Second},
			SuspendRate: MeasuredSuspendRate,
			ResumeRate:  MeasuredResumeRate,
			Safety:      3,
			Query:       Duration{10 * time.Second},
		},
	}
}

// Enabled reports whether GPU support is on.
func (c Config) Enabled() bool { return c.CudaCheckpoint != "" }

// ApplyEnv applies the TARDIS_* variables of the GPU settings over c.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if v := getenv("TARDIS_CUDA_CHECKPOINT"); v != "" {
		c.CudaCheckpoint = v
	}
	if v := getenv("TARDIS_NVIDIA_SMI"); v != "" {
		c.NvidiaSMI = v
	}
	var errs []error
	set := func(name string, u interface{ UnmarshalText([]byte) error }) {
		if v := getenv(name); v != "" {
			if err := u.UnmarshalText([]byte(v)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	set("TARDIS_GPU_LOCK_TIMEOUT", &c.GPU.Lock)
	set("TARDIS_GPU_BASE_TIMEOUT", &c.GPU.Base)
	set("TARDIS_GPU_QUERY_TIMEOUT", &c.GPU.Query)
	set("TARDIS_GPU_SUSPEND_RATE", &c.GPU.SuspendRate)
	set("TARDIS_GPU_RESUME_RATE", &c.GPU.ResumeRate)
	if v := getenv("TARDIS_GPU_SAFETY"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("TARDIS_GPU_SAFETY: %w", err))
		} else {
			c.GPU.Safety = f
		}
	}
	return errors.Join(errs...)
}

// Check refuses limits that cannot bound anything (zero rates, a safety under 1).
func (c Config) Check() error {
	var errs []error
	if c.GPU.SuspendRate <= 0 || c.GPU.ResumeRate <= 0 {
		errs = append(errs, errors.New("config: gpu.suspend_rate and gpu.resume_rate must be positive"))
	}
	if !(c.GPU.Safety >= 1) || math.IsInf(c.GPU.Safety, 0) {
		errs = append(errs, fmt.Errorf("config: gpu.safety %v must be a number of at least 1", c.GPU.Safety))
	}
	for name, d := range map[string]Duration{"gpu.lock": c.GPU.Lock, "gpu.base": c.GPU.Base, "gpu.query": c.GPU.Query} {
		if d.Duration <= 0 {
			errs = append(errs, fmt.Errorf("config: %s must be positive", name))
		}
	}
	return errors.Join(errs...)
}

// SuspendTimeout bounds the checkpoint action of a process holding bytes on the GPU.
func (l Limits) SuspendTimeout(bytes uint64) time.Duration {
	return l.Base.Duration + l.copyTime(bytes, l.SuspendRate)
}

// ResumeTimeout bounds the restore action of a process that held bytes on the GPU.
func (l Limits) ResumeTimeout(bytes uint64) time.Duration {
	return l.Base.Duration + l.copyTime(bytes, l.ResumeRate)
}

// LockTimeout bounds the lock action: the tool's own --timeout, plus Base.
func (l Limits) LockTimeout() time.Duration { return l.Lock.Duration + l.Base.Duration }

func (l Limits) copyTime(bytes uint64, rate Rate) time.Duration {
	if rate <= 0 || bytes == 0 {
		return 0
	}
	secs := l.Safety * float64(bytes) / float64(rate)
	if secs > float64(math.MaxInt64/int64(time.Second)) {
		return math.MaxInt64
	}
	return time.Duration(secs * float64(time.Second))
}

// Duration is a time.Duration written as "10s" in the file and the environment.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("duration %q must be positive", b)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Rate is bytes per second, written "1.6GB/s", "500MiB/s" or a plain number of bytes.
type Rate float64

var rateUnits = []struct {
	suffix string
	factor float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.TrimSuffix(strings.TrimSpace(string(b)), "/s")
	factor := 1.0
	for _, u := range rateUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, factor = strings.TrimSpace(num), u.factor
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return fmt.Errorf("rate %q: want a positive number of bytes per second, such as 1.6GB/s", b)
	}
	*r = Rate(v * factor)
	return nil
}

func (r Rate) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(r)/1e9, 'g', -1, 64) + "GB/s"), nil
}
