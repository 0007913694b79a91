package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/scenario"
)

// TestE2E is the real end-to-end suite: the production tardis binary over the real runc,
// the real CRIU and a containerd of its own, one operator session per script in
// testdata/e2e. It needs root, runc, a CRIU that passes `criu check` and busybox-static
// (and containerd for two scripts; vagrant/install.sh installs them all), and runs only
// with TARDIS_E2E=1:
//
//	TARDIS_E2E=1 go test -count=1 -run TestE2E -v ./cmd/tardis
//
// TARDIS_E2E_TARDIS=PATH runs a prebuilt tardis instead of building one (vagrant/vm.sh).
//
// Every script gets:
//
//	$TARDIS   the tardis binary built from this package's main
//	$RUNC     the real runc            $CRIU  a CRIU that passes `criu check`
//	$BUSYBOX  busybox-static           $RUNC_ROOT  runc's --root for the script
//	$CONTAINERD, $CTR  containerd and ctr, when installed (condition [containerd])
//	TARDIS_CONFIG (an empty file), TARDIS_RUNC, TARDIS_CRIU, and TARDIS_STATE_DIR,
//	TARDIS_CHECKPOINT_ROOT, TARDIS_WORK_DIR, TARDIS_LOG_FILE under $WORK
//	($WORK/state, $WORK/ckpt, $WORK/work, $WORK/tardis.log).
//
// PATH leads to the real runc and CRIU (the fake ones of the scenario suite are taken
// off it). Everything a script starts (containers under its runc roots, mounts, containerd
// and its shims, background programs) is removed at its end, also when it fails.
func TestE2E(t *testing.T) {
	if os.Getenv("TARDIS_E2E") != "1" {
		t.Skip("the real end-to-end suite runs only with TARDIS_E2E=1 (as root, with runc, CRIU, busybox-static and containerd: see vagrant/install.sh)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the end-to-end suite needs Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("the end-to-end suite needs root (runc and CRIU run containers for real)")
	}
	tools, reason := findE2ETools()
	if reason != "" {
		t.Skip(reason)
	}
	bin := t.TempDir()
	tools.tardis = filepath.Join(bin, "tardis")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	build := exec.Command(gobin, "build", "-o", tools.tardis, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build does
	if p := os.Getenv("TARDIS_E2E_TARDIS"); p != "" {
		tools.tardis = p // a prebuilt tardis: the VM of vagrant/vm.sh has no Go
	} else if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of tardis: %v\n%s", err, out)
	}
	t.Logf("tardis %s, runc %s, criu %s, busybox %s, containerd %s",
		tools.tardis, tools.runc, tools.criu, tools.busybox, tools.containerd)
	testscript.Run(t, e2eParams(tools))
}

type e2eTools struct {
	tardis, runc, criu, busybox, containerd, ctr string
}

// findE2ETools finds the real programs, or says why the suite cannot run.
func findE2ETools() (e2eTools, string) {
	var tl e2eTools
	tl.runc = "/usr/sbin/runc"
	if _, err := os.Stat(tl.runc); err != nil {
		p, err := lookPathOutsideTestscript("runc")
		if err != nil {
			return tl, "the end-to-end suite needs runc (/usr/sbin/runc or runc on PATH)"
		}
		tl.runc = p
	}
	if b, err := os.ReadFile("/etc/tardis/criu-path"); err == nil && strings.TrimSpace(string(b)) != "" {
		tl.criu = strings.TrimSpace(string(b))
	} else if p, err := lookPathOutsideTestscript("criu"); err == nil {
		tl.criu = p
	} else {
		return tl, "the end-to-end suite needs CRIU (/etc/tardis/criu-path or criu on PATH; vagrant/install.sh finds one)"
	}
	if out, err := exec.Command(tl.criu, "check").CombinedOutput(); err != nil {
		return tl, fmt.Sprintf("the end-to-end suite needs a CRIU that works on this kernel; `%s check` fails: %v: %s",
			tl.criu, err, strings.TrimSpace(string(out)))
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			tl.busybox = p
			break
		}
	}
	if tl.busybox == "" {
		return tl, "the end-to-end suite needs busybox-static (/bin/busybox)"
	}
	// Without containerd the scripts that need it skip themselves ([!containerd]).
	tl.containerd, _ = lookPathOutsideTestscript("containerd")
	tl.ctr, _ = lookPathOutsideTestscript("ctr")
	return tl, ""
}

// realPath is PATH without testscript's directory of fake programs (the scenario suite's
// tardis, runc and criu are all this test binary).
func realPath() string {
	var keep []string
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" || strings.Contains(dir, "testscript-main") {
			continue
		}
		keep = append(keep, dir)
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}

func lookPathOutsideTestscript(name string) (string, error) {
	for _, dir := range filepath.SplitList(realPath()) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// e2eVars are the variables a script's own programs (started by the e2e-* commands, not
// by exec) get from the script's environment.
var e2eVars = []string{
	"PATH", "HOME", "TMPDIR", "WORK", "RUNC_ROOT",
	"TARDIS_CONFIG", "TARDIS_RUNC", "TARDIS_CRIU", "TARDIS_CHECKPOINT_ROOT", "TARDIS_STATE_DIR",
	"TARDIS_WORK_DIR", "TARDIS_LOG_FILE", "TARDIS_CHECKPOINT_ON", "TARDIS_CHECKPOINT_ARGS",
	"TARDIS_RESTORE_ARGS", "TARDIS_CHECKPOINT_TIMEOUT", "TARDIS_RESTORE_TIMEOUT",
	"TARDIS_VALIDATE_TIMEOUT", "TARDIS_NETWORKFS_TIMEOUT", "TARDIS_LOCK_TIMEOUT",
	"TARDIS_NETWORKFS_ROOTS", "TARDIS_TENANT", "TARDIS_TENANT_BY_RUNC_ROOT", "TARDIS_SIGNING_KEY",
	"CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE",
}

// childEnv is the environment of a program an e2e-* command starts: this process's own,
// with the script's values of e2eVars.
func childEnv(ts *testscript.TestScript) []string {
	skip := map[string]bool{}
	for _, k := range e2eVars {
		skip[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !skip[k] && !strings.HasPrefix(k, "TARDIS_") {
			env = append(env, kv)
		}
	}
	for _, k := range e2eVars {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func e2eParams(tl e2eTools) testscript.Params {
	return testscript.Params{
		Dir:                 "../../testdata/e2e",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			w := e.WorkDir
			// Real runc and CRIU first on PATH, under their own names.
			bin := filepath.Join(w, ".bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				return err
			}
			for name, target := range map[string]string{"runc": tl.runc, "criu": tl.criu} {
				if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
					return err
				}
			}
			vars := map[string]string{
				"PATH":                   bin + string(filepath.ListSeparator) + realPath(),
				"TARDIS":                 tl.tardis,
				"RUNC":                   tl.runc,
				"CRIU":                   tl.criu,
				"BUSYBOX":                tl.busybox,
				"CONTAINERD":             tl.containerd,
				"CTR":                    tl.ctr,
				"RUNC_ROOT":              filepath.Join(w, "runc"),
				"TARDIS_CONFIG":          filepath.Join(w, "tardis.toml"),
				"TARDIS_RUNC":            tl.runc,
				"TARDIS_CRIU":            tl.criu,
				"TARDIS_STATE_DIR":       filepath.Join(w, "state"),
				"TARDIS_CHECKPOINT_ROOT": filepath.Join(w, "ckpt"),
				"TARDIS_WORK_DIR":        filepath.Join(w, "work"),
				"TARDIS_LOG_FILE":        filepath.Join(w, "tardis.log"),
			}
			for k, v := range vars {
				e.Setenv(k, v)
			}
			c := &e2eCleanup{work: w, runc: tl.runc, ctr: tl.ctr, logf: e.T().Log, named: map[string]*exec.Cmd{}}
			e.Values[e2eCleanupKey{}] = c
			e.Defer(c.run)
			return os.WriteFile(filepath.Join(w, "tardis.toml"), nil, 0o644)
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "containerd":
				return tl.containerd != "" && tl.ctr != "", nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: e2eCmds(),
	}
}

// e2eCmds are the shared scenario commands (statefile, checkpoint, ...) and the e2e ones.
func e2eCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	cmds := scenario.Cmds()
	for name, f := range map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"e2e-busybox":    cmdE2EBusybox,
		"e2e-bundle":     cmdE2EBundle,
		"e2e-overlay":    cmdE2EOverlay,
		"e2e-umount":     cmdE2EUmount,
		"e2e-io":         cmdE2EIO,
		"e2e-bg":         cmdE2EBg,
		"e2e-bgwait":     cmdE2EBgWait,
		"e2e-waitfor":    cmdE2EWaitFor,
		"e2e-waitnum":    cmdE2EWaitNum,
		"e2e-num":        cmdE2ENum,
		"e2e-cmp":        cmdE2ECmp,
		"e2e-seq":        cmdE2ESeq,
		"e2e-damage":     cmdE2EDamage,
		"e2e-alive":      cmdE2EAlive,
		"e2e-containerd": cmdE2EContainerd,
		"e2e-timings":    cmdE2ETimings,
		"e2e-waitstatus": cmdE2EWaitStatus,
		"k8s":            cmdK8s, // e2e_k8s_test.go: containerd CRI + crictl
	} {
		cmds[name] = f
	}
	return cmds
}

type e2eCleanupKey struct{}

// e2eCleanup is everything a script started, undone at its end whatever happened.
type e2eCleanup struct {
	mu         sync.Mutex
	work       string
	runc, ctr  string
	logf       func(...any)
	mounts     []string    // mount points, unmounted in reverse order
	closers    []*os.File  // pipe ends kept open by the test
	background []*exec.Cmd // e2e-bg programs
	named      map[string]*exec.Cmd
	containerd *exec.Cmd
	ctrAddress string
}

func cleanupOf(ts *testscript.TestScript) *e2eCleanup {
	return ts.Value(e2eCleanupKey{}).(*e2eCleanup)
}

func (c *e2eCleanup) run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopContainerd()
	// Every container under the script's runc roots, whoever made it.
	roots := []string{filepath.Join(c.work, "runc")}
	if subs, err := filepath.Glob(filepath.Join(c.work, "ctr-runc", "*")); err == nil {
		roots = append(roots, subs...)
	}
	for _, root := range roots {
		out, err := exec.Command(c.runc, "--root", root, "list", "-q").Output()
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			if b, err := exec.Command(c.runc, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
				c.logf(fmt.Sprintf("cleanup: runc delete --force %s: %v: %s", id, err, b))
			}
		}
	}
	for _, cmd := range c.background {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(c.mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			c.logf(fmt.Sprintf("cleanup: umount %s: %v", c.mounts[i], err))
		}
	}
	// A mount under $WORK made by anything else (a failed step in the middle).
	points, _ := rootfs.MountsUnder(c.work) // cleanup: what can be read is unmounted
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	for _, f := range c.closers {
		_ = f.Close()
	}
}

// stopContainerd removes the script's containerd tasks and containers with the real runc
// (not through tardis: nothing is checkpointed on the way out), then stops containerd and
// any shim of its that is left.
func (c *e2eCleanup) stopContainerd() {
	if c.containerd == nil {
		return
	}
	ctr := func(args ...string) string {
		cmd := exec.Command(c.ctr, append([]string{"--address", c.ctrAddress, "--namespace", "e2e"}, args...)...)
		out, _ := cmd.Output()
		return string(out)
	}
	if subs, err := filepath.Glob(filepath.Join(c.work, "ctr-runc", "*")); err == nil {
		for _, root := range subs {
			out, _ := exec.Command(c.runc, "--root", root, "list", "-q").Output()
			for _, id := range strings.Fields(string(out)) {
				_ = exec.Command(c.runc, "--root", root, "delete", "--force", id).Run()
			}
		}
	}
	for _, id := range strings.Fields(ctr("task", "ls", "-q")) {
		ctr("task", "delete", "--force", id)
	}
	for _, id := range strings.Fields(ctr("container", "ls", "-q")) {
		ctr("container", "delete", id)
	}
	_ = c.containerd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.containerd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.containerd.Process.Kill()
		<-done
	}
	for _, pid := range pidsWithArg(c.ctrAddress) {
		c.logf(fmt.Sprintf("cleanup: killing leftover shim %d", pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	c.containerd = nil
}

// pidsWithArg lists the processes with arg among their arguments.
func pidsWithArg(arg string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
