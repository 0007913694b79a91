package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/state"
)

// bench is one run of the harness: its tools, its directories, and what it must undo.
type bench struct {
	ctx      context.Context
	work     string // everything of the run lives under it
	runcRoot string // runc's --root for every container of the run
	runc     string
	criu     string
	tardis   string
	floor    string // the Go exec floor
	memhog   string
	busybox  string
	env      []string // environment of every tool run (tardis's settings included)

	stateDir, ckptRoot string

	mu     sync.Mutex
	mounts []string // overlay mount points still mounted
}

// Directories of the run.
func (b *bench) path(elem ...string) string {
	return filepath.Join(append([]string{b.work}, elem...)...)
}

// setupEnv builds the environment every tool gets: this process's, without any TARDIS_
// variable, plus tardis's settings pointing into the run's directory.
func (b *bench) setupEnv() error {
	b.stateDir, b.ckptRoot = b.path("state"), b.path("ckpt")
	cfg := b.path("tardis.toml")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		return err
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TARDIS_") {
			b.env = append(b.env, kv)
		}
	}
	b.env = append(b.env,
		"TARDIS_CONFIG="+cfg,
		"TARDIS_RUNC="+b.runc,
		"TARDIS_CRIU="+b.criu,
		"TARDIS_STATE_DIR="+b.stateDir,
		"TARDIS_CHECKPOINT_ROOT="+b.ckptRoot,
		"TARDIS_WORK_DIR="+b.path("tardis-work"),
		"TARDIS_LOG_FILE="+b.path("tardis.log"),
	)
	return nil
}

// goBuild builds a one-file program written to a temporary directory.
func (b *bench) goBuild(name, source, out string, static bool) error {
	dir := b.path("src", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(tinyGoMod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(source), 0o644); err != nil {
		return err
	}
	cmd := exec.Command(goTool(), "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=")
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", name, err, o)
	}
	return nil
}

// buildTardis builds ./cmd/tardis of the module the harness is run from.
func (b *bench) buildTardis(out string) error {
	cmd := exec.Command(goTool(), "build", "-o", out, "github.com/tardis-runtime/tardis/cmd/tardis")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build does
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build of tardis (run the harness from the tardis module, or give -tardis): %v: %s", err, o)
	}
	return nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// run runs a tool to completion with stdin from /dev/null and its output captured, and
// returns how long it took from just before the fork to the end of the wait.
func (b *bench) run(bin string, args ...string) (time.Duration, error) {
	return b.runIO(nil, nil, nil, bin, args...)
}

// runIO is run with the given stdio (nil: /dev/null for stdin, captured output) for
// programs that hand it on to a container.
func (b *bench) runIO(stdin, stdout, stderr *os.File, bin string, args ...string) (time.Duration, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = b.env
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if stderr != nil {
		cmd.Stderr = stderr
	}
	// A container may hold on to a captured pipe; do not wait for it to be closed.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return d, fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return d, nil
}

// output runs a tool and returns its stdout.
func (b *bench) output(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = b.env
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return string(out), nil
}

// rootArgs prefixes args with runc's --root of the run.
func (b *bench) rootArgs(args ...string) []string {
	return append([]string{"--root", b.runcRoot}, args...)
}

// status is runc's state of a container, "" when runc does not know it.
func (b *bench) status(id string) string {
	out, err := b.output(b.runc, b.rootArgs("state", id)...)
	if err != nil {
		return ""
	}
	var st struct{ Status string }
	if json.Unmarshal([]byte(out), &st) != nil {
		return ""
	}
	return st.Status
}

// remove ends a container with the real runc (never through tardis: nothing is
// checkpointed on the way out) and removes its tardis state file.
func (b *bench) remove(id string) {
	if b.status(id) != "" {
		_, _ = b.run(b.runc, b.rootArgs("delete", "--force", id)...)
	}
	_ = os.Remove(filepath.Join(b.stateDir, state.Name(b.runcRoot, id)))
}

// stateFile reads tardis's state file of a container.
func (b *bench) stateFile(id string) (*state.File, error) {
	raw, err := os.ReadFile(filepath.Join(b.stateDir, state.Name(b.runcRoot, id)))
	if err != nil {
		return nil, err
	}
	var f state.File
	return &f, json.Unmarshal(raw, &f)
}

// cleanup removes every container under the run's runc root and every mount under its
// directory. It is safe to call more than once.
func (b *bench) cleanup() {
	if out, err := b.output(b.runc, b.rootArgs("list", "-q")...); err == nil {
		for _, id := range strings.Fields(out) {
			if _, err := b.run(b.runc, b.rootArgs("delete", "--force", id)...); err != nil {
				fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
			}
		}
	}
	b.mu.Lock()
	mounts := append([]string{}, b.mounts...)
	b.mounts = nil
	b.mu.Unlock()
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	points, _ := rootfs.MountsUnder(b.work) // cleanup: what can be read is unmounted
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

// watch is a container's stdio as containerd's shim gives it: three pipes (CRIU carries
// pipes over a checkpoint; a host file or /dev/null would not be found in the container's
// mounts). Stdout is drained until its last writer closes, noting when "ready" and the
// first "tick" come out; stderr is appended to the run's container-stderr.log.
type watch struct {
	inR, inW   *os.File // the container's stdin; inW stays open until close
	w, errW    *os.File // write ends handed to the container
	r, errR    *os.File
	ready      chan struct{}
	tick       chan struct{}
	readyAt    time.Time
	tickAt     time.Time
	handedOnce sync.Once
}

func (b *bench) newWatch() (*watch, error) {
	wt := &watch{ready: make(chan struct{}), tick: make(chan struct{})}
	var err error
	if wt.inR, wt.inW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if wt.r, wt.w, err = os.Pipe(); err != nil {
		return nil, err
	}
	if wt.errR, wt.errW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if logf, err := b.containerStderr(); err == nil {
		go func() {
			defer logf.Close()
			_, _ = io.Copy(logf, wt.errR)
		}()
	}
	go func() {
		sc := bufio.NewScanner(wt.r)
		gotReady, gotTick := false, false
		for sc.Scan() {
			now := time.Now()
			switch sc.Text() {
			case "ready":
				if !gotReady {
					gotReady, wt.readyAt = true, now
					close(wt.ready)
				}
			case "tick":
				if !gotTick {
					gotTick, wt.tickAt = true, now
					close(wt.tick)
				}
			}
		}
		_, _ = io.Copy(io.Discard, wt.r)
	}()
	return wt, nil
}

// runWith runs a tool that hands the pipes on to a container.
func (b *bench) runWith(wt *watch, bin string, args ...string) (time.Duration, error) {
	return b.runIO(wt.inR, wt.w, wt.errW, bin, args...)
}

// handedOver closes this process's copies of the container's ends once it holds them.
func (wt *watch) handedOver() {
	wt.handedOnce.Do(func() {
		wt.inR.Close()
		wt.w.Close()
		wt.errW.Close()
	})
}

// close gives up on the pipes (the container is gone or going: a write to them fails).
func (wt *watch) close() {
	wt.handedOver()
	wt.inW.Close()
	wt.r.Close()
	wt.errR.Close()
}

// await waits for ch (ready or tick) for at most d.
func await(ch chan struct{}, what string, d time.Duration) error {
	select {
	case <-ch:
		return nil
	case <-time.After(d):
		return fmt.Errorf("no %q from the container within %s", what, d)
	}
}

// startContainer creates and starts a container with tool (runc or tardis), its stdout a
// watched pipe, and returns the pipe.
func (b *bench) startContainer(tool, id, bundle string) (*watch, error) {
	wt, err := b.newWatch()
	if err != nil {
		return nil, err
	}
	_, err = b.runWith(wt, tool, b.rootArgs("create", "--bundle", bundle, id)...)
	wt.handedOver()
	if err == nil {
		_, err = b.run(tool, b.rootArgs("start", id)...)
	}
	if err != nil {
		wt.close()
		b.remove(id)
		return nil, err
	}
	return wt, nil
}

// containerStderr is where containers' stderr goes (kept for a failed run's diagnosis).
func (b *bench) containerStderr() (*os.File, error) {
	return os.OpenFile(b.path("container-stderr.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

// mountOverlay mounts a fresh overlay of the run's lower layer at mp, its upper directory
// empty or pre-populated (hard links) with the files of the change-set tree.
func (b *bench) mountOverlay(mp, name string, withFiles bool) error {
	up, wk := b.path("ovl", name, "up"), b.path("ovl", name, "wk")
	if err := os.RemoveAll(b.path("ovl", name)); err != nil {
		return err
	}
	for _, d := range []string{up, wk, mp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if withFiles {
		if err := linkTree(b.path("changes"), filepath.Join(up, "data")); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", b.path("lower"), up, wk)
	if err := syscall.Mount("overlay", mp, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", mp, err)
	}
	b.mu.Lock()
	b.mounts = append(b.mounts, mp)
	b.mu.Unlock()
	return nil
}

// unmountOverlay undoes mountOverlay, removing its directories.
func (b *bench) unmountOverlay(mp, name string) error {
	err := syscall.Unmount(mp, 0)
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("umount %s: %w", mp, err)
	}
	b.mu.Lock()
	for i, m := range b.mounts {
		if m == mp {
			b.mounts = append(b.mounts[:i], b.mounts[i+1:]...)
			break
		}
	}
	b.mu.Unlock()
	return os.RemoveAll(b.path("ovl", name))
}

// linkTree makes dst a tree of directories with hard links to src's files.
func linkTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(t, info.Mode().Perm())
		}
		return os.Link(p, t)
	})
}
