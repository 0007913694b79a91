// Package tardis is the runtime: it reads a runc command line, passes everything that is
// not its business to the real runc by exec, and for opted-in containers checkpoints on
// stop and restores on create, falling back to plain runc whenever that path fails.
package tardis

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"

	"github.com/tardis-runtime/tardis/internal/config"
	"github.com/tardis-runtime/tardis/internal/lock"
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
	FS                    afero.Fs               // config, state files and bundles
	IsSelf                func(path string) bool // whether a path is this program
	Mountinfo             string                 // /proc/self/mountinfo
	CPUInfo               string                 // /proc/cpuinfo
	// Crash, when set, is called at every point where tardis may die and must leave
	// nothing half-done (tests inject SIGKILL there); nil in production.
	Crash func(point string)
}

// OS is the real environment.
func OS() Env {
	return Env{
		Args: os.Args, Getenv: os.Getenv, Environ: os.Environ(),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		FS: afero.NewOsFs(), IsSelf: runc.SameFile,
		Mountinfo: "/proc/self/mountinfo", CPUInfo: "/proc/cpuinfo",
	}
}

// Runtime is the real runc as tardis uses it.
type Runtime interface {
	Exec(args []string) error                             // replace tardis with runc
	Forward(args []string, stdio runc.Stdio) (int, error) // run the caller's command as a child
	Run(ctx context.Context, timeout time.Duration, stdio runc.Stdio, args ...string) ([]byte, error)
	Status(ctx context.Context, timeout time.Duration, id string) (string, error)
	Version(ctx context.Context) string
}

// CRIU is what tardis asks of the node's CRIU itself (images are checked by criuimg).
type CRIU interface {
	Version(ctx context.Context) string
}

var (
	_ Runtime = (*runc.Runc)(nil)
	_ CRIU    = runc.Criu{}
)

type app struct {
	env    Env
	cfg    config.Config
	inv    *runcargs.Invocation
	runc   Runtime
	criu   CRIU
	log    *tlog.Logger
	states state.Store
	store  store.Store
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
		store:  store.Store{Root: cfg.CheckpointRoot},
	}
	if p := env.Getenv(removeEnv); p != "" {
		return a.removeRetired(p)
	}
	runcPath, err := runc.Resolve(cfg.Runc, env.Getenv("PATH"), env.IsSelf)
	if err != nil {
		a.log.Error("cannot run runc", err)
		fmt.Fprintf(env.Stderr, "tardis: %v\n", err)
		return ExitRefused
	}
	r := &runc.Runc{Path: runcPath, Env: env.Environ}
	r.Global, r.LogArgs = globalArgs(inv.Global, cfg.Criu)
	a.runc, a.criu = r, runc.Criu{Path: cfg.Criu}
	if cfgErr != nil {
		fmt.Fprintf(env.Stderr, "tardis: warning: %v; passing every command to runc unchanged\n", cfgErr)
		a.log.Warn("configuration unusable; passing every command to runc unchanged", cfgErr, "config", path)
		return a.passThrough()
	}
	if parseErr != nil {
		return a.passThrough() // runc says what is wrong, in its own words
	}
	switch inv.Command {
	case "create", "run":
		return a.create()
	case "start":
		return a.start()
	case "kill":
		return a.kill()
	case "delete":
		return a.delete()
	}
	return a.passThrough()
}

// globalArgs rebuilds the caller's global options for the commands tardis builds; the
// log options are kept apart (see runc.Runc.LogArgs).
func globalArgs(g runcargs.Global, criu string) (global, logArgs []string) {
	if g.Root != "" {
		global = append(global, "--root="+g.Root)
	}
	if g.Debug {
		global = append(global, "--debug")
	}
	if g.SystemdCgroup {
		global = append(global, "--systemd-cgroup")
	}
	if g.Rootless != "" {
		global = append(global, "--rootless="+g.Rootless)
	}
	if g.Criu != "" {
		criu = g.Criu
	}
	if criu != "" {
		global = append(global, "--criu="+criu)
	}
	if g.Log != "" {
		logArgs = append(logArgs, "--log="+g.Log)
	}
	if g.LogFormat != "" {
		logArgs = append(logArgs, "--log-format="+g.LogFormat)
	}
	return global, logArgs
}

// passThrough replaces tardis with runc and the caller's argv, so that pid, stdio, fds,
// signals and exit code are runc's.
func (a *app) passThrough() int {
	err := a.runc.Exec(a.inv.Args)
	a.log.Error("cannot run runc", err)
	fmt.Fprintf(a.env.Stderr, "tardis: %v\n", err)
	return ExitRefused
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

// stateOf reads the state file of the container named on the command line; nil when the
// container did not opt in (or its id cannot name a file, so it could not have).
func (a *app) stateOf() *state.File {
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
	a.log.Key = sf.Key
	return sf
}

func (a *app) writeState(sf *state.File) {
	sf.Updated = time.Now().UTC()
	if err := a.states.Write(sf); err != nil {
		a.log.Warn("cannot write state file", err)
	}
}

// lockKey serialises operations on a key.
func (a *app) lockKey(key string) (*lock.Lock, error) {
	return lock.Acquire(filepath.Join(a.cfg.StateDir, "locks"), key, a.cfg.Timeouts.Lock.Duration)
}

// workDir is a fresh directory for CRIU's logs of one operation on a key.
func (a *app) workDir(key, op string) (string, error) {
	dir := filepath.Join(a.cfg.WorkDir, key, op+"-"+time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	return dir, nil
}

// removeEnv asks a tardis started by tardis to remove a retired checkpoint and exit.
const removeEnv = "TARDIS_REMOVE_RETIRED"

// removeLater removes a retired checkpoint in a detached tardis process, so that the
// create that restored from it does not wait for gigabytes to be deleted. What it leaves
// (if it dies) the key's next natural exit or `tardisctl gc` removes.
func (a *app) removeLater(path string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("remove %s later: %w", path, err)
	}
	cmd := exec.Command(self)
	cmd.Args[0] = "tardis"
	cmd.Env = append(slices.DeleteFunc(slices.Clone(a.env.Environ), func(kv string) bool {
		return strings.HasPrefix(kv, removeEnv+"=")
	}), removeEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("remove %s later: %w", path, err)
	}
	return cmd.Process.Release()
}

// removeRetired is the detached process removeLater starts.
func (a *app) removeRetired(path string) int {
	if !a.store.IsRetired(path) {
		a.log.Error("refusing to remove what is not a retired checkpoint", errors.New(path))
		return ExitRefused
	}
	if err := os.RemoveAll(path); err != nil {
		a.log.Warn("cannot remove a retired checkpoint", err)
		return 1
	}
	return 0
}

// statusTimeout bounds `runc state`, which only reads a file under runc's root.
const statusTimeout = 10 * time.Second

// status is runc's runtime state of a container ("" when runc does not know it).
func (a *app) status(id string) (string, error) {
	return a.runc.Status(a.ctx, statusTimeout, id)
}

// thisNode describes this machine for a manifest or a restore's compatibility check.
// Asking runc and CRIU for their versions costs a process each: they run side by side.
func (a *app) thisNode() store.Node {
	criu := make(chan string, 1)
	go func() { criu <- a.criu.Version(a.ctx) }()
	runcVersion := a.runc.Version(a.ctx)
	return store.ThisNode(a.env.CPUInfo, runcVersion, <-criu)
}

func (a *app) crash(point string) {
	if a.env.Crash != nil {
		a.env.Crash(point)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
