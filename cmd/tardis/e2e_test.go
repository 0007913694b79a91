package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	tardisrunc "github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/scenario"
)

// TestE2E is the real end-to-end suite: the production tardis binary over the real runc,
// the real CRIU and a containerd of its own, one operator session per script in
// testdata/e2e. It needs root, runc, a CRIU that passes `criu check` and busybox-static
// (and containerd for the containerd and k8s scripts; vagrant/install.sh installs them
// all), and runs only with TARDIS_E2E=1:
//
//	TARDIS_E2E=1 go test -count=1 -run TestE2E -v ./cmd/tardis
//
// Which runc and which containerd it runs against:
//
//	TARDIS_E2E_RUNC        "" or "distro": /usr/sbin/runc (or runc on PATH);
//	                       "latest": the runc in /etc/tardis/runc-latest-path
//	                       (vagrant/install.sh --with-runc-latest); or a runc's path
//	TARDIS_E2E_CONTAINERD  "" or "distro": containerd and ctr on PATH;
//	                       "2": the folder in /etc/tardis/containerd2-path
//	                       (vagrant/install.sh --with-containerd2); or a folder that holds
//	                       containerd, containerd-shim-runc-v2 and ctr
//
// TARDIS_E2E_CGROUP2=1 runs the runc scripts in a mount namespace whose /sys/fs/cgroup
// is cgroup v2 (see e2e_cgroup2_test.go); the containerd, Docker and Podman ones skip there.
//
// A runc or containerd asked for by name that is not there fails the test; only the
// defaults, when missing, skip it (or its containerd scripts). The containerd's folder
// comes first on PATH after the real runc and CRIU, so that containerd starts its own
// containerd-shim-runc-v2. Each containerd gets a config of its version (version 2 for
// containerd 1.x, version 3 for 2.x).
//
// TARDIS_E2E_TARDIS=PATH runs a prebuilt tardis instead of building one (vagrant/vm.sh).
//
// Every script gets:
//
//	$TARDIS   the tardis binary built from this package's main
//	$RUNC     the real runc            $CRIU  a CRIU that passes `criu check`
//	$BUSYBOX  busybox-static           $RUNC_ROOT  runc's --root for the script
//	$CONTAINERD, $CTR  containerd and ctr, when installed (condition [containerd])
//	conditions [docker] and [podman]: docker.io and podman are installed, for the
//	scripts that start a dockerd or run podman of their own (e2e_docker_test.go)
//	$RUNC_VERSION, $CONTAINERD_VERSION  their versions ("1.5.3", "2.4.2")
//	$RUNC_VERSION_RE  $RUNC_VERSION as a regular expression (1\.1\.5\+ds1)
//	TARDIS_CONFIG (an empty file), TARDIS_RUNC, TARDIS_CRIU, and TARDIS_STATE_DIR,
//	TARDIS_CHECKPOINT_ROOT, TARDIS_WORK_DIR, TARDIS_LOG_FILE under $WORK
//	($WORK/state, $WORK/ckpt, $WORK/work, $WORK/tardis.log).
//
// TARDIS_CRIU is the CRIU, for every runc, as the README configures tardis: tardis hands
// it to runc 1.1 as `--criu` and to runc 1.2 and later (which run the `criu` on their
// PATH; 1.4 and later reject `--criu`) through PATH. PATH leads to the real runc and CRIU
// too (the fake ones of the scenario suite are taken off it), for the programs that look
// for `criu` there themselves (containerd 2.x's CRI, a caller's own runc). Conditions: [containerd], [containerd2] (containerd 2.x), [runc-criu-option]
// (runc < 1.2), [runc-on-default-path] (the runc under test is the one tardis finds on
// its default PATH when its caller gives none, as Podman's kill and delete do: where it
// is not, a script must name it in TARDIS_RUNC), [cgroup2] (/sys/fs/cgroup is cgroup
// v2). Everything a script starts
// (containers under its runc roots, mounts, containerd and its shims, background
// programs) is removed at its end, also when it fails.
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
	cgroup2Tier, outer := e2eCgroup2(t) // e2e_cgroup2_test.go
	if outer {
		return // the tier ran in its own mount namespace
	}
	tools, reason := findE2ETools()
	if msg, ok := strings.CutPrefix(reason, e2eFatal); ok {
		t.Fatal(msg)
	} else if reason != "" {
		t.Skip(reason)
	}
	if cgroup2Tier { // a partial cgroup v2: no controller a container manager needs
		tools.containerd, tools.ctr, tools.containerdDir, tools.containerdVersion = "", "", "", ""
		tools.noManagers = true
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
	t.Logf("tardis %s, runc %s (%s), criu %s, busybox %s, containerd %s (%s, shim and ctr from %s)",
		tools.tardis, tools.runc, tools.runcVersion, tools.criu, tools.busybox,
		tools.containerd, tools.containerdVersion, tools.containerdDir)
	testscript.Run(t, e2eParams(tools))
}

type e2eTools struct {
	tardis, runc, criu, busybox, containerd, ctr string
	runcVersion, containerdVersion               string // "1.1.5", "2.4.2"
	containerdDir                                string // containerd's folder, first on its PATH
	noManagers                                   bool   // Docker and Podman scripts skip (cgroup v2 tier)
}

// runcTakesCriu says whether this runc takes the global `--criu` option and uses it:
// runc 1.1 does; 1.2 and 1.3 accept and ignore it, 1.4 and later reject it. Those run
// the `criu` on their PATH.
func (tl e2eTools) runcTakesCriu() bool { return versionBelow(tl.runcVersion, 1, 2) }

// runcOnDefaultPath says whether the runc under test is the first runc on tardis's
// default PATH (runc.DefaultPath), the one tardis runs when neither its configuration nor
// its caller's PATH names another.
func (tl e2eTools) runcOnDefaultPath() bool {
	for _, dir := range filepath.SplitList(tardisrunc.DefaultPath) {
		st, err := os.Stat(filepath.Join(dir, "runc"))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		under, err := os.Stat(tl.runc)
		return err == nil && os.SameFile(st, under)
	}
	return false
}

// containerd2 says whether the containerd is 2.x or later (config version 3).
func (tl e2eTools) containerd2() bool {
	return tl.containerd != "" && !versionBelow(tl.containerdVersion, 2, 0)
}

// versionBelow says whether version v ("1.5.3", "1.1.5+ds1") is below major.minor; an
// unreadable version counts as below.
func versionBelow(v string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(v, "%d.%d", &ma, &mi); err != nil {
		return true
	}
	return ma < major || (ma == major && mi < minor)
}

var (
	runcVersionRe       = regexp.MustCompile(`(?m)^runc version v?(\d+\.\d+\.\d+\S*)`)
	containerdVersionRe = regexp.MustCompile(`^containerd \S+ v?(\d+\.\d+\.\d+\S*)`)
)

// toolVersion runs `prog --version` and returns what re's first group finds in it.
func toolVersion(prog string, re *regexp.Regexp) (string, error) {
	out, err := exec.Command(prog, "--version").CombinedOutput()
	if err != nil {
		if out = bytes.TrimSpace(out); len(out) > 0 {
			err = fmt.Errorf("%v: %s", err, out)
		}
		return "", fmt.Errorf("%s --version: %v", prog, err)
	}
	m := re.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s --version: no version in %q", prog, out)
	}
	return string(m[1]), nil
}

// recorded reads the first line of a file that vagrant/install.sh writes (/etc/tardis/...).
func recorded(file, option string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(b)) == "" {
		return "", fmt.Errorf("%s: %v (run vagrant/install.sh %s)", file, err, option)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// e2eFatal marks a reason of findE2ETools that must fail the test, not skip it: a runc
// or containerd asked for by name that cannot be used.
const e2eFatal = "FATAL: "

// findE2ETools finds the real programs, or says why the suite cannot run.
func findE2ETools() (e2eTools, string) {
	var tl e2eTools
	switch want := os.Getenv("TARDIS_E2E_RUNC"); want {
	case "", "distro":
		tl.runc = "/usr/sbin/runc"
		if _, err := os.Stat(tl.runc); err != nil {
			p, err := lookPathOutsideTestscript("runc")
			if err != nil {
				return tl, "the end-to-end suite needs runc (/usr/sbin/runc or runc on PATH)"
			}
			tl.runc = p
		}
	case "latest":
		p, err := recorded("/etc/tardis/runc-latest-path", "--with-runc-latest")
		if err != nil {
			return tl, e2eFatal + "TARDIS_E2E_RUNC=latest: " + err.Error()
		}
		tl.runc = p
	default:
		tl.runc = want
	}
	v, err := toolVersion(tl.runc, runcVersionRe)
	if err != nil {
		return tl, e2eFatal + "runc under test: " + err.Error()
	}
	tl.runcVersion = v
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
	switch want := os.Getenv("TARDIS_E2E_CONTAINERD"); want {
	case "", "distro":
		tl.containerd, _ = lookPathOutsideTestscript("containerd")
		tl.ctr, _ = lookPathOutsideTestscript("ctr")
		if tl.containerd != "" {
			tl.containerdDir = filepath.Dir(tl.containerd)
		}
	default:
		dir := want
		if want == "2" || want == "latest" {
			if dir, err = recorded("/etc/tardis/containerd2-path", "--with-containerd2"); err != nil {
				return tl, e2eFatal + "TARDIS_E2E_CONTAINERD=" + want + ": " + err.Error()
			}
		}
		for _, name := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
			if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode()&0o111 == 0 {
				return tl, fmt.Sprintf("%sTARDIS_E2E_CONTAINERD=%s: %s has no %s", e2eFatal, want, dir, name)
			}
		}
		tl.containerdDir = dir
		tl.containerd, tl.ctr = filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr")
	}
	if tl.containerd != "" {
		v, err := toolVersion(tl.containerd, containerdVersionRe)
		if err != nil {
			return tl, e2eFatal + "containerd under test: " + err.Error()
		}
		tl.containerdVersion = v
	}
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
			// Then containerd's own folder: containerd starts the containerd-shim-runc-v2
			// it finds first on its PATH, which must be its own version's.
			path := []string{bin}
			if tl.containerdDir != "" {
				path = append(path, tl.containerdDir)
			}
			path = append(path, realPath())
			vars := map[string]string{
				"PATH":                   strings.Join(path, string(filepath.ListSeparator)),
				"TARDIS":                 tl.tardis,
				"RUNC":                   tl.runc,
				"RUNC_VERSION":           tl.runcVersion,
				"RUNC_VERSION_RE":        regexp.QuoteMeta(tl.runcVersion),
				"CRIU":                   tl.criu,
				"BUSYBOX":                tl.busybox,
				"CONTAINERD":             tl.containerd,
				"CONTAINERD_VERSION":     tl.containerdVersion,
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
			case "docker": // e2e_docker_test.go
				return !tl.noManagers && dockerCondition(), nil
			case "podman":
				return !tl.noManagers && podmanCondition(), nil
			case "containerd2":
				return tl.containerd2(), nil
			case "runc-criu-option":
				return tl.runcTakesCriu(), nil
			case "runc-on-default-path":
				return tl.runcOnDefaultPath(), nil
			case "cgroup2":
				return isCgroup2("/sys/fs/cgroup"), nil
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
		"e2e-signal":     cmdE2ESignal,
		"e2e-tree":       cmdE2ETree,
		"e2e-mounts":     cmdE2EMounts,
		"e2e-criu":       cmdE2ECriu,
		"k8s":            cmdK8s, // e2e_k8s_test.go: containerd CRI + crictl
	} {
		cmds[name] = f
	}
	for name, f := range dockerCmds() { // e2e_docker_test.go: Docker and Podman
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
	// A runc (and its CRIU, in its process group) that outlived the tardis that started it
	// when a script failed half-way: nothing of a script may outlive it.
	own := syscall.Getpgrp()
	for _, pid := range pidsWithArgContaining(c.work) {
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid != own && pgid > 1 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
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

// pidsWithArgContaining lists the processes one of whose arguments contains s.
func pidsWithArgContaining(s string) []int {
	return pidsWhose(func(args []string) bool {
		return slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, s) })
	})
}

// pidsWithArg lists the processes with arg among their arguments.
func pidsWithArg(arg string) []int {
	return pidsWhose(func(args []string) bool { return slices.Contains(args, arg) })
}

// pidsWhose lists the processes (but this one) whose arguments match.
func pidsWhose(match func(args []string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && match(strings.Split(string(b), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
