package runc

import (
	"context"
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

// Proc names one process for as long as it lives: its pid and its start time (in clock
// ticks since boot, /proc/<pid>/stat field 22), so that a pid reused by another process
// is never taken for it.
type Proc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// ProcOf reads the start time of a live pid.
func ProcOf(pid int) (Proc, error) {
	f, err := statFields(pid)
	if err != nil {
		return Proc{}, err
	}
	start, err := strconv.ParseUint(f[19], 10, 64) // field 22: fields after comm start at 3
	if err != nil {
		return Proc{}, fmt.Errorf("proc %d: %w", pid, err)
	}
	return Proc{Pid: pid, Start: start}, nil
}

// Alive reports whether p is still running (and is still the same process).
func (p Proc) Alive() bool {
	if p.Pid <= 0 {
		return false
	}
	now, err := ProcOf(p.Pid)
	if err != nil || now.Start != p.Start {
		return false
	}
	f, err := statFields(p.Pid)
	return err == nil && f[0] != "Z" && f[0] != "X"
}

// statFields are the fields of /proc/<pid>/stat after "pid (comm)": state, ppid, pgrp, ...
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, fmt.Errorf("proc %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("proc %d: unreadable stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return nil, fmt.Errorf("proc %d: short stat", pid)
	}
	return f, nil
}

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || f[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Terminate stops a runc that tardis started (in its own process group, as every runc
// tardis runs is) and everything it started, so that nothing outlives it: first the
// others of its group (CRIU), so that runc sees its CRIU fail and undoes what it did
// (runc unmounts its criu-root bind of the rootfs only on its own way out); then, if runc
// has not exited within grace, the whole group. It returns once the group is gone or
// after a last kill.
func Terminate(p Proc, grace time.Duration) {
	if !p.Alive() {
		killGroup(p.Pid)
		return
	}
	end := time.Now().Add(grace)
	killedAny := false
	for time.Now().Before(end) {
		for _, pid := range groupMembers(p.Pid) {
			if pid != p.Pid {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				killedAny = true
			}
		}
		if !p.Alive() || !killedAny {
			break // runc has cleaned up, or it had no CRIU to wait for: nothing to clean up after
		}
		time.Sleep(20 * time.Millisecond)
	}
	killGroup(p.Pid)
}

func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// ErrTimeout is wrapped when runc did not finish before the deadline and was stopped.
var ErrTimeout = errors.New("deadline exceeded")

// runBounded runs cmd in a process group of its own until it ends or ctx does. When ctx
// ends first, atDeadline (when set) is called, then the group is stopped with Terminate
// (CRIU first, runc given grace to clean up) and the error wraps ErrTimeout. started, when
// set, is called with the process as soon as it runs (tardis journals it, so that a tardis
// killed meanwhile leaves a trace of what it started).
func runBounded(ctx context.Context, cmd *exec.Cmd, grace time.Duration, started func(Proc), atDeadline func()) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return err
	}
	p, perr := ProcOf(cmd.Process.Pid)
	if perr != nil {
		p = Proc{Pid: cmd.Process.Pid}
	}
	if started != nil {
		started(p)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		// What is left in its group is not runc's to end: a restored container's processes
		// can be in it.
		return err
	case <-ctx.Done():
	}
	if atDeadline != nil {
		atDeadline()
	}
	stopped := make(chan struct{})
	go func() { Terminate(p, grace); close(stopped) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(grace + 5*time.Second):
		err = errors.New("runc did not exit after SIGKILL")
	}
	<-stopped
	return fmt.Errorf("%w: %w", ErrTimeout, err)
}

// criuLink makes dir/criu run criu, for the runc versions that find CRIU on PATH: a
// two-line script that execs it, rather than a symlink, so that a configured CRIU that is
// itself a wrapper (install.sh's tardis-criu, say) sees its own path as $0.
func criuLink(dir, criu string) error {
	link := filepath.Join(dir, "criu")
	want := "#!/bin/sh\nexec '" + strings.ReplaceAll(criu, "'", `'\''`) + "' \"$@\"\n"
	if b, err := os.ReadFile(link); err == nil && string(b) == want {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("criu link: %w", err)
	}
	tmp := link + ".tmp-" + strconv.Itoa(os.Getpid())
	_ = os.Remove(tmp)
	if err := os.WriteFile(tmp, []byte(want), 0o700); err != nil {
		return fmt.Errorf("criu link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("criu link: %w", err)
	}
	return nil
}
