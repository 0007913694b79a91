package tardis

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tardis-runtime/tardis/internal/store"
)

// thisNode describes this machine as a checkpoint manifest records it.
func (a *app) thisNode(ctx context.Context) store.Node {
	n := store.Node{RuncVersion: a.runc.Version(ctx), CriuVersion: a.criuVersion(ctx)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		n.Name = unix.ByteSliceToString(u.Nodename[:])
		n.Kernel = unix.ByteSliceToString(u.Release[:])
		n.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	n.CPUFlags = cpuFlags(a.env.CPUInfo)
	return n
}

// criuVersion runs `criu --version` ("Version: 4.1.1"); "" when CRIU cannot be run.
func (a *app) criuVersion(ctx context.Context) string {
	criu := a.cfg.Criu
	if criu == "" {
		criu = "criu"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, criu, "--version").Output()
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

// cpuFlags reads the first "flags" line of /proc/cpuinfo, sorted.
func cpuFlags(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "flags" {
			flags := strings.Fields(v)
			sort.Strings(flags)
			return flags
		}
	}
	return nil
}
