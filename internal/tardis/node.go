package tardis

import (
	"bufio"
	"context"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tardis-runtime/tardis/internal/store"
)

// thisNode describes this machine as a checkpoint manifest records it.
func (a *app) thisNode(ctx context.Context) store.Node {
	n := store.Node{RuncVersion: a.runc.Version(ctx), CriuVersion: a.criu.Version(ctx)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		n.Name = unix.ByteSliceToString(u.Nodename[:])
		n.Kernel = unix.ByteSliceToString(u.Release[:])
		n.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	n.CPUFlags = cpuFlags(a.env.CPUInfo)
	return n
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
