package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ErrTimeout is wrapped when a tool did not finish before its deadline and was killed.
var ErrTimeout = errors.New("deadline exceeded")

// ToolError is a tool's non-zero exit, with the tool's own message.
type ToolError struct {
	Tool string // the tool's base name: cuda-checkpoint, nvidia-smi
	Args []string
	Code int
	Msg  string // its last line on stderr, or else on stdout
}

func (e *ToolError) Error() string {
	msg := fmt.Sprintf("%s exit status %d", e.Tool, e.Code)
	if e.Msg != "" {
		msg += ": " + e.Msg
	}
	return msg
}

// run runs a tool under a deadline and returns its stdout. On the deadline its whole
// process group is killed.
func (g *GPU) run(ctx context.Context, timeout time.Duration, path string, args ...string) (string, error) {
	name := filepath.Base(path)
	line := name + " " + strings.Join(args, " ")
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = g.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return stdout.String(), fmt.Errorf("%s: %w after %s (killed)", line, ErrTimeout, timeout)
		}
		return stdout.String(), fmt.Errorf("%s: %w", line, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		msg := lastLine(stderr.String())
		if msg == "" {
			msg = lastLine(stdout.String())
		}
		return stdout.String(), &ToolError{Tool: name, Args: args, Code: ee.ExitCode(), Msg: msg}
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%s: %w", line, err)
	}
	return stdout.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
