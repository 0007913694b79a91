package tardis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// checkRoom refuses, before the dump, a checkpoint that the checkpoint root has no room
// for: what CRIU will write (the memory of the container's processes) and the files, with
// a margin. A container whose memory cannot be told is not refused for it.
func (a *app) checkRoom(pid int, files int64) error {
	mem, err := containerMemory(pid)
	if err != nil {
		a.log.Info("cannot estimate the container's memory before the dump", "error", err.Error())
	}
	dir := a.cfg.CheckpointRoot
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return fmt.Errorf("checkpoint root: %w", err)
	}
	free := int64(sfs.Bavail) * sfs.Bsize
	need := mem + files
	need += need/10 + 1<<20 // CRIU's own small images, its logs, the manifest
	if need > free {
		return fmt.Errorf("not enough room in the checkpoint root %s: about %s needed (memory %s, files %s), %s free",
			a.cfg.CheckpointRoot, size(need), size(mem), size(files), size(free))
	}
	return nil
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", (n+1023)/1024)
}

// containerMemory is about what CRIU dumps of a container: the anonymous, swapped and
// shared memory of every process in the cgroup of its init (pid).
func containerMemory(pid int) (int64, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p != pid {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p))
			if err != nil || !bytes.Equal(b, cg) {
				continue
			}
		}
		total += rollup(p)
	}
	return total, nil
}

// rollup is a process's Anonymous + Swap + Pss_Shmem from smaps_rollup, in bytes.
func rollup(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "Anonymous" && k != "Swap" && k != "Pss_Shmem") {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) > 0 {
			kb, _ := strconv.ParseInt(fields[0], 10, 64)
			n += kb << 10
		}
	}
	return n
}
