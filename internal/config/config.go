// Package config reads tardis's configuration: a TOML file (the format containerd and CRI-O
// use) with defaults that work out of the box, and an environment variable per setting.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/tardis-runtime/tardis/internal/fsys"

	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/optin"
)

// DefaultPath is read when TARDIS_CONFIG is not set; a missing file there means defaults.
const DefaultPath = "/etc/tardis/config.toml"

// Duration is a positive time.Duration written as "30s", "2m" in the file and the
// environment: the GPU settings' type, one for every timeout.
type Duration = gpu.Duration

// Age is a duration that may be zero ("off") and may be given in days ("7d").
type Age struct{ time.Duration }

func (a *Age) UnmarshalText(b []byte) error {
	s := string(b)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return fmt.Errorf("age %q: want a number of days, a Go duration, or 0", s)
		}
		a.Duration = time.Duration(n) * 24 * time.Hour
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("age %q must not be negative", s)
	}
	a.Duration = v
	return nil
}

func (a Age) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Config is every setting; README.md's configuration reference documents each.
type Config struct {
	Runc           string   `toml:"runc"`            // TARDIS_RUNC
	Criu           string   `toml:"criu"`            // TARDIS_CRIU
	CheckpointRoot string   `toml:"checkpoint_root"` // TARDIS_CHECKPOINT_ROOT
	StateDir       string   `toml:"state_dir"`       // TARDIS_STATE_DIR
	WorkDir        string   `toml:"work_dir"`        // TARDIS_WORK_DIR
	LogFile        string   `toml:"log_file"`        // TARDIS_LOG_FILE
	CheckpointOn   []string `toml:"checkpoint_on"`   // TARDIS_CHECKPOINT_ON, comma-separated
	CheckpointArgs []string `toml:"checkpoint_args"` // TARDIS_CHECKPOINT_ARGS, space-separated
	RestoreArgs    []string `toml:"restore_args"`    // TARDIS_RESTORE_ARGS, space-separated
	// NetworkFSRoots are the host directories under which a container may name its
	// network-filesystem path (none: no host path is ever mounted).
	NetworkFSRoots []string `toml:"networkfs_roots"` // TARDIS_NETWORKFS_ROOTS, colon-separated
	// Tenant is the tenant of containers outside Kubernetes; TenantByRunc makes each runc
	// root (containerd namespace, Docker, Podman) a tenant of its own.
	Tenant       string `toml:"tenant"`              // TARDIS_TENANT
	TenantByRunc bool   `toml:"tenant_by_runc_root"` // TARDIS_TENANT_BY_RUNC_ROOT
	// SigningKey is a root-only key file: every checkpoint is signed, and unsigned or
	// tampered ones are refused.
	SigningKey string `toml:"signing_key"` // TARDIS_SIGNING_KEY
	// CheckpointExpiry: a checkpoint that nothing restored for this long (and a set-aside
	// one) is removed by tardis's own sweep; 0 keeps them until tardisctl gc.
	CheckpointExpiry Age      `toml:"checkpoint_expiry"` // TARDIS_CHECKPOINT_EXPIRY
	Timeouts         Timeouts `toml:"timeouts"`
	// The GPU settings (package gpu documents each), top-level in the file, the limits in a
	// [gpu] table:
	//
	//	cuda_checkpoint  TARDIS_CUDA_CHECKPOINT   NVIDIA's cuda-checkpoint (a path, or a name
	//	                                          on PATH). Unset: GPU support is off, and a
	//	                                          container whose processes hold the GPU is not
	//	                                          checkpointed (the stop is done as asked, with
	//	                                          a warning), nor is a checkpoint with CUDA
	//	                                          state restored.
	//	nvidia_smi       TARDIS_NVIDIA_SMI        nvidia-smi ("nvidia-smi" on PATH)
	//	gpu.lock         TARDIS_GPU_LOCK_TIMEOUT  how long cuda-checkpoint waits for a process's
	//	                                          CUDA calls under way to finish (10s)
	//	gpu.base         TARDIS_GPU_BASE_TIMEOUT  every GPU step's fixed allowance (10s)
	//	gpu.suspend_rate TARDIS_GPU_SUSPEND_RATE  GPU to host, for the suspend's deadline (1.6GB/s)
	//	gpu.resume_rate  TARDIS_GPU_RESUME_RATE   host to GPU, for the resume's deadline (6GB/s)
	//	gpu.safety       TARDIS_GPU_SAFETY        multiplies the time the bytes take (3)
	//	gpu.query        TARDIS_GPU_QUERY_TIMEOUT nvidia-smi and cuda-checkpoint --get-state (10s)
	//
	// A step that copies a process's GPU memory is killed after gpu.base + gpu.safety x its
	// bytes / the rate; a lock after gpu.lock + gpu.base. These deadlines are per process and
	// apart from timeouts.checkpoint and timeouts.restore, which bound runc alone.
	gpu.Config
}

// Timeouts bound every step that can hang.
type Timeouts struct {
	Checkpoint Duration `toml:"checkpoint"` // TARDIS_CHECKPOINT_TIMEOUT
	Restore    Duration `toml:"restore"`    // TARDIS_RESTORE_TIMEOUT
	Validate   Duration `toml:"validate"`   // TARDIS_VALIDATE_TIMEOUT
	NetworkFS  Duration `toml:"networkfs"`  // TARDIS_NETWORKFS_TIMEOUT
	Lock       Duration `toml:"lock"`       // TARDIS_LOCK_TIMEOUT
}

// Default returns the settings used where neither the file nor the environment says more.
func Default() Config {
	return Config{
		CheckpointRoot:   "/var/lib/tardis/checkpoints",
		StateDir:         "/run/tardis",
		WorkDir:          "/var/lib/tardis/work",
		LogFile:          "/var/log/tardis.log",
		CheckpointOn:     []string{"SIGTERM", "SIGKILL"},
		Tenant:           "default",
		CheckpointExpiry: Age{7 * 24 * time.Hour},
		Timeouts: Timeouts{
			Checkpoint: Duration{Duration: 2 * time.Minute},
			Restore:    Duration{Duration: 2 * time.Minute},
			Validate:   Duration{Duration: 10 * time.Second},
			NetworkFS:  Duration{Duration: 5 * time.Second},
			Lock:       Duration{Duration: 30 * time.Second},
		},
		Config: gpu.DefaultConfig(),
	}
}

// Path returns the config file to read and whether it was asked for explicitly.
func Path(getenv func(string) string) (string, bool) {
	if p := getenv("TARDIS_CONFIG"); p != "" {
		return p, true
	}
	return DefaultPath, false
}

// Load reads the file at path (a missing default file is fine, a missing explicit one is
// not), then applies the environment. On error it still returns usable defaults with the
// environment applied, so that a caller can carry on as plain runc would.
func Load(fsys fsys.FS, path string, explicit bool, getenv func(string) string) (Config, error) {
	c := Default()
	err := readFile(fsys, path, explicit, &c)
	if envErr := applyEnv(&c, getenv); envErr != nil {
		err = errors.Join(err, envErr)
	}
	if err == nil {
		err = c.check()
	}
	if err != nil {
		d := Default()
		_ = applyEnv(&d, getenv)
		return d, err
	}
	return c, nil
}

func readFile(fsys fsys.FS, path string, explicit bool, c *Config) error {
	b, err := fsys.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown setting %s", path, strings.Join(keys, ", "))
	}
	return nil
}

func applyEnv(c *Config, getenv func(string) string) error {
	strs := map[string]*string{
		"TARDIS_RUNC": &c.Runc, "TARDIS_CRIU": &c.Criu, "TARDIS_CHECKPOINT_ROOT": &c.CheckpointRoot,
		"TARDIS_STATE_DIR": &c.StateDir, "TARDIS_WORK_DIR": &c.WorkDir, "TARDIS_LOG_FILE": &c.LogFile,
		"TARDIS_TENANT": &c.Tenant, "TARDIS_SIGNING_KEY": &c.SigningKey,
	}
	for name, p := range strs {
		if v := getenv(name); v != "" {
			*p = v
		}
	}
	if v := getenv("TARDIS_CHECKPOINT_ON"); v != "" {
		c.CheckpointOn = strings.Split(v, ",")
	}
	if v := getenv("TARDIS_CHECKPOINT_ARGS"); v != "" {
		c.CheckpointArgs = strings.Fields(v)
	}
	if v := getenv("TARDIS_RESTORE_ARGS"); v != "" {
		c.RestoreArgs = strings.Fields(v)
	}
	if v := getenv("TARDIS_NETWORKFS_ROOTS"); v != "" {
		c.NetworkFSRoots = filepath.SplitList(v)
	}
	var errs []error
	if err := c.Config.ApplyEnv(getenv); err != nil {
		errs = append(errs, err)
	}
	if v := getenv("TARDIS_TENANT_BY_RUNC_ROOT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TARDIS_TENANT_BY_RUNC_ROOT: %w", err))
		}
		c.TenantByRunc = b
	}
	if v := getenv("TARDIS_CHECKPOINT_EXPIRY"); v != "" {
		if err := c.CheckpointExpiry.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("TARDIS_CHECKPOINT_EXPIRY: %w", err))
		}
	}
	durs := map[string]*Duration{
		"TARDIS_CHECKPOINT_TIMEOUT": &c.Timeouts.Checkpoint, "TARDIS_RESTORE_TIMEOUT": &c.Timeouts.Restore,
		"TARDIS_VALIDATE_TIMEOUT": &c.Timeouts.Validate, "TARDIS_NETWORKFS_TIMEOUT": &c.Timeouts.NetworkFS,
		"TARDIS_LOCK_TIMEOUT": &c.Timeouts.Lock,
	}
	for name, p := range durs {
		if v := getenv(name); v != "" {
			if err := p.UnmarshalText([]byte(v)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// check refuses settings that would make tardis build paths from relative directories, or
// that contradict what tardis does.
func (c *Config) check() error {
	var errs []error
	for _, p := range c.NetworkFSRoots {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
			errs = append(errs, fmt.Errorf("config: networkfs_roots: %q is not a clean absolute path other than /", p))
		}
	}
	for name, p := range map[string]string{"cuda_checkpoint": c.CudaCheckpoint, "nvidia_smi": c.NvidiaSMI} {
		if strings.Contains(p, "/") && !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("config: %s %q is neither an absolute path nor a name on PATH", name, p))
		}
	}
	if c.SigningKey != "" && !filepath.IsAbs(c.SigningKey) {
		errs = append(errs, fmt.Errorf("config: signing_key %q is not an absolute path", c.SigningKey))
	}
	if optin.CheckName(c.Tenant) != nil || len(c.Tenant) > 64 {
		errs = append(errs, fmt.Errorf("config: tenant %q is not a safe name (letters, digits, _ . -; at most 64)", c.Tenant))
	}
	errs = append(errs, checkArgs("checkpoint_args", c.CheckpointArgs, checkpointArgs),
		checkArgs("restore_args", c.RestoreArgs, restoreArgs), c.Config.Check())
	for name, p := range map[string]string{
		"checkpoint_root": c.CheckpointRoot, "state_dir": c.StateDir, "work_dir": c.WorkDir,
		"log_file": c.LogFile,
	} {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("config: %s %q is not an absolute path", name, p))
		}
	}
	return errors.Join(errs...)
}

// The runc options a node may add to the checkpoints and restores tardis runs, and whether
// each takes a value. Everything else is refused, because tardis sets it itself (image and
// work paths, --detach, the bundle, the pid file, the console socket) or because it
// contradicts what tardis does: --leave-running (the stop would leave the container
// running), --pre-dump (no final dump), --lazy-pages, --page-server and --status-fd (they
// need an orchestrator tardis is not), --parent-path.
var (
	checkpointArgs = map[string]bool{
		"tcp-established": false, "tcp-skip-in-flight": false, "ext-unix-sk": false, "shell-job": false,
		"file-locks": false, "link-remap": false, "auto-dedup": false,
		"manage-cgroups-mode": true, "empty-ns": true,
	}
	restoreArgs = map[string]bool{
		"tcp-established": false, "ext-unix-sk": false, "shell-job": false, "file-locks": false,
		"auto-dedup": false, "no-subreaper": false,
		"manage-cgroups-mode": true, "empty-ns": true, "lsm-profile": true, "lsm-mount-context": true,
	}
)

// checkArgs refuses extra runc options that are not in allowed (name → takes a value).
func checkArgs(setting string, args []string, allowed map[string]bool) error {
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, ok := allowed[name]
		switch {
		case !strings.HasPrefix(a, "-"):
			errs = append(errs, fmt.Errorf("config: %s: %q is not an option", setting, a))
		case !ok:
			errs = append(errs, fmt.Errorf("config: %s: %q is not allowed (tardis sets it, or it contradicts a checkpoint on stop)", setting, a))
		case takes && !hasValue:
			if i+1 >= len(args) {
				errs = append(errs, fmt.Errorf("config: %s: %q needs a value", setting, a))
			}
			i++
		case !takes && hasValue:
			errs = append(errs, fmt.Errorf("config: %s: %q takes no value", setting, a))
		}
	}
	return errors.Join(errs...)
}
