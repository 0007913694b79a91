package store

import (
	"bufio"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ThisNode describes this machine as a manifest records it and a restore checks it: name,
// kernel and architecture from uname, CPU flags from cpuinfo (/proc/cpuinfo), and the
// versions the caller found.
func ThisNode(cpuinfo, runcVersion, criuVersion string) Node {
	n := Node{RuncVersion: runcVersion, CriuVersion: criuVersion, CPUFlags: cpuFlags(cpuinfo)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		n.Name = unix.ByteSliceToString(u.Nodename[:])
		n.Kernel = unix.ByteSliceToString(u.Release[:])
		n.Arch = unix.ByteSliceToString(u.Machine[:])
	}
	return n
}

// cpuFlags reads the first "flags" line of cpuinfo, sorted.
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
