// Package tardis is the runtime: it reads a runc command line, passes everything that is
// not its business to the real runc by exec, and for opted-in containers checkpoints on
// stop and restores on create, falling back to plain runc whenever that path fails.
//
// One way down for each concept: the caller's argv is read once (runcargs) and either
// handed to runc unchanged (passThrough, runCaller) or turned into typed runc calls
// (package runc); the container id names its state file (package state) and runc's
// container; the bundle is read and changed in one place (package bundle), what it asks
// for decided in one place (package optin); the key, with its tenant, names its
// checkpoints (package store), its lock and work directories (package node).
//
// The files: create.go (create, run, start, a client's own restore), restore.go (the
// restore transaction), stop.go (kill and delete: one stop path), checkpoint.go (the
// checkpoint transaction), gpu.go (a container's CUDA state around both), recover.go
// (what a tardis that died left behind).
package tardis

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/fsys"

	"github.com/tardis-runtime/tardis/internal/config"
	"github.com/tardis-runtime/tardis/internal/lock"
	"github.com/tardis-runtime/tardis/internal/node"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/runcargs"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
	"github.com/tardis-runtime/tardis/internal/tlog"
)

// ExitRefused is tardis's own exit code when it cannot run runc at all: no runc found, the
// configured runc is tardis itself, or exec failed. Every other exit code is runc's.
const ExitRefused = 125

// Env is everything tardis takes from the outside world; tests build their own.
type Env struct {
	Args                  []string
	Getenv                func(string) string
	Environ               []string
	Stdin, Stdout, Stderr *os.File
	FS                    fsys.FS                // config, state files and bundles
	IsSelf                func(path string) bool // whether a path is this program
	Mountinfo             string                 // /proc/self/mountinfo
	CPUInfo               string                 // /proc/cpuinfo
	// Runc and CRIU, when set, are what tardis calls (tests inject fakes); otherwise Main
	// finds the real runc from the configuration and PATH.
	Runc Runc
	CRIU CRIU
	// Crash, when set, is called at every point where tardis may die and must leave
	// nothing half-done (tests inject SIGKILL there); nil in production.
	Crash func(point string)
	// Inline runs tardis's background work (removing a retired checkpoint, the expiry
	// sweep) in this process, at once, rather than in a detached tardis (tests).
	Inline bool
	// GPUDevPrefix starts the path of every GPU device node ("" means /dev/nvidia): a
	// container holds the GPU when a process has one open or mapped (tests use fakes).
	GPUDevPrefix string
	// CgroupV2 tells whether the node's cgroups are v2 (nil: they are taken to be v1).
	CgroupV2 func() bool
}

// OS is the real environment. A caller that gives no PATH (Podman runs the runtime with an
// empty environment) gets runc.DefaultPath, so that runc, and CRIU under it, find their
// tools.
func OS() Env {
	if os.Getenv("PATH") == "" {
		_ = os.Setenv("PATH", runc.DefaultPath)
	}
	return Env{
		Args: os.Args, Getenv: os.Getenv, Environ: os.Environ(),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		FS: fsys.OS{}, IsSelf: runc.SameFile,
		Mountinfo: "/proc/self/mountinfo", CPUInfo: "/proc/cpuinfo",
		CgroupV2: func() bool {
			var st syscall.Statfs_t
			return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
		},
	}
}

// Runc is the real runc as tardis uses it (runc.Client; tests give a fake).
type Runc interface {
	Exec(args []string) error                             // replace tardis with runc (returns only on failure)
	Forward(args []string, stdio runc.Stdio) (int, error) // run the caller's command as a child
	State(ctx context.Context, id string) (*runc.State, error)
	Ps(ctx context.Context, id string) ([]int, error) // host pids of the container's processes
	Checkpoint(ctx context.Context, id string, o runc.CheckpointOpts) error
	Restore(ctx context.Context, id string, o runc.RestoreOpts) error
	Delete(ctx context.Context, id string, force bool) error
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Resume(ctx context.Context, id string) error
	Version(ctx context.Context) (runc.Version, error)
	InRoot(root string) Runc // the same runc with another --root
}

// clientRunc is the real runc client as a Runc.
type clientRunc struct{ *runc.Client }

func (c clientRunc) InRoot(root string) Runc { return clientRunc{c.Client.InRoot(root)} }

// CRIU is what tardis asks of the node's CRIU itself (images are checked by criuimg).
type CRIU interface {
	Version(ctx context.Context) string
}

var (
	_ Runc = clientRunc{}
	_ CRIU = runc.Criu{}
)

type app struct {
	env    Env
	cfg    config.Config
	inv    *runcargs.Invocation
	runc   Runc
	criu   CRIU
	log    *tlog.Logger
	states state.Store
	store  store.Store
	paths  node.Paths
	policy optin.Policy
	ctx    context.Context
}

// Main runs one tardis invocation and returns its exit code.
func Main(env Env) int {
	args := env.Args[1:]
	if env.Getenv(runc.GuardEnv) != "" {
		fmt.Fprintf(env.Stderr, "tardis: %v: the configured runc leads back to tardis (refusing to loop)\n", runc.ErrSelf)
		return ExitRefused
	}
	path, explicit := config.Path(env.Getenv)
	cfg, cfgErr := config.Load(env.FS, path, explicit, env.Getenv)
	inv, parseErr := runcargs.Parse(args)
	a := &app{
		env: env, cfg: cfg, inv: inv, ctx: context.Background(),
		log: &tlog.Logger{OwnPath: cfg.LogFile, CallerPath: inv.Global.Log,
			CallerFormat: inv.Global.LogFormat, Fallback: env.Stderr, Op: inv.Command, ID: inv.ID},
		states: state.Store{FS: env.FS, Dir: cfg.StateDir},
		paths:  node.Paths{StateDir: cfg.StateDir, WorkDir: cfg.WorkDir},
		policy: optin.Policy{NetworkFSRoots: cfg.NetworkFSRoots, Tenant: cfg.Tenant, TenantByRoot: cfg.TenantByRunc},
	}
	var key []byte
	if cfgErr == nil && cfg.SigningKey != "" && (handlers[inv.Command] != nil || env.Getenv(backgroundEnv) != "") {
		// Read only where a checkpoint may be written or read: a pass-through pays nothing.
		key, cfgErr = store.ReadSigningKey(cfg.SigningKey)
	}
	a.store = store.New(cfg.CheckpointRoot, key)
	if job := env.Getenv(backgroundEnv); job != "" {
		return a.runJob(job)
	}
	a.runc, a.criu = env.Runc, env.CRIU
	if a.runc == nil {
		r, err := a.realRunc()
		if err != nil {
			a.log.Error("cannot run runc", err)
			fmt.Fprintf(env.Stderr, "tardis: %v\n", err)
			return ExitRefused
		}
		a.runc = r
	}
	if a.criu == nil {
		a.criu = runc.Criu{Path: a.criuPath()}
	}
	if cfgErr != nil {
		fmt.Fprintf(env.Stderr, "tardis: warning: %v; passing every command to runc unchanged\n", cfgErr)
		a.log.Warn("configuration unusable; passing every command to runc unchanged", cfgErr, "config", path)
		return a.passThrough()
	}
	if parseErr != nil {
		// runc says what is wrong, in its own words; tardis notes that it could not follow.
		a.log.Warn("cannot read the command line as runc does; passing it to runc unchanged", parseErr,
			"args", strings.Join(args, " "))
		return a.passThrough()
	}
	if h := handlers[inv.Command]; h != nil {
		return h(a)
	}
	return a.passThrough()
}

// handlers are the commands tardis may handle itself (for an opted-in container); every
// other command is runc's, passed through.
var handlers = map[string]func(*app) int{
	"create": (*app).create, "run": (*app).create, "start": (*app).start,
	"kill": (*app).kill, "delete": (*app).delete, "restore": (*app).clientRestore,
}

// realRunc finds the real runc and gives it the caller's global options.
func (a *app) realRunc() (Runc, error) {
	path := a.env.Getenv("PATH")
	if path == "" {
		path = runc.DefaultPath
	}
	p, err := runc.Resolve(a.cfg.Runc, path, a.env.IsSelf)
	if err != nil {
		return nil, err
	}
	g := a.inv.Global
	return clientRunc{&runc.Client{
		Path: p, Argv0: a.env.Args[0], Env: a.env.Environ,
		Global: runc.Global{Root: g.Root, Log: g.Log, LogFormat: g.LogFormat, Rootless: g.Rootless,
			Debug: g.Debug, SystemdCgroup: g.SystemdCgroup},
		Criu: a.criuPath(), CriuDir: a.paths.CriuBin(),
	}}, nil
}

// criuPath is the CRIU to use: the caller's --criu, else the configured one.
func (a *app) criuPath() string {
	if a.inv.Global.Criu != "" {
		return a.inv.Global.Criu
	}
	return a.cfg.Criu
}

// passThrough replaces tardis with runc and the caller's argv, so that pid, stdio, fds,
// signals and exit code are runc's.
func (a *app) passThrough() int {
	if a.inv.Command == "checkpoint" || a.inv.Command == "restore" {
		// A caller's own checkpoint or restore runs with the node's CRIU, as tardis's do.
		if c, ok := a.runc.(interface{ CriuOnPath() error }); ok {
			if err := c.CriuOnPath(); err != nil {
				a.log.Warn("cannot give runc the configured CRIU", err)
			}
		}
	}
	if err := a.runc.Exec(a.inv.Args); err != nil {
		a.log.Error("cannot run runc", err)
		fmt.Fprintf(a.env.Stderr, "tardis: %v\n", err)
		return ExitRefused
	}
	return 0 // a Runc whose Exec returns (tests) ran the caller's command
}

// runCaller runs runc with the caller's argv and stdio as a child, for the commands tardis
// must follow up (it removes a state file after a delete), and returns runc's exit code.
func (a *app) runCaller() int {
	code, err := a.runc.Forward(a.inv.Args, runc.Stdio{Stdin: a.env.Stdin, Stdout: a.env.Stdout, Stderr: a.env.Stderr})
	if err != nil {
		a.log.Error("cannot run runc", err)
		fmt.Fprintf(a.env.Stderr, "tardis: %v\n", err)
		return ExitRefused
	}
	return code
}

// root is runc's state root for this invocation.
func (a *app) root() string {
	if a.inv.Global.Root != "" {
		return a.inv.Global.Root
	}
	return state.DefaultRoot
}

// readState reads the state file of the container named on the command line: nil when the
// container did not opt in (or its id cannot name a file, so it could not have). An
// unreadable state file is a warning, and the container is treated as not opted in.
func (a *app) readState() *state.File {
	if optin.CheckName(a.inv.ID) != nil {
		return nil
	}
	sf, err := a.states.Read(a.root(), a.inv.ID)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("cannot read state file; treating the container as not opted in", err)
		}
		return nil
	}
	return sf
}

func (a *app) writeState(sf *state.File) {
	sf.Updated = time.Now().UTC()
	if err := a.states.Write(sf); err != nil {
		a.log.Warn("cannot write state file", err)
	}
}

func (a *app) removeState(sf *state.File) {
	if err := a.states.Remove(sf.Root, sf.ID); err != nil {
		a.log.Warn("cannot remove state file", err)
	}
}

// ref is the checkpoint key a state file names.
func ref(sf *state.File) store.Ref {
	t := sf.Tenant
	if t == "" {
		t = optin.DefaultTenant // state files of tardis before tenants
	}
	return store.Ref{Tenant: t, Key: sf.Key}
}

// lockKey serialises operations on a key.
func (a *app) lockKey(r store.Ref) (*lock.Lock, error) {
	return a.paths.Lock(r, a.cfg.Timeouts.Lock.Duration)
}

// statusTimeout bounds the runc calls that only read or signal (state, kill, resume,
// delete): they do not wait for CRIU.
const statusTimeout = 10 * time.Second

// bounded is a context for one runc call of at most d.
func (a *app) bounded(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, d)
}

// state is runc's state of a container; runc.ErrNotExist when runc does not know it.
func (a *app) state(id string) (*runc.State, error) { return a.stateIn(a.runc, id) }

// stateIn is runc's state of a container under r.
func (a *app) stateIn(r Runc, id string) (*runc.State, error) {
	ctx, cancel := a.bounded(statusTimeout)
	defer cancel()
	return r.State(ctx, id)
}

// thisNode describes this machine for a manifest or a restore's compatibility check.
// Asking runc and CRIU for their versions costs a process each: they run side by side.
func (a *app) thisNode() store.Node {
	criu := make(chan string, 1)
	go func() { criu <- a.criu.Version(a.ctx) }()
	v, _ := a.runc.Version(a.ctx)
	return store.ThisNode(a.env.CPUInfo, v.Text, <-criu)
}

func (a *app) crash(point string) {
	if a.env.Crash != nil {
		a.env.Crash(point)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
