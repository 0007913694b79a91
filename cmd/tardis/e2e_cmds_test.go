package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

// The e2e-* commands of the end-to-end scripts. Each rejects bad usage with its usage line.

// e2e-busybox DIR: a root filesystem of busybox-static and its applet links.
func cmdE2EBusybox(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: e2e-busybox DIR")
	}
	makeBusybox(ts, ts.MkAbs(args[0]))
}

func makeBusybox(ts *testscript.TestScript, dir string) {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root", "run"} {
		ts.Check(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	src := ts.Getenv("BUSYBOX")
	b, err := os.ReadFile(src)
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755))
	out, err := exec.Command(src, "--list").Output()
	ts.Check(err)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		ts.Check(os.Symlink("busybox", filepath.Join(dir, "bin", applet)))
	}
	ts.Check(os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644))
}

// e2e-bundle DIR [name=value | env:NAME=value ...] -- ARGS...: a bundle whose config.json is
// `runc spec`'s, with no terminal, a writable rootfs, the given annotations (env: ones go to
// process.env, after PATH=/bin) and process args. DIR/rootfs is made a busybox tree unless
// it exists already (an overlay mounted there, say).
func cmdE2EBundle(ts *testscript.TestScript, neg bool, args []string) {
	sep := -1
	for i, a := range args {
		if a == "--" {
			sep = i
			break
		}
	}
	if neg || sep < 1 || sep == len(args)-1 {
		ts.Fatalf("usage: e2e-bundle DIR [annotation=value | env:NAME=value ...] -- ARGS...")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	if out, err := exec.Command(ts.Getenv("RUNC"), "spec", "--bundle", dir).CombinedOutput(); err != nil {
		ts.Fatalf("runc spec: %v: %s", err, out)
	}
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	ts.Check(err)
	var spec map[string]any
	ts.Check(json.Unmarshal(b, &spec))
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = args[sep+1:]
	env := []any{"PATH=/bin"}
	ann := map[string]any{}
	for _, kv := range args[1:sep] {
		if e, ok := strings.CutPrefix(kv, "env:"); ok {
			env = append(env, e)
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			ts.Fatalf("e2e-bundle: %q is not name=value", kv)
		}
		ann[k] = v
	}
	proc["env"] = env
	spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
	if len(ann) > 0 {
		spec["annotations"] = ann
	}
	out, err := json.MarshalIndent(spec, "", "\t")
	ts.Check(err)
	ts.Check(os.WriteFile(p, out, 0o644))
	if _, err := os.Stat(filepath.Join(dir, "rootfs")); os.IsNotExist(err) {
		makeBusybox(ts, filepath.Join(dir, "rootfs"))
	}
}

// e2e-overlay LOWER UPPER WORKDIR MERGED: mounts an overlay (made directories as needed);
// it is unmounted at the end of the script if still mounted.
func cmdE2EOverlay(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: e2e-overlay LOWER UPPER WORKDIR MERGED")
	}
	var abs [4]string
	for i, a := range args {
		abs[i] = ts.MkAbs(a)
		ts.Check(os.MkdirAll(abs[i], 0o755))
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", abs[0], abs[1], abs[2])
	if err := syscall.Mount("overlay", abs[3], "overlay", 0, opts); err != nil {
		ts.Fatalf("mount overlay %s on %s: %v", opts, abs[3], err)
	}
	c := cleanupOf(ts)
	c.mu.Lock()
	c.mounts = append(c.mounts, abs[3])
	c.mu.Unlock()
}

// e2e-umount DIR: unmounts DIR.
func cmdE2EUmount(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: e2e-umount DIR")
	}
	if err := syscall.Unmount(ts.MkAbs(args[0]), 0); err != nil {
		ts.Fatalf("umount %s: %v", args[0], err)
	}
}

func lookProg(ts *testscript.TestScript, prog string) string {
	if strings.Contains(prog, "/") {
		return prog
	}
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		p := filepath.Join(dir, prog)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	ts.Fatalf("%s not found on PATH", prog)
	return ""
}

// cmdOpts are the leading "-NAME VALUE" options of a script command, by NAME.
type cmdOpts map[string]string

// takeOpts takes the leading options of args, each one of names (any other is fatal), and
// returns them and the arguments after them.
func takeOpts(ts *testscript.TestScript, usage string, args []string, names ...string) (cmdOpts, []string) {
	o := cmdOpts{}
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		name := args[0][1:]
		if !slices.Contains(names, name) {
			ts.Fatalf("unknown option %s; usage: %s", args[0], usage)
		}
		o[name], args = args[1], args[2:]
	}
	return o, args
}

// duration is option name as a duration, 0 when it was not given.
func (o cmdOpts) duration(ts *testscript.TestScript, name string) time.Duration {
	v, ok := o[name]
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	ts.Check(err)
	return d
}

// e2e-io [-exit N] [-max DURATION] NAME PROG ARGS...: runs PROG as containerd's shim would,
// with pipes for stdin, stdout and stderr, and waits for it. The pipes outlive PROG (a
// container started or restored by it keeps them): what comes out is appended to
// $WORK/NAME.out and $WORK/NAME.err until the last writer closes. Checks PROG's exit code
// (0 unless -exit; `!` for any non-zero) and that it took at most -max.
func cmdE2EIO(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "e2e-io [-exit N] [-max DURATION] NAME PROG ARGS..."
	opts, args := takeOpts(ts, usage, args, "exit", "max")
	wantExit, max := 0, opts.duration(ts, "max")
	if v, ok := opts["exit"]; ok {
		n, err := strconv.Atoi(v)
		ts.Check(err)
		wantExit = n
	}
	if len(args) < 2 {
		ts.Fatalf("usage: %s", usage)
	}
	name := args[0]
	c := cleanupOf(ts)
	inR, inW, err := os.Pipe()
	ts.Check(err)
	c.mu.Lock()
	c.closers = append(c.closers, inW)
	c.mu.Unlock()
	var drains []func()
	mkOut := func(suffix string) *os.File {
		r, w, err := os.Pipe()
		ts.Check(err)
		f, err := os.OpenFile(ts.MkAbs(name+suffix), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		ts.Check(err)
		var inflight atomic.Int32
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := r.Read(buf)
				if n > 0 {
					inflight.Add(1)
					_, _ = f.Write(buf[:n])
					inflight.Add(-1)
				}
				if err != nil {
					r.Close()
					f.Close()
					return
				}
			}
		}()
		sc, err := r.SyscallConn()
		ts.Check(err)
		drains = append(drains, func() {
			// What PROG wrote before it exited is in the file before we go on.
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				pending := 0
				if sc.Control(func(fd uintptr) { pending, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }) != nil {
					return // closed: all read
				}
				if pending == 0 && inflight.Load() == 0 {
					return
				}
			}
		})
		return w
	}
	outW, errW := mkOut(".out"), mkOut(".err")
	cmd := exec.Command(lookProg(ts, args[1]), args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = childEnv(ts)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	inR.Close()
	outW.Close()
	errW.Close()
	for _, d := range drains {
		d()
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("e2e-io %s: %v", name, err)
	}
	ts.Logf("e2e-io %s: %s exited %d after %s", name, filepath.Base(args[1]), code, took.Round(time.Millisecond))
	switch {
	case neg && code == 0:
		ts.Fatalf("%s exited 0, want non-zero", args[1])
	case !neg && code != wantExit:
		ts.Fatalf("%s exited %d, want %d (stderr so far in %s.err)", args[1], code, wantExit, name)
	}
	if max > 0 && took > max {
		ts.Fatalf("%s took %s, more than %s", args[1], took.Round(time.Millisecond), max)
	}
}

// e2e-bg NAME PROG ARGS...: starts PROG in the background, its stdout and stderr going to
// $WORK/NAME.out and $WORK/NAME.err, stdin /dev/null. It is killed at the end of the
// script if still running.
func cmdE2EBg(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: e2e-bg NAME PROG ARGS...")
	}
	out, err := os.Create(ts.MkAbs(args[0] + ".out"))
	ts.Check(err)
	errf, err := os.Create(ts.MkAbs(args[0] + ".err"))
	ts.Check(err)
	cmd := exec.Command(lookProg(ts, args[1]), args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = childEnv(ts)
	cmd.Stdout, cmd.Stderr = out, errf
	ts.Check(cmd.Start())
	out.Close()
	errf.Close()
	c := cleanupOf(ts)
	c.mu.Lock()
	c.background = append(c.background, cmd)
	c.named[args[0]] = cmd
	c.mu.Unlock()
}

// e2e-bgwait NAME [TIMEOUT]: waits for the background program NAME to exit and prints
// "exit N" (or "signal S").
func cmdE2EBgWait(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: e2e-bgwait NAME [TIMEOUT]")
	}
	c := cleanupOf(ts)
	c.mu.Lock()
	cmd, ok := c.named[args[0]]
	c.mu.Unlock()
	if !ok {
		ts.Fatalf("no background program %s", args[0])
	}
	timeout := 30 * time.Second
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		timeout = d
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		ts.Fatalf("%s still running after %s", args[0], timeout)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		fmt.Fprintf(ts.Stdout(), "signal %s\n", ws.Signal())
		return
	}
	fmt.Fprintf(ts.Stdout(), "exit %d\n", ws.ExitStatus())
}

// e2e-waitfor FILE REGEX [TIMEOUT]: waits until FILE's contents match REGEX (multi-line
// mode); `!` waits until they do not (or FILE is gone). Default timeout 20s.
func cmdE2EWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: e2e-waitfor FILE REGEX [TIMEOUT]")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	timeout := timeoutArg(ts, args, 2)
	file := ts.MkAbs(args[0])
	poll(ts, timeout, func() (bool, string) {
		b, err := os.ReadFile(file)
		match := err == nil && re.Match(b)
		return match != neg, fmt.Sprintf("%s (%d bytes, read error %v) matching %q is %v", args[0], len(b), err, args[1], match)
	})
}

func timeoutArg(ts *testscript.TestScript, args []string, i int) time.Duration {
	if len(args) <= i {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(args[i])
	ts.Check(err)
	return d
}

func poll(ts *testscript.TestScript, timeout time.Duration, done func() (bool, string)) {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := done()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("still waiting after %s: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var numRe = regexp.MustCompile(`-?\d+`)

// numbers is the last integer of each line of s that has one.
func numbers(s string) []int {
	var ns []int
	for _, line := range strings.Split(s, "\n") {
		m := numRe.FindAllString(line, -1)
		if len(m) == 0 {
			continue
		}
		n, err := strconv.Atoi(m[len(m)-1])
		if err == nil {
			ns = append(ns, n)
		}
	}
	return ns
}

// e2e-waitnum FILE N|+K [TIMEOUT]: waits until the last number in FILE is at least N, or
// at least K more than its first number.
func cmdE2EWaitNum(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: e2e-waitnum FILE N|+K [TIMEOUT]")
	}
	relative := strings.HasPrefix(args[1], "+")
	want, err := strconv.Atoi(strings.TrimPrefix(args[1], "+"))
	ts.Check(err)
	file := ts.MkAbs(args[0])
	base := -1 // for +K: the last number when the wait began, or the first one seen
	if b, err := os.ReadFile(file); err == nil {
		if ns := numbers(string(b)); len(ns) > 0 {
			base = ns[len(ns)-1]
		}
	}
	poll(ts, timeoutArg(ts, args, 2), func() (bool, string) {
		b, _ := os.ReadFile(file)
		ns := numbers(string(b))
		if len(ns) == 0 {
			return false, fmt.Sprintf("%s has no number yet", args[0])
		}
		if relative {
			if base < 0 {
				base = ns[0]
			}
			return ns[len(ns)-1] >= base+want, fmt.Sprintf("%s goes from %d to %d, want %d more", args[0], base, ns[len(ns)-1], want)
		}
		return ns[len(ns)-1] >= want, fmt.Sprintf("%s's last number is %d, want >= %d", args[0], ns[len(ns)-1], want)
	})
}

// e2e-num VAR first|last FILE: sets VAR to the first or last number in FILE (the last
// integer of a line).
func cmdE2ENum(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 || (args[1] != "first" && args[1] != "last") {
		ts.Fatalf("usage: e2e-num VAR first|last FILE")
	}
	ns := numbers(ts.ReadFile(args[2]))
	if len(ns) == 0 {
		ts.Fatalf("%s has no number", args[2])
	}
	n := ns[0]
	if args[1] == "last" {
		n = ns[len(ns)-1]
	}
	ts.Setenv(args[0], strconv.Itoa(n))
	ts.Logf("%s=%d", args[0], n)
}

// e2e-cmp A OP B: compares two integers; OP is one of == != < <= > >=.
func cmdE2ECmp(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: e2e-cmp A OP B")
	}
	a, err := strconv.Atoi(args[0])
	ts.Check(err)
	b, err := strconv.Atoi(args[2])
	ts.Check(err)
	var ok bool
	switch args[1] {
	case "==":
		ok = a == b
	case "!=":
		ok = a != b
	case "<":
		ok = a < b
	case "<=":
		ok = a <= b
	case ">":
		ok = a > b
	case ">=":
		ok = a >= b
	default:
		ts.Fatalf("e2e-cmp: unknown operator %s", args[1])
	}
	if ok == neg {
		ts.Fatalf("%d %s %d is %v", a, args[1], b, ok)
	}
}

// e2e-seq FILE...: the numbers in the files, in order, are consecutive (each one more than
// the one before): nothing lost, nothing repeated, no restart from zero.
func cmdE2ESeq(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: e2e-seq FILE...")
	}
	var all []int
	for _, f := range args {
		all = append(all, numbers(ts.ReadFile(f))...)
	}
	if len(all) == 0 {
		ts.Fatalf("no numbers in %s", strings.Join(args, " "))
	}
	for i := 1; i < len(all); i++ {
		if all[i] != all[i-1]+1 {
			ts.Fatalf("%s: %d follows %d (numbers %d..%d, %d of them)", strings.Join(args, " "),
				all[i], all[i-1], all[0], all[len(all)-1], len(all))
		}
	}
	ts.Logf("%s: %d..%d consecutive", strings.Join(args, " "), all[0], all[len(all)-1])
}

// e2e-damage truncate-pages|truncate-pages-fix-manifest|flip-magic FILE CKPTDIR: damages
// a checkpoint's CRIU images. truncate-pages halves images/pages-1.img (the manifest's size
// then disagrees); truncate-pages-fix-manifest also records the new size in the manifest,
// so only the images themselves say what is wrong; flip-magic inverts the first 4 bytes
// (the magic) of images/FILE, size unchanged.
func cmdE2EDamage(ts *testscript.TestScript, neg bool, args []string) {
	usage := "usage: e2e-damage truncate-pages|truncate-pages-fix-manifest CKPTDIR | flip-magic FILE CKPTDIR"
	if neg || len(args) < 2 {
		ts.Fatalf("%s", usage)
	}
	switch args[0] {
	case "truncate-pages", "truncate-pages-fix-manifest":
		if len(args) != 2 {
			ts.Fatalf("%s", usage)
		}
		dir := ts.MkAbs(args[1])
		p := filepath.Join(dir, "images", "pages-1.img")
		st, err := os.Stat(p)
		ts.Check(err)
		size := st.Size() / 2
		ts.Check(os.Truncate(p, size))
		ts.Logf("pages-1.img: %d -> %d bytes", st.Size(), size)
		if args[0] == "truncate-pages-fix-manifest" {
			mp := filepath.Join(dir, "manifest.json")
			b, err := os.ReadFile(mp)
			ts.Check(err)
			var m map[string]any
			ts.Check(json.Unmarshal(b, &m))
			found := false
			for _, f := range m["files"].([]any) {
				fm := f.(map[string]any)
				if fm["path"] == "images/pages-1.img" {
					fm["size"] = size
					found = true
				}
			}
			if !found {
				ts.Fatalf("manifest does not list images/pages-1.img")
			}
			b, err = json.MarshalIndent(m, "", "  ")
			ts.Check(err)
			ts.Check(os.WriteFile(mp, b, 0o600))
		}
	case "flip-magic":
		if len(args) != 3 {
			ts.Fatalf("%s", usage)
		}
		p := filepath.Join(ts.MkAbs(args[2]), "images", args[1])
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		ts.Check(err)
		defer f.Close()
		var magic [4]byte
		_, err = io.ReadFull(f, magic[:])
		ts.Check(err)
		for i := range magic {
			magic[i] ^= 0xff
		}
		_, err = f.WriteAt(magic[:], 0)
		ts.Check(err)
	default:
		ts.Fatalf("%s", usage)
	}
}

// e2e-alive PIDFILE: every pid listed in PIDFILE is a live process; `!` waits (2s at most)
// until none is (a zombie counts as gone).
func cmdE2EAlive(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: e2e-alive PIDFILE")
	}
	pids := numbers(ts.ReadFile(args[0]))
	if len(pids) == 0 {
		ts.Fatalf("%s lists no pid", args[0])
	}
	alive := func() []int {
		var live []int
		for _, pid := range pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			// pid (comm) S ...: the state follows the last ')'.
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
				continue
			}
			live = append(live, pid)
		}
		return live
	}
	if !neg {
		if live := alive(); len(live) != len(pids) {
			ts.Fatalf("of %v only %v are alive", pids, live)
		}
		return
	}
	poll(ts, 2*time.Second, func() (bool, string) {
		live := alive()
		return len(live) == 0, fmt.Sprintf("processes %v are still alive", live)
	})
}

// e2e-containerd start|stop: a containerd of the script's own (root, state, sockets under
// $WORK/containerd; no CRI plugin), started with the script's TARDIS_* variables, so that
// the shims it starts, and the tardis they run, see them. start sets CONTAINERD_ADDRESS
// and CONTAINERD_NAMESPACE (e2e) for ctr. It is stopped at the end of the script, after
// its tasks and containers are removed with the real runc.
func cmdE2EContainerd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || (args[0] != "start" && args[0] != "stop") {
		ts.Fatalf("usage: e2e-containerd start|stop")
	}
	c := cleanupOf(ts)
	if args[0] == "stop" {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.stopContainerd()
		return
	}
	dir := ts.MkAbs("containerd")
	ts.Check(os.MkdirAll(dir, 0o711))
	sock := filepath.Join(dir, "c.sock")
	cfg := containerdBaseConfig(ts, dir, sock, true)
	cfgPath := filepath.Join(dir, "config.toml")
	ts.Check(os.WriteFile(cfgPath, []byte(cfg), 0o644))
	logf, err := os.Create(ts.MkAbs("containerd.log"))
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(ts.Getenv("CONTAINERD"), "--config", cfgPath, "--log-level", "debug")
	cmd.Env = childEnv(ts)
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	c.mu.Lock()
	c.containerd, c.ctrAddress = cmd, sock
	c.mu.Unlock()
	start := time.Now()
	poll(ts, 20*time.Second, func() (bool, string) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return false, fmt.Sprintf("containerd socket %s: %v (see containerd.log)", sock, err)
		}
		conn.Close()
		out, err := exec.Command(ts.Getenv("CTR"), "--address", sock, "version").CombinedOutput()
		return err == nil, fmt.Sprintf("ctr version: %v: %s", err, out)
	})
	ts.Logf("containerd ready after %s", time.Since(start).Round(time.Millisecond))
	ts.Setenv("CONTAINERD_ADDRESS", sock)
	ts.Setenv("CONTAINERD_NAMESPACE", "e2e")
}

// containerd2 says whether the script's containerd is 2.x or later.
func containerd2(ts *testscript.TestScript) bool {
	return !versionBelow(ts.Getenv("CONTAINERD_VERSION"), 2, 0)
}

// containerdBaseConfig is the start of a containerd config of the script's own, in the
// containerd's config version (2 for 1.x, 3 for 2.x): root, state, sockets and opt
// folder under dir; the snapshotters that cannot work here disabled, and without the CRI
// plugins when noCRI. containerd 2.x's NRI plugin is disabled too: it would listen on
// the host's /var/run/nri/nri.sock, shared with every other containerd.
func containerdBaseConfig(ts *testscript.TestScript, dir, sock string, noCRI bool) string {
	disabled := []string{"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
		"io.containerd.snapshotter.v1.devmapper"}
	version, optPlugin := 2, `"io.containerd.internal.v1.opt"`
	if containerd2(ts) {
		version, optPlugin = 3, `'io.containerd.internal.v1.opt'`
		disabled = append(disabled, "io.containerd.nri.v1.nri")
		if noCRI {
			// 2.x splits the CRI plugin into its images and runtime services and the
			// gRPC service, and runs pods through the podsandbox controller.
			disabled = append(disabled, "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",
				"io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox")
		}
	} else {
		disabled = append(disabled, "io.containerd.snapshotter.v1.aufs") // gone in 2.x
		if noCRI {
			disabled = append(disabled, "io.containerd.grpc.v1.cri")
		}
	}
	q := make([]string, len(disabled))
	for i, d := range disabled {
		q[i] = strconv.Quote(d)
	}
	return fmt.Sprintf(`version = %d
root = %q
state = %q
disabled_plugins = [%s]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins.%s]
  path = %q
`, version, filepath.Join(dir, "root"), filepath.Join(dir, "state"), strings.Join(q, ", "),
		sock, sock+".ttrpc", optPlugin, filepath.Join(dir, "opt"))
}

// e2e-criu FILE: FILE (a wrapper of the real CRIU, say) becomes the CRIU that tardis is
// configured with (TARDIS_CRIU); tardis hands it to every runc in the way that runc takes
// one (criu_config.txtar checks that).
func cmdE2ECriu(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: e2e-criu FILE")
	}
	ts.Setenv("TARDIS_CRIU", ts.MkAbs(args[0]))
}

// e2e-timings: logs tardis.log's checkpoint and restore timings (and every warning).
func cmdE2ETimings(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: e2e-timings")
	}
	f, err := os.Open(ts.Getenv("TARDIS_LOG_FILE"))
	if err != nil {
		ts.Logf("no tardis.log: %v", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if _, ok := rec["timings_ms"]; ok || rec["level"] != "info" {
			ts.Logf("tardis.log: %s", sc.Text())
		}
	}
}

// e2e-waitstatus ID STATUS [RUNC_ROOT] [TIMEOUT]: waits until the real runc says the
// container's status is STATUS ("gone" for a container runc does not know).
func cmdE2EWaitStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 4 {
		ts.Fatalf("usage: e2e-waitstatus ID STATUS [RUNC_ROOT] [TIMEOUT]")
	}
	root := ts.Getenv("RUNC_ROOT")
	if len(args) > 2 {
		root = args[2]
	}
	poll(ts, timeoutArg(ts, args, 3), func() (bool, string) {
		out, err := exec.Command(ts.Getenv("RUNC"), "--root", root, "state", args[0]).CombinedOutput()
		status := "gone"
		if err == nil {
			var st struct{ Status string }
			if jerr := json.Unmarshal(out, &st); jerr != nil {
				return false, fmt.Sprintf("runc state %s: %v: %s", args[0], jerr, out)
			}
			status = st.Status
		} else if !strings.Contains(string(out), "does not exist") {
			return false, fmt.Sprintf("runc state %s: %v: %s", args[0], err, out)
		}
		return status == args[1], fmt.Sprintf("%s is %s, want %s", args[0], status, args[1])
	})
}
