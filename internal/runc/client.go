// Package runc is the real runc as tardis calls it, shaped like containerd's go-runc: the
// caller's global options in one struct, one method per verb with an options struct, a
// typed status, typed errors. It is also the one place that knows which runc accepts what
// (version.go). A pass-through replaces tardis with runc (Exec) or runs the caller's argv
// as a child (Forward); the commands tardis builds itself run under a context deadline in
// a process group of their own, stopped CRIU first when the deadline passes (process.go).
package runc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Global is the caller's global options, as tardis hands them to the commands it builds.
type Global struct {
	Root, Log, LogFormat, Rootless string
	Debug, SystemdCgroup           bool
}

// args are the global options but --log/--log-format (a call whose error tardis reads
// logs elsewhere; see call).
func (g Global) args() []string {
	var a []string
	if g.Root != "" {
		a = append(a, "--root="+g.Root)
	}
	if g.Debug {
		a = append(a, "--debug")
	}
	if g.SystemdCgroup {
		a = append(a, "--systemd-cgroup")
	}
	if g.Rootless != "" {
		a = append(a, "--rootless="+g.Rootless)
	}
	return a
}

// Client is the real runc.
type Client struct {
	Path  string
	Argv0 string // argv[0] for pass-through: the caller's, so runc names itself as it was called
	Global
	Env []string // environment for runc (the guard is added)
	// Criu is the CRIU to use ("" = runc's own choice, criu on PATH); CriuDir is a directory
	// of tardis's own where a "criu" link to it is kept for the runc versions that find CRIU
	// on PATH.
	Criu, CriuDir string
	// Grace is how long runc gets to clean up after its CRIU was stopped at a deadline.
	Grace time.Duration
	// execPath is prepended to PATH for the caller's own commands (see CriuOnPath).
	execPath string

	version *Version
}

// InRoot is the same runc with another --root (for a container an earlier operation left
// under another root).
func (c *Client) InRoot(root string) *Client {
	d := *c
	d.Root = root
	return &d
}

// Status is runc's runtime state of a container (not tardis's state file).
type Status string

// The statuses runc reports.
const (
	Created Status = "created"
	Running Status = "running"
	Paused  Status = "paused"
	Stopped Status = "stopped"
)

// State is what `runc state` says.
type State struct {
	ID      string    `json:"id"`
	Pid     int       `json:"pid"`
	Status  Status    `json:"status"`
	Bundle  string    `json:"bundle"`
	Rootfs  string    `json:"rootfs"`
	Created time.Time `json:"created"`
}

// ErrNotExist is returned by State for a container runc does not know.
var ErrNotExist = errors.New("container does not exist")

// ExitError is runc's non-zero exit, with what it said.
type ExitError struct {
	Args   []string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("runc %s: exit status %d", strings.Join(e.Args, " "), e.Code)
	if s := lastError(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Stdio is where a child runc's stdio goes; nil Stdout/Stderr are captured.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

func (c *Client) env(extraPath string) []string {
	var env []string
	hasPath := false
	for _, kv := range c.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			if v == "" {
				continue
			}
			hasPath = true
			if extraPath != "" {
				kv = "PATH=" + extraPath + ":" + v
			}
		}
		env = append(env, kv)
	}
	if !hasPath {
		p := DefaultPath
		if extraPath != "" {
			p = extraPath + ":" + p
		}
		env = append(env, "PATH="+p)
	}
	return append(env, GuardEnv+"=1")
}

// Exec replaces this process with runc and the caller's argv; it returns only on failure.
func (c *Client) Exec(args []string) error {
	argv := append([]string{c.argv0()}, args...)
	err := syscall.Exec(c.Path, argv, c.env(c.execPath))
	return fmt.Errorf("exec %s: %w", c.Path, err)
}

func (c *Client) argv0() string {
	if c.Argv0 != "" {
		return c.Argv0
	}
	return c.Path
}

// CriuOnPath makes the caller's own commands (a `checkpoint` or `restore` of Docker's or
// Podman's, passed through) find the configured CRIU first on runc's PATH, as the ones
// tardis builds do; the caller's argv is not touched.
func (c *Client) CriuOnPath() error {
	if c.Criu == "" || c.CriuDir == "" {
		return nil
	}
	if err := criuLink(c.CriuDir, c.Criu); err != nil {
		return err
	}
	c.execPath = c.CriuDir
	return nil
}

// Forward runs runc with the caller's argv and stdio as a child and returns its exit code
// (128+n when a signal ended it), for commands tardis must follow up.
func (c *Client) Forward(args []string, stdio Stdio) (int, error) {
	cmd := exec.Command(c.Path, args...)
	cmd.Args[0] = c.argv0()
	cmd.Env = c.env(c.execPath)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", c.Path, err)
	}
	return 0, nil
}

// call is one command tardis builds.
type call struct {
	args       []string // after the global options
	stdio      Stdio
	logFile    string // runc's own JSON log, in place of the caller's --log (read back on failure)
	withLog    bool   // keep the caller's --log/--log-format (a call on the caller's stderr)
	path       string // prepended to PATH
	started    func(Proc)
	atDeadline func()
}

// run runs a call under ctx and returns its stdout (when captured).
func (c *Client) run(ctx context.Context, k call) ([]byte, error) {
	full := c.Global.args()
	switch {
	case k.logFile != "":
		full = append(full, "--log="+k.logFile, "--log-format=json")
	case k.withLog:
		if c.Log != "" {
			full = append(full, "--log="+c.Log)
		}
		if c.LogFormat != "" {
			full = append(full, "--log-format="+c.LogFormat)
		}
	}
	full = append(full, k.args...)
	cmd := exec.Command(c.Path, full...)
	cmd.Env = c.env(k.path)
	// A restored container may inherit a captured pipe; do not wait for it to close.
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdin = k.stdio.Stdin
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if k.stdio.Stdout != nil {
		cmd.Stdout = k.stdio.Stdout
	}
	if k.stdio.Stderr != nil {
		cmd.Stderr = k.stdio.Stderr
	}
	grace := c.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	start := time.Now()
	err := runBounded(ctx, cmd, grace, k.started, k.atDeadline)
	what := "runc " + strings.Join(k.args, " ")
	if errors.Is(err, ErrTimeout) {
		limit := time.Since(start)
		if dl, ok := ctx.Deadline(); ok {
			limit = dl.Sub(start)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w after %s (stopped, CRIU first)", what, ErrTimeout, limit.Round(100*time.Millisecond))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			return stdout.Bytes(), fmt.Errorf("%s: %w", what, err)
		}
		said := stderr.String()
		if k.logFile != "" {
			if b, rerr := os.ReadFile(k.logFile); rerr == nil {
				said = string(b)
			}
		}
		return stdout.Bytes(), &ExitError{Args: k.args, Code: code, Stderr: said}
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w", what, err)
	}
	return stdout.Bytes(), nil
}

// State is `runc state ID`; ErrNotExist when runc does not know the container.
func (c *Client) State(ctx context.Context, id string) (*State, error) {
	out, err := c.run(ctx, call{args: []string{"state", id}})
	var ee *ExitError
	if errors.As(err, &ee) && strings.Contains(ee.Stderr, "does not exist") {
		return nil, fmt.Errorf("runc state %s: %w", id, ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("runc state %s: %w", id, err)
	}
	return &st, nil
}

// Ps is `runc ps --format json ID`: the host pids of every process of the container (its
// cgroup's), none when it has stopped; ErrNotExist when runc does not know the container.
func (c *Client) Ps(ctx context.Context, id string) ([]int, error) {
	out, err := c.run(ctx, call{args: []string{"ps", "--format", "json", id}})
	var ee *ExitError
	if errors.As(err, &ee) && strings.Contains(ee.Stderr, "does not exist") {
		return nil, fmt.Errorf("runc ps %s: %w", id, ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err != nil {
		return nil, fmt.Errorf("runc ps %s: %w", id, err)
	}
	return pids, nil
}

// CheckpointOpts are the options of `runc checkpoint` tardis uses.
type CheckpointOpts struct {
	ImagePath, WorkPath string   // absolute (runc chdirs into the bundle)
	Extra               []string // the node's own checkpoint_args
	Started             func(Proc)
	// AtDeadline, when set, is called when the deadline has passed, before CRIU is
	// stopped: while CRIU still holds the container's processes frozen.
	AtDeadline func()
}

// Checkpoint is `runc checkpoint`: the container's processes are dumped and end.
func (c *Client) Checkpoint(ctx context.Context, id string, o CheckpointOpts) error {
	criu, path, err := c.criuArgs(ctx)
	if err != nil {
		return err
	}
	args := append(criu, "checkpoint", "--image-path="+o.ImagePath, "--work-path="+o.WorkPath)
	args = append(append(args, o.Extra...), id)
	_, err = c.run(ctx, call{args: args, path: path, started: o.Started, atDeadline: o.AtDeadline})
	return err
}

// RestoreOpts are the options of `runc restore --detach` tardis uses.
type RestoreOpts struct {
	Bundle, ImagePath, WorkPath string
	PidFile, ConsoleSocket      string
	NoPivot, NoSubreaper        bool
	Extra                       []string // the node's own restore_args
	Stdio                       Stdio    // the caller's: the restored process keeps them
	LogFile                     string   // runc's own log, so that its error can be named
	Started                     func(Proc)
}

// Args are the words of the restore command after the global options (also for tests).
func (o RestoreOpts) Args(id string) []string {
	args := []string{"restore", "--detach", "--bundle=" + o.Bundle, "--image-path=" + o.ImagePath, "--work-path=" + o.WorkPath}
	if o.PidFile != "" {
		args = append(args, "--pid-file="+o.PidFile)
	}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket="+o.ConsoleSocket)
	}
	if o.NoPivot {
		args = append(args, "--no-pivot")
	}
	if o.NoSubreaper {
		args = append(args, "--no-subreaper")
	}
	return append(append(args, o.Extra...), id)
}

// Restore is `runc restore --detach` on the caller's stdio.
func (c *Client) Restore(ctx context.Context, id string, o RestoreOpts) error {
	criu, path, err := c.criuArgs(ctx)
	if err != nil {
		return err
	}
	_, err = c.run(ctx, call{args: append(criu, o.Args(id)...), stdio: o.Stdio, logFile: o.LogFile,
		path: path, started: o.Started})
	return err
}

// Delete is `runc delete [--force] ID`.
func (c *Client) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := c.run(ctx, call{args: append(args, id)})
	return err
}

// Kill is `runc kill [--all] ID SIGNAL`.
func (c *Client) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := c.run(ctx, call{args: append(args, id, strconv.Itoa(int(sig)))})
	return err
}

// Resume is `runc resume ID`.
func (c *Client) Resume(ctx context.Context, id string) error {
	_, err := c.run(ctx, call{args: []string{"resume", id}})
	return err
}

// Version is runc's version, asked once per process.
func (c *Client) Version(ctx context.Context) (Version, error) {
	if c.version != nil {
		return *c.version, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, "--version")
	cmd.Env = c.env("")
	out, err := cmd.Output()
	if err != nil {
		return Version{}, fmt.Errorf("runc --version: %w", err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, err
	}
	c.version = &v
	return v, nil
}

// criuArgs gives the configured CRIU to runc as this runc accepts it: `--criu` where runc
// honours it (before 1.2), and always a PATH that finds it first as "criu" (runc 1.2 and
// later run the criu on their PATH and ignore or reject --criu).
func (c *Client) criuArgs(ctx context.Context) (args []string, path string, err error) {
	if c.Criu == "" {
		return nil, "", nil
	}
	v, verr := c.Version(ctx)
	if verr == nil && v.HonoursCriuFlag() {
		args = []string{"--criu=" + c.Criu}
	}
	if c.CriuDir != "" {
		if err := criuLink(c.CriuDir, c.Criu); err != nil {
			return nil, "", err
		}
		path = c.CriuDir
	} else if verr != nil || !v.HonoursCriuFlag() {
		path = filepath.Dir(c.Criu) // right when the configured binary is named criu
	}
	return args, path, nil
}

// lastError picks runc's own message out of its stderr (logrus text or JSON lines).
func lastError(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		var rec struct{ Msg string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg != "" {
			return rec.Msg
		}
		if _, after, ok := strings.Cut(l, " msg="); ok {
			var s string
			if json.Unmarshal([]byte(after), &s) == nil {
				return s
			}
			return after
		}
		return l
	}
	return ""
}

// Criu is the node's CRIU binary ("" means "criu" on PATH, as runc does).
type Criu struct{ Path string }

// Version runs `criu --version` ("Version: 4.1.1"); "" when CRIU cannot be run.
func (c Criu) Version(ctx context.Context) string {
	path := c.Path
	if path == "" {
		path = "criu"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
