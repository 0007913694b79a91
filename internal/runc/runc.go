// Package runc runs the real runc: as a replacement of this process (pass-through), or as
// a child under a deadline for the commands tardis builds itself.
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
	"strings"
	"syscall"
	"time"
)

// GuardEnv is set in runc's environment by tardis. A tardis that finds it set was started
// by tardis itself: the configured runc leads back to tardis, and going on would loop.
const GuardEnv = "TARDIS_EXEC_GUARD"

// ErrSelf means the configured runc is tardis itself.
var ErrSelf = errors.New("the runc to run is tardis itself")

// Resolve finds the real runc: the configured path, or else the first "runc" on PATH that
// is not tardis. isSelf reports whether a path is this very program.
func Resolve(configured, path string, isSelf func(string) bool) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("runc %q: %w", configured, err)
		}
		if isSelf(p) {
			return "", fmt.Errorf("%w: runc = %q", ErrSelf, configured)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "runc")
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		if !isSelf(p) {
			return p, nil
		}
	}
	return "", errors.New(`no runc found on PATH other than tardis itself (set "runc" in the config or TARDIS_RUNC)`)
}

// SameFile reports whether path is the running executable (production's isSelf).
func SameFile(path string) bool {
	self, err := os.Executable()
	if err != nil {
		return false
	}
	a, err1 := os.Stat(self)
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// Runc is the real runc with the caller's global options.
type Runc struct {
	Path   string
	Global []string // the caller's global options but --log/--log-format, first on every call
	// LogArgs is the caller's --log/--log-format. A call whose stderr is captured leaves them
	// out, so that runc's error reaches tardis's warning; a call on the caller's stderr
	// (restore) keeps them, so that runc's own errors reach the caller's log too.
	LogArgs []string
	Env     []string // environment for runc; the guard is added
}

func (r *Runc) env() []string { return append(append([]string{}, r.Env...), GuardEnv+"=1") }

// Exec replaces this process with runc and the caller's argv; it returns only on failure.
func (r *Runc) Exec(args []string) error {
	argv := append([]string{r.Path}, args...)
	err := syscall.Exec(r.Path, argv, r.env())
	return fmt.Errorf("exec %s: %w", r.Path, err)
}

// Forward runs runc with the caller's argv and stdio as a child and returns its exit code
// (128+n when a signal ended it), for commands tardis must follow up.
func (r *Runc) Forward(args []string, stdio Stdio) (int, error) {
	cmd := exec.Command(r.Path, args...)
	cmd.Env = r.env()
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
		return 0, fmt.Errorf("run %s: %w", r.Path, err)
	}
	return 0, nil
}

// ExitError is runc's non-zero exit, with what it said on stderr when it was captured.
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
			if s, err := unquote(after); err == nil {
				return s
			}
			return after
		}
		return l
	}
	return ""
}

func unquote(s string) (string, error) {
	var out string
	err := json.Unmarshal([]byte(s), &out)
	return out, err
}

// ErrTimeout is wrapped when runc did not finish before the deadline and was killed.
var ErrTimeout = errors.New("deadline exceeded")

// Stdio says where a child runc's stdio goes. Nil Stdout/Stderr are captured. Log, when
// set, is a JSON log file for runc in place of the caller's --log (a call on the caller's
// stderr cannot capture runc's error otherwise).
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
	Log                   string
}

// Run runs runc with the global options and args under a deadline. Stdout is returned when
// it was captured. On the deadline the whole process group (runc and its CRIU) is killed.
func (r *Runc) Run(ctx context.Context, timeout time.Duration, stdio Stdio, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	full := append([]string{}, r.Global...)
	switch {
	case stdio.Log != "":
		full = append(full, "--log="+stdio.Log, "--log-format=json")
	case stdio.Stderr != nil:
		full = append(full, r.LogArgs...)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, r.Path, full...)
	cmd.Env = r.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A restored container may inherit a captured pipe; do not wait for it to close.
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdin = stdio.Stdin
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdio.Stdout != nil {
		cmd.Stdout = stdio.Stdout
	}
	if stdio.Stderr != nil {
		cmd.Stderr = stdio.Stderr
	}
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return stdout.Bytes(), fmt.Errorf("runc %s: %w after %s (killed)", strings.Join(args, " "), ErrTimeout, timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			return stdout.Bytes(), fmt.Errorf("runc %s: %w", strings.Join(args, " "), err)
		}
		said := stderr.String()
		if stdio.Log != "" {
			if b, err := os.ReadFile(stdio.Log); err == nil {
				said = string(b)
			}
		}
		return stdout.Bytes(), &ExitError{Args: args, Code: code, Stderr: said}
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("runc %s: %w", strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

// Status is runc's runtime state of a container ("created", "running", "paused",
// "stopped"), or "" when runc does not know the container.
func (r *Runc) Status(ctx context.Context, timeout time.Duration, id string) (string, error) {
	out, err := r.Run(ctx, timeout, Stdio{}, "state", id)
	var ee *ExitError
	if errors.As(err, &ee) && strings.Contains(ee.Stderr, "does not exist") {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var st struct{ Status string }
	if err := json.Unmarshal(out, &st); err != nil {
		return "", fmt.Errorf("runc state %s: %w", id, err)
	}
	return st.Status, nil
}

// Version is the first line of `runc --version` ("runc version 1.1.5").
func (r *Runc) Version(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.Path, "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
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
