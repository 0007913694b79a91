package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tardis-runtime/tardis/internal/rootfs"
)

// The Kubernetes path without a kubelet: containerd's CRI plugin driven by crictl, the way
// a kubelet drives it, with tardis as the runtime handler "tardis". The scripts are
// testdata/e2e/k8s_*.txtar; they use one command, k8s, with these subcommands:
//
//	k8s images DIR
//	    writes two OCI image layout tarballs built here (no registry, no download):
//	    DIR/busybox.tar (localhost/tardis-e2e/busybox:1, busybox-static and its applet
//	    links, command /bin/sh) and DIR/pause.tar (localhost/tardis-e2e/pause:1, the
//	    same tree, command `sleep 2147483647`), for `ctr -n k8s.io images import`.
//	k8s node start|stop NODE
//	    a containerd of its own with the CRI plugin under $WORK/NODE (root, state, socket,
//	    runc roots, empty CNI conf dir), sandbox image the pause image, a runtime handler
//	    "tardis" (runc shim, BinaryName $TARDIS, pod_annotations and container_annotations
//	    ["dev.tardis.*"]) and the default handler "runc" (the real runc). Its environment
//	    has the script's TARDIS_* settings except TARDIS_STATE_DIR and TARDIS_WORK_DIR,
//	    which are the node's own ($WORK/NODE/tardis-state, -work): nodes share only the
//	    checkpoint root and the log. start sets SOCK_NODE (containerd's address, for ctr),
//	    CRICTL_NODE (crictl's config for the node), RUNC_ROOT_NODE (the tardis handler's
//	    runc root for namespace k8s.io), PLAIN_ROOT_NODE (the runc handler's) and
//	    STATE_NODE. stop removes everything of the node (below); it also happens at the end
//	    of the script, whatever happened.
//	k8s crictl [-set VAR] [-time LABEL] [-max DURATION] NODE ARGS...
//	    runs crictl against the node; its stdout and stderr are the command's. -set puts
//	    the trimmed stdout in VAR (an id from runp or create); -time logs the wall time
//	    as a measurement; -max fails if it took longer.
//	k8s waitrunning NODE CONTAINER-ID [TIMEOUT]
//	    waits until `crictl ps --id ID --state running` lists the container.
//	k8s mark NAME / k8s elapsed NAME LABEL
//	    logs the time since the mark as a measurement.
//	k8s subst FILE...
//	    expands $VARS of the script's environment in the files (pod configs name $WORK).
//
// Measurements are logged as "measure: LABEL: N ms".
func cmdK8s(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: k8s images|node|crictl|waitrunning|mark|elapsed|subst ...")
	}
	sub, args := args[0], args[1:]
	if neg && sub != "crictl" {
		ts.Fatalf("k8s %s does not take !", sub)
	}
	switch sub {
	case "images":
		k8sImages(ts, args)
	case "node":
		k8sNode(ts, args)
	case "crictl":
		k8sCrictl(ts, neg, args)
	case "waitrunning":
		k8sWaitRunning(ts, args)
	case "mark", "elapsed":
		k8sMark(ts, sub, args)
	case "subst":
		if len(args) == 0 {
			ts.Fatalf("usage: k8s subst FILE...")
		}
		for _, f := range args {
			p := ts.MkAbs(f)
			b, err := os.ReadFile(p)
			ts.Check(err)
			ts.Check(os.WriteFile(p, []byte(os.Expand(string(b), ts.Getenv)), 0o644))
		}
	default:
		ts.Fatalf("k8s: unknown subcommand %s", sub)
	}
}

// Image names: "localhost/" keeps any registry out of it (nothing is ever pulled).
const (
	k8sBusyboxImage = "localhost/tardis-e2e/busybox:1"
	k8sPauseImage   = "localhost/tardis-e2e/pause:1"
)

func k8sImages(ts *testscript.TestScript, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: k8s images DIR")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	layer, diffID := busyboxLayer(ts)
	for _, img := range []struct {
		file, name string
		cmd        []string
	}{
		{"busybox.tar", k8sBusyboxImage, []string{"/bin/sh"}},
		{"pause.tar", k8sPauseImage, []string{"/bin/sleep", "2147483647"}},
	} {
		b, err := ociArchive(img.name, img.cmd, layer, diffID)
		ts.Check(err)
		ts.Check(os.WriteFile(filepath.Join(dir, img.file), b, 0o644))
	}
}

// fixedTime makes the images the same bytes every time.
var fixedTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// busyboxLayer is a gzip'd tar of a root filesystem of busybox-static and its applet
// links, and the digest of the uncompressed tar (the image config's diff_id).
func busyboxLayer(ts *testscript.TestScript) (gz []byte, diffID string) {
	src := ts.Getenv("BUSYBOX")
	bb, err := os.ReadFile(src)
	ts.Check(err)
	out, err := exec.Command(src, "--list").Output()
	ts.Check(err)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	hdr := func(h *tar.Header) {
		h.ModTime, h.Format = fixedTime, tar.FormatPAX
		ts.Check(tw.WriteHeader(h))
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "run", "sys", "tmp", "var"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		hdr(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode})
	}
	hdr(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))})
	_, err = tw.Write(bb)
	ts.Check(err)
	applets := strings.Fields(string(out))
	sort.Strings(applets)
	for _, a := range applets {
		if a != "busybox" {
			hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777})
		}
	}
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
	} {
		hdr(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))})
		_, err = tw.Write([]byte(content))
		ts.Check(err)
	}
	ts.Check(tw.Close())
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, err = zw.Write(raw.Bytes())
	ts.Check(err)
	ts.Check(zw.Close())
	return zb.Bytes(), digestOf(raw.Bytes())
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ociArchive is an OCI image layout as a tar: oci-layout, index.json (naming the image
// with io.containerd.image.name, which `ctr images import` uses), and the blobs: the
// manifest, the config and the one layer.
func ociArchive(name string, cmd []string, layer []byte, diffID string) ([]byte, error) {
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	config, err := json.Marshal(map[string]any{
		"created":      fixedTime.Format(time.RFC3339),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config": map[string]any{
			"Env":        []string{"PATH=/bin"},
			"Cmd":        cmd,
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history": []map[string]any{{"created": fixedTime.Format(time.RFC3339), "created_by": "tardis e2e: busybox-static"}},
	})
	if err != nil {
		return nil, err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digestOf(config), Size: len(config)},
		"layers":        []desc{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: digestOf(layer), Size: len(layer)}},
	})
	if err != nil {
		return nil, err
	}
	_, tag, _ := strings.Cut(name[strings.LastIndexByte(name, '/')+1:], ":")
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []desc{{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    digestOf(manifest),
			Size:      len(manifest),
			Platform:  map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: fixedTime}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: fixedTime}); err != nil {
			return nil, err
		}
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := file("index.json", index); err != nil {
		return nil, err
	}
	for _, b := range [][]byte{manifest, config, layer} {
		if err := file("blobs/sha256/"+strings.TrimPrefix(digestOf(b), "sha256:"), b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// k8sNodes are a script's CRI nodes, each removed once (by k8s node stop or at the end).
type k8sNodes struct {
	mu    sync.Mutex
	nodes map[string]*k8sNodeProc
	marks map[string]time.Time
}

type k8sNodeProc struct {
	name, dir, sock string
	runc            string // the real runc, for the cleanup
	cmd             *exec.Cmd
	once            sync.Once
}

// k8sScripts holds each running script's nodes and marks, keyed by its TestScript.
var k8sScripts sync.Map

func nodesOf(ts *testscript.TestScript) *k8sNodes {
	if n, ok := k8sScripts.Load(ts); ok {
		return n.(*k8sNodes)
	}
	n := &k8sNodes{nodes: map[string]*k8sNodeProc{}, marks: map[string]time.Time{}}
	k8sScripts.Store(ts, n)
	ts.Defer(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, p := range n.nodes {
			p.remove(ts.Logf)
		}
		k8sScripts.Delete(ts)
	})
	return n
}

func k8sNode(ts *testscript.TestScript, args []string) {
	if len(args) != 2 || (args[0] != "start" && args[0] != "stop") {
		ts.Fatalf("usage: k8s node start|stop NODE")
	}
	name := args[1]
	nodes := nodesOf(ts)
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	if args[0] == "stop" {
		p, ok := nodes.nodes[name]
		if !ok {
			ts.Fatalf("no node %s", name)
		}
		p.remove(ts.Logf)
		return
	}
	if _, ok := nodes.nodes[name]; ok {
		ts.Fatalf("node %s already started", name)
	}
	dir := ts.MkAbs(name)
	sock := filepath.Join(dir, "c.sock")
	for _, d := range []string{"cni-conf", "cni-bin", "tardis-state", "tardis-work", "logs"} {
		ts.Check(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	cfg := containerdBaseConfig(ts, dir, sock, false) + k8sCRIConfig(ts, dir)
	cfgPath := filepath.Join(dir, "config.toml")
	ts.Check(os.WriteFile(cfgPath, []byte(cfg), 0o644))
	crictlCfg := filepath.Join(dir, "crictl.yaml")
	ts.Check(os.WriteFile(crictlCfg, []byte(fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", sock, sock)), 0o644))

	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(ts.Getenv("CONTAINERD"), "--config", cfgPath, "--log-level", "debug")
	var env []string
	for _, kv := range childEnv(ts) {
		if !strings.HasPrefix(kv, "TARDIS_STATE_DIR=") && !strings.HasPrefix(kv, "TARDIS_WORK_DIR=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TARDIS_STATE_DIR="+filepath.Join(dir, "tardis-state"), "TARDIS_WORK_DIR="+filepath.Join(dir, "tardis-work"))
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	p := &k8sNodeProc{name: name, dir: dir, sock: sock, runc: ts.Getenv("RUNC"), cmd: cmd}
	nodes.nodes[name] = p
	start := time.Now()
	poll(ts, 30*time.Second, func() (bool, string) {
		if conn, err := net.Dial("unix", sock); err != nil {
			return false, fmt.Sprintf("containerd socket %s: %v (see %s/containerd.log)", sock, err, name)
		} else {
			conn.Close()
		}
		out, err := exec.Command(lookProg(ts, "crictl"), "--config", crictlCfg, "info").CombinedOutput()
		return err == nil, fmt.Sprintf("crictl info: %v: %s", err, out)
	})
	ts.Logf("node %s: containerd with CRI ready after %s", name, time.Since(start).Round(time.Millisecond))
	for k, v := range map[string]string{
		"SOCK_":       sock,
		"CRICTL_":     crictlCfg,
		"RUNC_ROOT_":  filepath.Join(dir, "runc", "k8s.io"),
		"PLAIN_ROOT_": filepath.Join(dir, "runc-plain", "k8s.io"),
		"STATE_":      filepath.Join(dir, "tardis-state"),
	} {
		ts.Setenv(k+name, v)
	}
}

// k8sCRIConfig is the CRI part of a node's containerd config, in the containerd's config
// version. Version 2 (containerd 1.x) has it all under "io.containerd.grpc.v1.cri";
// version 3 (containerd 2.x) splits it: images (snapshotter, the sandbox image as a
// pinned image) under "io.containerd.cri.v1.images", containers (runtimes, CNI, OOM score
// and AppArmor) under "io.containerd.cri.v1.runtime", the streaming server under
// "io.containerd.grpc.v1.cri"; the CNI bin_dir became a list, bin_dirs.
func k8sCRIConfig(ts *testscript.TestScript, dir string) string {
	runtimes := func(prefix string) string {
		return fmt.Sprintf(`    [%[1]s.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [%[1]s.runtimes.runc.options]
        BinaryName = %[2]q
        Root = %[3]q
    [%[1]s.runtimes.tardis]
      runtime_type = "io.containerd.runc.v2"
      pod_annotations = ["dev.tardis.*"]
      container_annotations = ["dev.tardis.*"]
      [%[1]s.runtimes.tardis.options]
        BinaryName = %[4]q
        Root = %[5]q
`, prefix, ts.Getenv("RUNC"), filepath.Join(dir, "runc-plain"), ts.Getenv("TARDIS"), filepath.Join(dir, "runc"))
	}
	if containerd2(ts) {
		images, rt, grpc := `plugins.'io.containerd.cri.v1.images'`, `plugins.'io.containerd.cri.v1.runtime'`, `plugins.'io.containerd.grpc.v1.cri'`
		return fmt.Sprintf(`[%[1]s]
  snapshotter = "overlayfs"
  [%[1]s.pinned_images]
    sandbox = %[2]q
[%[3]s]
  restrict_oom_score_adj = true
  disable_apparmor = true
  [%[3]s.containerd]
    default_runtime_name = "runc"
%[4]s  [%[3]s.cni]
    conf_dir = %[5]q
    bin_dirs = [%[6]q]
[%[7]s]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, images, k8sPauseImage, rt, runtimes(rt+".containerd"),
			filepath.Join(dir, "cni-conf"), filepath.Join(dir, "cni-bin"), grpc)
	}
	cri := `plugins."io.containerd.grpc.v1.cri"`
	return fmt.Sprintf(`[%[1]s]
  sandbox_image = %[2]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [%[1]s.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
%[3]s  [%[1]s.cni]
    conf_dir = %[4]q
    bin_dir = %[5]q
`, cri, k8sPauseImage, runtimes(cri+".containerd"), filepath.Join(dir, "cni-conf"), filepath.Join(dir, "cni-bin"))
}

// remove takes the node down and everything it made: its containers (with the real runc,
// so nothing is checkpointed on the way out), containerd, any shim of it, its mounts.
func (p *k8sNodeProc) remove(logf func(string, ...any)) {
	p.once.Do(func() {
		for _, root := range []string{filepath.Join(p.dir, "runc", "k8s.io"), filepath.Join(p.dir, "runc-plain", "k8s.io")} {
			out, err := exec.Command(p.runc, "--root", root, "list", "-q").Output()
			if err != nil {
				continue
			}
			for _, id := range strings.Fields(string(out)) {
				if b, err := exec.Command(p.runc, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
					logf("node %s cleanup: runc delete --force %s: %v: %s", p.name, id, err, b)
				}
			}
		}
		// With their processes gone, the CRI plugin removes the pods and their shims exit
		// cleanly (each removes its socket under /run/containerd/s).
		if b, err := exec.Command(lookPathOr("crictl"), "--config", filepath.Join(p.dir, "crictl.yaml"),
			"--timeout", "20s", "rmp", "--all", "--force").CombinedOutput(); err != nil {
			logf("node %s cleanup: crictl rmp --all --force: %v: %s", p.name, err, b)
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		for _, pid := range pidsWithArg(p.sock) {
			socks := unixSocketsOf(pid)
			logf("node %s cleanup: killing leftover shim %d (sockets %v)", p.name, pid, socks)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for _, s := range socks {
				if strings.HasPrefix(s, "/run/containerd/s/") {
					_ = os.Remove(s)
				}
			}
		}
		points, _ := rootfs.MountsUnder(p.dir) // cleanup: what can be read is unmounted
		for _, mp := range points {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				logf("node %s cleanup: umount %s: %v", p.name, mp, err)
			}
		}
	})
}

func k8sCrictl(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "k8s crictl [-set VAR] [-time LABEL] [-max DURATION] NODE ARGS..."
	opts, args := takeOpts(ts, usage, args, "set", "time", "max")
	setVar, label, max := opts["set"], opts["time"], opts.duration(ts, "max")
	if len(args) < 2 {
		ts.Fatalf("usage: %s", usage)
	}
	cfg := ts.Getenv("CRICTL_" + args[0])
	if cfg == "" {
		ts.Fatalf("no node %s (k8s node start %s)", args[0], args[0])
	}
	cmd := exec.Command(lookProg(ts, "crictl"), append([]string{"--config", cfg}, args[1:]...)...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = childEnv(ts)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	ts.Stdout().Write(stdout.Bytes())
	ts.Stderr().Write(stderr.Bytes())
	if label != "" {
		ts.Logf("measure: %s: %d ms", label, took.Milliseconds())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		ts.Fatalf("crictl: %v", err)
	}
	if neg != (err != nil) {
		ts.Fatalf("crictl %s: %v (want %s)", strings.Join(args[1:], " "), err, map[bool]string{true: "failure", false: "success"}[neg])
	}
	if max > 0 && took > max {
		ts.Fatalf("crictl %s took %s, more than %s", strings.Join(args[1:], " "), took.Round(time.Millisecond), max)
	}
	if setVar != "" {
		ts.Setenv(setVar, strings.TrimSpace(stdout.String()))
	}
}

func k8sWaitRunning(ts *testscript.TestScript, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: k8s waitrunning NODE CONTAINER-ID [TIMEOUT]")
	}
	cfg := ts.Getenv("CRICTL_" + args[0])
	if cfg == "" {
		ts.Fatalf("no node %s", args[0])
	}
	crictl := lookProg(ts, "crictl")
	poll(ts, timeoutArg(ts, args, 2), func() (bool, string) {
		out, err := exec.Command(crictl, "--config", cfg, "ps", "--id", args[1], "--state", "running", "-q").CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) != "", fmt.Sprintf("crictl ps --id %s --state running: %v: %q", args[1], err, out)
	})
}

func k8sMark(ts *testscript.TestScript, sub string, args []string) {
	nodes := nodesOf(ts)
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	if sub == "mark" {
		if len(args) != 1 {
			ts.Fatalf("usage: k8s mark NAME")
		}
		nodes.marks[args[0]] = time.Now()
		return
	}
	if len(args) != 2 {
		ts.Fatalf("usage: k8s elapsed NAME LABEL")
	}
	t, ok := nodes.marks[args[0]]
	if !ok {
		ts.Fatalf("no mark %s", args[0])
	}
	ts.Logf("measure: %s: %d ms", args[1], time.Since(t).Milliseconds())
}

func lookPathOr(name string) string {
	if p, err := lookPathOutsideTestscript(name); err == nil {
		return p
	}
	return name
}

// unixSocketsOf lists the paths of the unix sockets process pid has open.
func unixSocketsOf(pid int) []string {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		return nil
	}
	var paths []string
	// Num RefCount Protocol Flags Type St Inode Path
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], "/") {
			paths = append(paths, f[7])
		}
	}
	return paths
}
