package fakerunc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A container runs its process for real when the fake runc's environment has
// FAKERUNC_REAL_PROCESS=1 (at create, run or restore): process.args is started, detached in
// a session of its own, in the bundle directory, with the bundle's process.env plus the
// FAKECUDA_* variables of the fake runc's own environment, and its output (stdout and
// stderr) in <root>/<id>/output. The fake waits (up to 10 s) for the process's first line
// of output, its sign that it is ready (cudaproc prints "ready"), or its exit.
//
// The session stands for the container's cgroup and pid namespace: `ps` lists its live
// processes, a checkpoint (without --leave-running) and `delete --force` kill them all
// (SIGKILL), `kill` signals the init (or with --all every process of the session), and once
// the init has died the rest of the session is killed, as the kernel does when a pid
// namespace's init dies. A container whose init has died is "stopped" in `state`.
//
// `restore` starts process.args again with FAKERUNC_RESTORED=<image path> added to its
// environment: the process can tell that it stands for one CRIU brought back from those
// images (cudaproc then starts with its CUDA state suspended, as cuda-checkpoint left it).
const (
	realEnv     = "FAKERUNC_REAL_PROCESS"
	restoredEnv = "FAKERUNC_RESTORED"
	readyWait   = 10 * time.Second
	deathWait   = 5 * time.Second
)

// wantsReal reports whether containers made now run their process for real.
func wantsReal() bool { return os.Getenv(realEnv) == "1" }

// startReal starts the container's process for real; restoredFrom, when set, is the image
// path of a restore.
func (r *fakerunc) startReal(c *container, env []string, restoredFrom string) error {
	if len(c.Args) == 0 {
		return errors.New("process.args must not be empty")
	}
	path, err := exec.LookPath(c.Args[0])
	if err != nil {
		return fmt.Errorf("exec: %q: executable file not found in $PATH", c.Args[0])
	}
	if err := os.MkdirAll(r.dir(c.ID), 0o711); err != nil {
		return err
	}
	outPath := filepath.Join(r.dir(c.ID), "output")
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FAKECUDA_") || strings.HasPrefix(kv, "FAKESMI_") {
			env = append(env, kv)
		}
	}
	if restoredFrom != "" {
		env = append(env, restoredEnv+"="+restoredFrom)
	}
	cmd := exec.Command(path, c.Args[1:]...)
	cmd.Args[0] = c.Args[0]
	cmd.Env, cmd.Dir = env, c.Bundle
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.Pid, c.Real = cmd.Process.Pid, true
	c.Start = procStart(c.Pid)
	// Reap it if it ends while the fake still runs; once the fake exits, init does.
	go func() { _ = cmd.Wait() }()
	for end := time.Now().Add(readyWait); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(outPath); bytes.IndexByte(b, '\n') >= 0 || !c.alive() {
			return nil
		}
	}
	return fmt.Errorf("fakerunc: %s said nothing within %s", c.Args[0], readyWait)
}

// procStat is a process's /proc/PID/stat fields after the command name: [0] is its
// state, [3] its session, [19] its start time; nil when the process is gone.
func procStat(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil
	}
	return f
}

func procStart(pid int) string {
	if f := procStat(pid); f != nil {
		return f[19]
	}
	return ""
}

// liveStat is procStat of a process that is neither gone nor a zombie.
func liveStat(pid int) []string {
	f := procStat(pid)
	if f == nil || f[0] == "Z" || f[0] == "X" {
		return nil
	}
	return f
}

// alive reports whether the container's real init still runs (the same process: its start
// time is the one recorded).
func (c *container) alive() bool {
	f := liveStat(c.Pid)
	return f != nil && f[19] == c.Start
}

// members are the live processes of the container, the init first; none once the init
// has died.
func (c *container) members() []int {
	if !c.alive() {
		return nil
	}
	return c.session()
}

// session lists the live processes of the init's session, in pid order (the init, which
// leads it, first).
func (c *container) session() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	sid := strconv.Itoa(c.Pid)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := liveStat(pid); f != nil && f[3] == sid && (pid != c.Pid || f[19] == c.Start) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// signalReal sends sig to the init, or to every process of the container with all; a
// signal that ends the init ends the whole container. It reports whether the init is gone.
func (c *container) signalReal(sig syscall.Signal, all bool) bool {
	targets := []int{c.Pid}
	if all {
		targets = c.members()
	}
	for _, pid := range targets {
		_ = syscall.Kill(pid, sig)
	}
	if terminates(sig) {
		for end := time.Now().Add(deathWait); time.Now().Before(end) && c.alive(); time.Sleep(5 * time.Millisecond) {
		}
	}
	if c.alive() {
		return false
	}
	c.killReal()
	return true
}

// killReal kills every process of the container and waits (up to 5 s) until they are gone.
func (c *container) killReal() {
	if !c.Real {
		return
	}
	for end := time.Now().Add(deathWait); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		left := c.session()
		if len(left) == 0 {
			return
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
