package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tardis-runtime/tardis/internal/rootfs"
)

// Docker and Podman, for real: a dockerd of the script's own (over a containerd of its
// own, as Debian's docker.service runs it) with tardis as the runtime "tardis", and podman
// on storage of the script's own with tardis as its runtime. Nothing is pulled: the image
// is built here from busybox-static. The scripts are testdata/e2e/docker_*.txtar and
// podman_*.txtar; conditions [docker] and [podman] say whether the programs are there
// (vagrant/install.sh --with-docker-podman installs them). The commands:
//
//	e2e-image DIR
//	    writes DIR/busybox.tar, a docker-archive (manifest.json, the image config, one
//	    layer: busybox-static and its applet links) of localhost/tardis-e2e/busybox:1,
//	    for `docker load` and `podman load`.
//	e2e-dockerd start [-experimental]
//	    the first time: a containerd of its own (no CRI; root under $WORK/docker, state
//	    and socket under a short folder in /run, which unix socket paths need), a bridge
//	    of its own with a /24 of 10.213.0.0/16 (the daemon's "bridge"; docker0 is left
//	    alone), and the runtime wrapper (below). Then dockerd with its own data-root
//	    ($WORK/docker/data), exec-root, pidfile, socket, trust key file, that containerd,
//	    iptables, ip-forward and ip-masq off (the host's firewall and sysctls are left
//	    alone; nothing here needs NAT), and runtimes {"tardis": {"path": the wrapper}};
//	    -experimental turns on experimental mode (`docker checkpoint`). Its log is
//	    $WORK/dockerd.log. Sets DOCKER_HOST, DOCKER_CONFIG, DOCKER_RUNC_ROOT (the runc
//	    root of its containers, tardis's --root) and puts the docker client that came
//	    with dockerd first on PATH. Started again after stop, it is the same daemon
//	    (same data), and the wrapper gets the script's TARDIS_* settings of that moment.
//	e2e-dockerd stop
//	    SIGTERM to dockerd, as `systemctl stop docker` does: dockerd stops its running
//	    containers (their stop signal, then SIGKILL after their stop timeout) and exits.
//	    Waits for it (60 s at most) and logs the time as a measurement. containerd stays.
//	e2e-dockerd waitgc
//	    waits until containerd's content store (namespace moby) is empty again: after
//	    `docker checkpoint create`, until containerd's garbage collector has removed the
//	    checkpoint that dockerd deleted. dockerd 20.10 uploads the same bytes again at
//	    `docker start --checkpoint`, and fails ("commit failed: content sha256:...:
//	    already exists", moby/moby#42900) when they are still there.
//	e2e-podman setup
//	    podman's configuration for the rest of the script, by CONTAINERS_CONF and
//	    CONTAINERS_STORAGE_CONF: storage ($WORK/podman/root; runroot and tmp_dir in /run),
//	    file locks and events of its own, cgroupfs, default ulimits nofile=20000:20000
//	    and nproc=32768:32768 (podman's defaults are above what this host's root may set,
//	    with runc as well), and the runtime "tardis" (the wrapper) as default runtime.
//	    With the CNI network backend (podman 4), a default network of its own: a bridge
//	    with a /24 of 10.214.0.0/16, no gateway, no masquerade, no firewall rules,
//	    addresses kept under $WORK. Sets PODMAN_RUNC_ROOT (podman gives the runtime no
//	    --root: runc's default, /run/runc).
//	e2e-time [-set VAR] [-max DURATION] LABEL PROG ARGS...
//	    runs PROG as exec does (its stdout and stderr are then what stdout/stderr
//	    check), logs its wall time as "measure: LABEL: N ms"; -set puts its trimmed
//	    stdout in VAR; -max fails if it took longer. `!` expects it to fail.
//	e2e-waitout [-timeout DURATION] FILE N|+K PROG ARGS...
//	    runs PROG (docker logs ID, say) again and again, its stdout written to FILE each
//	    time, until the last number in FILE is at least N, or K more than it was first.
//
// The runtime wrapper ($WORK/docker/bin/tardis, $WORK/podman/bin/tardis) stands in for
// /etc/tardis/config.toml: it exports the script's TARDIS_* settings and execs $TARDIS,
// adding nothing else to the environment its caller gave it; it appends each call to
// $WORK/docker/runtime-calls.log (or podman's), each line starting with PATH or no-PATH:
// whether the caller passed a PATH.
//
// At the end of the script, whatever happened: the wrappers now run the real runc (nothing
// is checkpointed on the way out), dockerd's containers lose their restart policy and are
// deleted with the real runc, dockerd and containerd are stopped, podman's containers are
// removed, leftover shims and conmons killed, mounts under the script's folders
// unmounted, bridges deleted.
func dockerCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"e2e-image":   cmdE2EImage,
		"e2e-dockerd": cmdE2EDockerd,
		"e2e-podman":  cmdE2EPodman,
		"e2e-time":    cmdE2ETime,
		"e2e-waitout": cmdE2EWaitOut,
	}
}

const e2eImageName = "localhost/tardis-e2e/busybox:1"

// dockerTools are the programs of the Docker path, found once.
type dockerTools struct {
	dockerd, docker, containerd, ctr, shim, ip string
	major                                      int // dockerd's major version (20 for 20.10)
	missing                                    []string
}

var dockerToolsOnce = sync.OnceValue(func() dockerTools {
	var t dockerTools
	find := func(name string, candidates ...string) string {
		for _, c := range candidates {
			if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return c
			}
		}
		p, err := lookPathOutsideTestscript(name)
		if err != nil {
			t.missing = append(t.missing, name)
			return ""
		}
		return p
	}
	t.dockerd = find("dockerd")
	// The client that came with dockerd (/usr/bin/docker), before any other on PATH.
	var near []string
	if t.dockerd != "" {
		near = append(near, filepath.Join(filepath.Dir(filepath.Dir(t.dockerd)), "bin", "docker"))
	}
	t.docker = find("docker", near...)
	t.containerd = find("containerd")
	t.ctr = find("ctr")
	t.shim = find("containerd-shim-runc-v2")
	t.ip = find("ip")
	if t.dockerd != "" {
		out, _ := exec.Command(t.dockerd, "--version").Output()
		if m := regexp.MustCompile(`version (\d+)\.`).FindSubmatch(out); m != nil {
			t.major, _ = strconv.Atoi(string(m[1]))
		}
	}
	return t
})

type podmanTools struct {
	podman, conmon string
	major          int
	cniDir         string // CNI plugins, for podman 4's CNI backend
	missing        []string
}

var podmanToolsOnce = sync.OnceValue(func() podmanTools {
	var t podmanTools
	for _, name := range []string{"podman", "conmon"} {
		p, err := lookPathOutsideTestscript(name)
		if err != nil {
			// conmon is often outside PATH.
			for _, c := range []string{"/usr/libexec/podman/" + name, "/usr/bin/" + name} {
				if _, err := os.Stat(c); err == nil {
					p = c
				}
			}
		}
		if p == "" {
			t.missing = append(t.missing, name)
			continue
		}
		if name == "podman" {
			t.podman = p
		} else {
			t.conmon = p
		}
	}
	if t.podman != "" {
		out, _ := exec.Command(t.podman, "--version").Output()
		if m := regexp.MustCompile(`version (\d+)\.`).FindSubmatch(out); m != nil {
			t.major, _ = strconv.Atoi(string(m[1]))
		}
	}
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"} {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "host-local")); err == nil {
				t.cniDir = d
				break
			}
		}
	}
	return t
})

// dockerCondition and podmanCondition are the conditions [docker] and [podman].
func dockerCondition() bool { return len(dockerToolsOnce().missing) == 0 }
func podmanCondition() bool { return len(podmanToolsOnce().missing) == 0 }

// e2e-image DIR
func cmdE2EImage(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: e2e-image DIR")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	gz, diffID := busyboxLayer(ts)
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	ts.Check(err)
	layer, err := io.ReadAll(zr)
	ts.Check(err)
	b, err := dockerArchive(e2eImageName, []string{"/bin/sh"}, layer, diffID)
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "busybox.tar"), b, 0o644))
}

// dockerArchive is what `docker save` writes, for one image of one uncompressed layer:
// manifest.json, the config as <hex>.json and the layer as <hex>/layer.tar. Both
// `docker load` (20.10 reads only this format) and `podman load` read it.
func dockerArchive(name string, cmd []string, layer []byte, diffID string) ([]byte, error) {
	config, err := json.Marshal(map[string]any{
		"created":      fixedTime.Format(time.RFC3339),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": cmd, "WorkingDir": "/"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created": fixedTime.Format(time.RFC3339), "created_by": "tardis e2e: busybox-static"}},
	})
	if err != nil {
		return nil, err
	}
	cfgName := strings.TrimPrefix(digestOf(config), "sha256:") + ".json"
	layerDir := strings.TrimPrefix(diffID, "sha256:")
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   cfgName,
		"RepoTags": []string{name},
		"Layers":   []string{layerDir + "/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: layerDir + "/", Mode: 0o755, ModTime: fixedTime}); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{"manifest.json", manifest}, {cfgName, config}, {layerDir + "/layer.tar", layer}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.b)), ModTime: fixedTime}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// e2eEngines is a script's dockerd and podman set-up, keyed by its TestScript like the
// k8s nodes; removed at the end of the script.
type e2eEngines struct {
	mu     sync.Mutex
	docker *dockerEnv
	podman *podmanEnv
}

var engineScripts sync.Map

func enginesOf(ts *testscript.TestScript) *e2eEngines {
	if e, ok := engineScripts.Load(ts); ok {
		return e.(*e2eEngines)
	}
	e := &e2eEngines{}
	engineScripts.Store(ts, e)
	ts.Defer(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.docker != nil {
			e.docker.remove(ts.Logf)
		}
		if e.podman != nil {
			e.podman.remove(ts.Logf)
		}
		engineScripts.Delete(ts)
	})
	return e
}

// subnets hands out the third octet of the private /24s, once per test process.
var subnets = struct {
	sync.Mutex
	used map[string]bool
}{used: map[string]bool{}}

// freeSubnet is a 10.A.x.0/24 that no interface of this host has an address in and no
// other script of this run got; it returns "10.A.x".
func freeSubnet(a int) (string, error) {
	subnets.Lock()
	defer subnets.Unlock()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for try := 0; try < 200; try++ {
		var b [1]byte
		_, _ = rand.Read(b[:])
		x := 1 + int(b[0])%253
		prefix := fmt.Sprintf("10.%d.%d", a, x)
		if subnets.used[prefix] {
			continue
		}
		taken := false
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok && strings.HasPrefix(ipn.IP.String(), prefix+".") {
				taken = true
			}
		}
		if !taken {
			subnets.used[prefix] = true
			return prefix, nil
		}
	}
	return "", fmt.Errorf("no free /24 in 10.%d.0.0/16", a)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeRuntimeWrapper writes the runtime wrapper at path: the script's TARDIS_* settings,
// then exec of tardis (or of target, when given: the cleanup's real runc).
func writeRuntimeWrapper(ts *testscript.TestScript, path, callLog, target string) {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString("# Written by the tardis e2e suite: the runtime a container engine runs. It stands in for\n")
	b.WriteString("# /etc/tardis/config.toml (the script's TARDIS_* settings) and adds nothing else to the\n")
	b.WriteString("# environment its caller gave it. Each call goes to the call log, with PATH or no-PATH:\n")
	b.WriteString("# whether the caller passed a PATH.\n")
	b.WriteString("case $(export -p) in *'export PATH='*) p=PATH ;; *) p=no-PATH ;; esac\n")
	fmt.Fprintf(&b, "printf '%%s %%s\\n' \"$p\" \"$*\" >>%s\n", q(callLog))
	if target == "" {
		var keys []string
		for _, k := range e2eVars {
			if strings.HasPrefix(k, "TARDIS_") && ts.Getenv(k) != "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "export %s=%s\n", k, q(ts.Getenv(k)))
		}
		target = ts.Getenv("TARDIS")
	}
	fmt.Fprintf(&b, "exec %s \"$@\"\n", q(target))
	ts.Check(os.MkdirAll(filepath.Dir(path), 0o755))
	tmp := path + ".tmp"
	ts.Check(os.WriteFile(tmp, []byte(b.String()), 0o755))
	ts.Check(os.Rename(tmp, path))
}

// linkBin puts a symlink to target in the script's first PATH folder ($WORK/.bin).
func linkBin(ts *testscript.TestScript, name, target string) {
	p := filepath.Join(ts.Getenv("WORK"), ".bin", name)
	if l, err := os.Readlink(p); err == nil && l == target {
		return
	}
	_ = os.Remove(p)
	ts.Check(os.Symlink(target, p))
}

// dockerEnv is a script's containerd + dockerd.
type dockerEnv struct {
	tools      dockerTools
	runc       string
	dir, run   string // $WORK/docker; a short folder in /run for sockets and exec-root
	bridge     string
	ctrSock    string
	containerd *exec.Cmd
	dockerd    *exec.Cmd
	dockerdErr chan error
	once       sync.Once
}

func (d *dockerEnv) execRoot() string { return filepath.Join(d.run, "exec") }
func (d *dockerEnv) sock() string     { return filepath.Join(d.run, "docker.sock") }

func cmdE2EDockerd(ts *testscript.TestScript, neg bool, args []string) {
	usage := "usage: e2e-dockerd start [-experimental] | stop | waitgc"
	if neg || len(args) == 0 {
		ts.Fatalf("%s", usage)
	}
	e := enginesOf(ts)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch args[0] {
	case "start":
		experimental := false
		for _, a := range args[1:] {
			if a != "-experimental" {
				ts.Fatalf("%s", usage)
			}
			experimental = true
		}
		if e.docker == nil {
			e.docker = newDockerEnv(ts)
		}
		e.docker.startDockerd(ts, experimental)
	case "stop":
		if len(args) != 1 {
			ts.Fatalf("%s", usage)
		}
		if e.docker == nil || e.docker.dockerd == nil {
			ts.Fatalf("e2e-dockerd stop: dockerd is not running")
		}
		took, err := e.docker.stopDockerd(60 * time.Second)
		if err != nil {
			ts.Fatalf("dockerd: %v (see dockerd.log)", err)
		}
		ts.Logf("measure: dockerd shutdown (SIGTERM to exit): %d ms", took.Milliseconds())
	case "waitgc":
		if len(args) != 1 || e.docker == nil {
			ts.Fatalf("%s (after start)", usage)
		}
		d := e.docker
		poll(ts, 20*time.Second, func() (bool, string) {
			out, err := exec.Command(d.tools.ctr, "--address", d.ctrSock, "--namespace", "moby", "content", "ls", "-q").CombinedOutput()
			return err == nil && len(bytes.TrimSpace(out)) == 0, fmt.Sprintf("ctr content ls: %v: %q", err, out)
		})
	default:
		ts.Fatalf("%s", usage)
	}
}

// newDockerEnv makes the folders, the bridge, the wrapper and starts containerd.
func newDockerEnv(ts *testscript.TestScript) *dockerEnv {
	t := dockerToolsOnce()
	if len(t.missing) > 0 {
		ts.Fatalf("e2e-dockerd: not installed: %s (vagrant/install.sh --with-docker-podman)", strings.Join(t.missing, ", "))
	}
	run, err := os.MkdirTemp("/run", "tardis-e2e-dk-")
	ts.Check(err)
	d := &dockerEnv{tools: t, runc: ts.Getenv("RUNC"), dir: ts.MkAbs("docker"), run: run,
		bridge: "tdk" + randHex(4)}
	// From here on, whatever fails is undone at the end of the script.
	enginesOf(ts).docker = d
	for _, sub := range []string{"containerd", "data", "client", "bin"} {
		ts.Check(os.MkdirAll(filepath.Join(d.dir, sub), 0o755))
	}
	// The bridge: dockerd creates only docker0 itself; any other name must exist, with
	// the address dockerd takes as gateway and subnet of the default network.
	prefix, err := freeSubnet(213)
	ts.Check(err)
	for _, c := range [][]string{
		{"link", "add", "name", d.bridge, "type", "bridge"},
		{"addr", "add", prefix + ".1/24", "dev", d.bridge},
		{"link", "set", d.bridge, "up"},
	} {
		if out, err := exec.Command(t.ip, c...).CombinedOutput(); err != nil {
			ts.Fatalf("ip %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	ts.Logf("docker bridge %s: %s.1/24", d.bridge, prefix)

	d.ctrSock = filepath.Join(run, "containerd.sock")
	cdir := filepath.Join(d.dir, "containerd")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(cdir, "root"), filepath.Join(run, "containerd-state"), d.ctrSock, d.ctrSock+".ttrpc", filepath.Join(cdir, "opt"))
	cfgPath := filepath.Join(cdir, "config.toml")
	ts.Check(os.WriteFile(cfgPath, []byte(cfg), 0o644))
	logf, err := os.Create(ts.MkAbs("docker-containerd.log"))
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(t.containerd, "--config", cfgPath, "--log-level", "debug")
	cmd.Env = d.daemonEnv(ts)
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	d.containerd = cmd
	poll(ts, 20*time.Second, func() (bool, string) {
		out, err := exec.Command(t.ctr, "--address", d.ctrSock, "version").CombinedOutput()
		return err == nil, fmt.Sprintf("ctr version: %v: %s (see docker-containerd.log)", err, out)
	})
	linkBin(ts, "docker", t.docker)
	ts.Setenv("DOCKER_HOST", "unix://"+d.sock())
	ts.Setenv("DOCKER_CONFIG", filepath.Join(d.dir, "client"))
	// dockerd (20.10 and later) gives every runtime the runc root <exec-root>/runtime-runc.
	ts.Setenv("DOCKER_RUNC_ROOT", filepath.Join(d.execRoot(), "runtime-runc", "moby"))
	return d
}

// daemonEnv is the environment of the script's containerd and dockerd: the script's
// (childEnv), its PATH changed so that the distribution's containerd folder (that of
// containerd-shim-runc-v2) comes right after the script's own folder ($WORK/.bin: the runc
// under test and CRIU), and the folder of the containerd under test
// (TARDIS_E2E_CONTAINERD) is left out. Docker 20.10 is built for containerd 1.6, which runs
// the first containerd-shim-runc-v2 on its PATH; 2.x's shim refuses to be started by it
// ("bootstrap parameters do not match command-line arguments: shim was started through
// the deprecated API but was built against the new API"). TARDIS_E2E_CONTAINERD is for the
// containerd and k8s scripts; the runc under test is the same for all.
func (d *dockerEnv) daemonEnv(ts *testscript.TestScript) []string {
	own := filepath.Join(ts.Getenv("WORK"), ".bin")
	distro := filepath.Dir(d.tools.shim)
	underTest := ""
	if c := ts.Getenv("CONTAINERD"); c != "" && filepath.Dir(c) != distro {
		underTest = filepath.Dir(c)
	}
	path := []string{own, distro}
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		if dir != "" && dir != own && dir != distro && dir != underTest {
			path = append(path, dir)
		}
	}
	env := childEnv(ts)
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = "PATH=" + strings.Join(path, string(filepath.ListSeparator))
		}
	}
	return env
}

func (d *dockerEnv) startDockerd(ts *testscript.TestScript, experimental bool) {
	if d.dockerd != nil {
		ts.Fatalf("e2e-dockerd start: dockerd is already running")
	}
	wrapper := filepath.Join(d.dir, "bin", "tardis")
	writeRuntimeWrapper(ts, wrapper, filepath.Join(d.dir, "runtime-calls.log"), "")
	daemon := map[string]any{
		"data-root":      filepath.Join(d.dir, "data"),
		"exec-root":      d.execRoot(),
		"pidfile":        filepath.Join(d.run, "dockerd.pid"),
		"hosts":          []string{"unix://" + d.sock()},
		"containerd":     d.ctrSock,
		"bridge":         d.bridge,
		"iptables":       false,
		"ip-forward":     false,
		"ip-masq":        false,
		"storage-driver": "overlay2",
		"experimental":   experimental,
		"runtimes":       map[string]any{"tardis": map[string]any{"path": wrapper}},
		"debug":          true,
	}
	if d.tools.major > 0 && d.tools.major < 23 {
		// dockerd before 23 writes a trust key, by default to /etc/docker/key.json.
		daemon["deprecated-key-path"] = filepath.Join(d.dir, "key.json")
	}
	b, err := json.MarshalIndent(daemon, "", "  ")
	ts.Check(err)
	cfgPath := filepath.Join(d.dir, "daemon.json")
	ts.Check(os.WriteFile(cfgPath, b, 0o644))
	logf, err := os.OpenFile(ts.MkAbs("dockerd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(d.tools.dockerd, "--config-file", cfgPath)
	cmd.Env = d.daemonEnv(ts)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	ts.Check(cmd.Start())
	d.dockerd = cmd
	d.dockerdErr = make(chan error, 1)
	go func() { d.dockerdErr <- cmd.Wait() }()
	poll(ts, 60*time.Second, func() (bool, string) {
		select {
		case err := <-d.dockerdErr:
			d.dockerd = nil
			ts.Fatalf("dockerd exited: %v (see dockerd.log)", err)
		default:
		}
		c := exec.Command(d.tools.docker, "version", "--format", "{{.Server.Version}}")
		c.Env = append(childEnv(ts), "DOCKER_HOST=unix://"+d.sock(), "DOCKER_CONFIG="+filepath.Join(d.dir, "client"))
		out, err := c.CombinedOutput()
		return err == nil, fmt.Sprintf("docker version: %v: %s (see dockerd.log)", err, out)
	})
	ts.Logf("dockerd ready after %s", time.Since(start).Round(time.Millisecond))
}

// stopDockerd sends SIGTERM and waits for dockerd to exit (SIGKILL after timeout).
func (d *dockerEnv) stopDockerd(timeout time.Duration) (time.Duration, error) {
	if d.dockerd == nil {
		return 0, nil
	}
	start := time.Now()
	_ = d.dockerd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.dockerdErr:
	case <-time.After(timeout):
		_ = d.dockerd.Process.Kill()
		<-d.dockerdErr
		err = fmt.Errorf("still running %s after SIGTERM: killed", timeout)
	}
	took := time.Since(start)
	d.dockerd = nil
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 0 {
		err = nil
	}
	return took, err
}

// remove undoes everything, once: containers deleted with the real runc, dockerd,
// containerd, leftover shims, mounts, the bridge, the folder in /run.
func (d *dockerEnv) remove(logf func(string, ...any)) {
	d.once.Do(func() {
		// From now on every runtime call is the real runc's, and dockerd restarts nothing.
		if err := writeWrapperTo(filepath.Join(d.dir, "bin", "tardis"), d.runc); err != nil {
			logf("docker cleanup: %v", err)
		}
		if d.dockerd != nil {
			docker := func(args ...string) string {
				cmd := exec.Command(d.tools.docker, args...)
				cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+d.sock(), "DOCKER_CONFIG="+filepath.Join(d.dir, "client"))
				out, _ := cmd.Output()
				return string(out)
			}
			if ids := strings.Fields(docker("ps", "-a", "-q")); len(ids) > 0 {
				docker(append([]string{"update", "--restart", "no"}, ids...)...)
			}
		}
		roots, _ := filepath.Glob(filepath.Join(d.execRoot(), "runtime-*", "*"))
		deleteAllRunc(d.runc, roots, logf)
		if _, err := d.stopDockerd(30 * time.Second); err != nil {
			logf("docker cleanup: dockerd: %v", err)
		}
		if d.containerd != nil {
			ctr := func(args ...string) string {
				out, _ := exec.Command(d.tools.ctr, append([]string{"--address", d.ctrSock, "--namespace", "moby"}, args...)...).Output()
				return string(out)
			}
			for _, id := range strings.Fields(ctr("task", "ls", "-q")) {
				ctr("task", "delete", "--force", id)
			}
			for _, id := range strings.Fields(ctr("container", "ls", "-q")) {
				ctr("container", "delete", id)
			}
			_ = d.containerd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = d.containerd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = d.containerd.Process.Kill()
				<-done
			}
		}
		for _, pid := range pidsWithArg(d.ctrSock) {
			logf("docker cleanup: killing leftover shim %d", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		unmountUnder(logf, d.run, d.dir)
		if out, err := exec.Command(d.tools.ip, "link", "del", d.bridge).CombinedOutput(); err != nil {
			logf("docker cleanup: ip link del %s: %v: %s", d.bridge, err, out)
		}
		if err := os.RemoveAll(d.run); err != nil {
			logf("docker cleanup: %v", err)
		}
	})
}

// deleteAllRunc deletes every container under the runc roots with the real runc.
func deleteAllRunc(runc string, roots []string, logf func(string, ...any)) {
	for _, root := range roots {
		out, err := exec.Command(runc, "--root", root, "list", "-q").Output()
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			if b, err := exec.Command(runc, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
				logf("cleanup: runc --root %s delete --force %s: %v: %s", root, id, err, b)
			}
		}
	}
}

func unmountUnder(logf func(string, ...any), dirs ...string) {
	for _, dir := range dirs {
		points, _ := rootfs.MountsUnder(dir) // cleanup: what can be read is unmounted
		for _, mp := range points {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				logf("cleanup: umount %s: %v", mp, err)
			}
		}
	}
}

// podmanEnv is a script's podman configuration.
type podmanEnv struct {
	tools    podmanTools
	runc     string
	dir, run string
	bridge   string // "" when podman's own default network is used
	wrapper  string
	env      []string // CONTAINERS_CONF, CONTAINERS_STORAGE_CONF
	once     sync.Once
}

func cmdE2EPodman(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || args[0] != "setup" {
		ts.Fatalf("usage: e2e-podman setup")
	}
	e := enginesOf(ts)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.podman != nil {
		ts.Fatalf("e2e-podman setup: done already")
	}
	t := podmanToolsOnce()
	if len(t.missing) > 0 {
		ts.Fatalf("e2e-podman: not installed: %s (vagrant/install.sh --with-docker-podman)", strings.Join(t.missing, ", "))
	}
	run, err := os.MkdirTemp("/run", "tardis-e2e-pm-")
	ts.Check(err)
	p := &podmanEnv{tools: t, runc: ts.Getenv("RUNC"), dir: ts.MkAbs("podman"), run: run}
	e.podman = p
	for _, sub := range []string{"root", "bin", "net", "cni-ipam"} {
		ts.Check(os.MkdirAll(filepath.Join(p.dir, sub), 0o755))
	}
	p.wrapper = filepath.Join(p.dir, "bin", "tardis")
	writeRuntimeWrapper(ts, p.wrapper, filepath.Join(p.dir, "runtime-calls.log"), "")

	network := ""
	if t.major > 0 && t.major < 5 && t.cniDir != "" {
		// podman 4 with CNI: a network of the script's own, with nothing on the host's
		// firewall or sysctls (no gateway, no masquerade, no firewall plugin).
		prefix, err := freeSubnet(214)
		ts.Check(err)
		p.bridge = "tpm" + randHex(4)
		name := "tardis-e2e-" + p.bridge
		conflist, err := json.MarshalIndent(map[string]any{
			"cniVersion": "0.4.0",
			"name":       name,
			"plugins": []any{map[string]any{
				"type": "bridge", "bridge": p.bridge, "isGateway": false, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": prefix + ".0/24"}}},
					"dataDir": filepath.Join(p.dir, "cni-ipam"),
				},
			}},
		}, "", "  ")
		ts.Check(err)
		ts.Check(os.WriteFile(filepath.Join(p.dir, "net", name+".conflist"), conflist, 0o644))
		network = fmt.Sprintf("network_backend = \"cni\"\nnetwork_config_dir = %q\ncni_plugin_dirs = [%q]\ndefault_network = %q\n",
			filepath.Join(p.dir, "net"), t.cniDir, name)
		ts.Logf("podman network %s: bridge %s, %s.0/24", name, p.bridge, prefix)
	}
	conf := fmt.Sprintf(`# Written by the tardis e2e suite (e2e-podman setup).
[containers]
# podman's default ulimits are more than root may set on this host (with runc as well).
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
lock_type = "file"
tmp_dir = %q
volume_path = %q
conmon_path = [%q]
runtime = "tardis"

[engine.runtimes]
tardis = [%q]

[network]
%s`, filepath.Join(p.dir, "events.log"), filepath.Join(run, "tmp"), filepath.Join(p.dir, "volumes"),
		t.conmon, p.wrapper, network)
	confPath := filepath.Join(p.dir, "containers.conf")
	ts.Check(os.WriteFile(confPath, []byte(conf), 0o644))
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.dir, "root"), filepath.Join(run, "runroot"))
	storagePath := filepath.Join(p.dir, "storage.conf")
	ts.Check(os.WriteFile(storagePath, []byte(storage), 0o644))
	p.env = []string{"CONTAINERS_CONF=" + confPath, "CONTAINERS_STORAGE_CONF=" + storagePath}
	for _, kv := range p.env {
		k, v, _ := strings.Cut(kv, "=")
		ts.Setenv(k, v)
	}
	ts.Setenv("PODMAN_RUNC_ROOT", "/run/runc")
	linkBin(ts, "podman", t.podman)
}

// remove deletes the script's podman containers with the real runc, then has podman
// forget them (its runtime now the real runc), and removes what is left.
func (p *podmanEnv) remove(logf func(string, ...any)) {
	p.once.Do(func() {
		podman := func(args ...string) (string, error) {
			cmd := exec.Command(p.tools.podman, args...)
			cmd.Env = append(os.Environ(), p.env...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		out, err := podman("ps", "-a", "-q", "--no-trunc")
		if err != nil {
			logf("podman cleanup: podman ps: %v: %s", err, out)
		}
		for _, id := range strings.Fields(out) {
			if len(id) != 64 {
				continue // not an id: podman said something else
			}
			b, err := exec.Command(p.runc, "--root", "/run/runc", "delete", "--force", id).CombinedOutput()
			if err != nil && !strings.Contains(string(b), "does not exist") {
				logf("podman cleanup: runc delete --force %s: %v: %s", id, err, b)
			}
		}
		if p.wrapper != "" {
			if err := writeWrapperTo(p.wrapper, p.runc); err != nil {
				logf("podman cleanup: %v", err)
			}
		}
		if out, err := podman("rm", "--all", "--force", "--time", "0"); err != nil {
			logf("podman cleanup: podman rm --all --force: %v: %s", err, out)
		}
		for _, pid := range pidsWithArgPrefix(p.run, p.dir) {
			logf("podman cleanup: killing leftover %d", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		unmountUnder(logf, p.run, p.dir)
		if p.bridge != "" {
			if out, err := exec.Command(lookPathOr("ip"), "link", "del", p.bridge).CombinedOutput(); err != nil &&
				!strings.Contains(string(out), "Cannot find device") {
				logf("podman cleanup: ip link del %s: %v: %s", p.bridge, err, out)
			}
		}
		if err := os.RemoveAll(p.run); err != nil {
			logf("podman cleanup: %v", err)
		}
	})
}

// writeWrapperTo makes the wrapper at path run target (the real runc) instead of tardis.
func writeWrapperTo(path, target string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\nexec '"+target+"' \"$@\"\n"), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// pidsWithArgPrefix lists the processes with an argument under one of the folders.
func pidsWithArgPrefix(dirs ...string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
	args:
		for _, a := range strings.Split(string(b), "\x00") {
			for _, d := range dirs {
				if strings.HasPrefix(a, d+"/") {
					pids = append(pids, pid)
					break args
				}
			}
		}
	}
	return pids
}

// e2e-time [-set VAR] [-max DURATION] LABEL PROG ARGS...
func cmdE2ETime(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "e2e-time [-set VAR] [-max DURATION] LABEL PROG ARGS..."
	opts, args := takeOpts(ts, usage, args, "set", "max")
	setVar, max := opts["set"], opts.duration(ts, "max")
	if len(args) < 2 {
		ts.Fatalf("usage: %s", usage)
	}
	start := time.Now()
	err := ts.Exec(args[1], args[2:]...)
	took := time.Since(start)
	ts.Logf("measure: %s: %d ms", args[0], took.Milliseconds())
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if neg != (err != nil) {
		ts.Fatalf("%s %s: %v (want %s)\nstderr: %s", args[1], strings.Join(args[2:], " "), err,
			map[bool]string{true: "failure", false: "success"}[neg], ts.ReadFile("stderr"))
	}
	if max > 0 && took > max {
		ts.Fatalf("%s %s took %s, more than %s", args[1], strings.Join(args[2:], " "), took.Round(time.Millisecond), max)
	}
	if setVar != "" {
		ts.Setenv(setVar, strings.TrimSpace(ts.ReadFile("stdout")))
	}
}

// e2e-waitout [-timeout DURATION] FILE N|+K PROG ARGS...
func cmdE2EWaitOut(ts *testscript.TestScript, neg bool, args []string) {
	timeout := 20 * time.Second
	if len(args) > 1 && args[0] == "-timeout" {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		timeout, args = d, args[2:]
	}
	if neg || len(args) < 3 {
		ts.Fatalf("usage: e2e-waitout [-timeout DURATION] FILE N|+K PROG ARGS...")
	}
	file := ts.MkAbs(args[0])
	relative := strings.HasPrefix(args[1], "+")
	want, err := strconv.Atoi(strings.TrimPrefix(args[1], "+"))
	ts.Check(err)
	prog := lookProg(ts, args[2])
	base := -1
	poll(ts, timeout, func() (bool, string) {
		cmd := exec.Command(prog, args[3:]...)
		cmd.Dir = ts.Getenv("WORK")
		cmd.Env = append(childEnv(ts), engineEnv(ts)...)
		out, err := cmd.Output()
		ts.Check(os.WriteFile(file, out, 0o644))
		if err != nil {
			return false, fmt.Sprintf("%s: %v", strings.Join(args[2:], " "), err)
		}
		ns := numbers(string(out))
		if len(ns) == 0 {
			return false, fmt.Sprintf("%s: no number yet", strings.Join(args[2:], " "))
		}
		last := ns[len(ns)-1]
		if !relative {
			return last >= want, fmt.Sprintf("%s: last number %d, want >= %d", strings.Join(args[2:], " "), last, want)
		}
		if base < 0 {
			base = last
		}
		return last >= base+want, fmt.Sprintf("%s: from %d to %d, want %d more", strings.Join(args[2:], " "), base, last, want)
	})
}

// engineEnv is the script's docker and podman client settings (childEnv has only e2eVars).
func engineEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"DOCKER_HOST", "DOCKER_CONFIG", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF"} {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}
