package fakecuda

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Proc is a live fake CUDA process as its files in $FAKECUDA_DIR describe it.
type Proc struct {
	PID     int
	State   string // running, locked or checkpointed
	MiB     uint64
	Devices string // "open" or "closed"
	start   uint64
}

// Procs are the live fake CUDA processes of the state directory d ($FAKECUDA_DIR), in the
// order they started (a program's own processes before the children it started).
func Procs(d string) []Proc {
	if d == "" {
		return nil
	}
	matches, _ := filepath.Glob(filepath.Join(d, "*.json"))
	var out []Proc
	for _, m := range matches {
		pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(m), ".json"))
		if err != nil {
			continue
		}
		st, err := loadIn(d, pid)
		if err != nil || st == nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(d, strconv.Itoa(pid)+".devices"))
		start, _ := strconv.ParseUint(st.Start, 10, 64)
		out = append(out, Proc{PID: pid, State: st.State, MiB: st.MiB, Devices: string(b), start: start})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].start != out[j].start {
			return out[i].start < out[j].start
		}
		return out[i].PID < out[j].PID
	})
	return out
}

// KillAll kills (SIGKILL) every live fake CUDA process of the state directory d, for a
// test's end.
func KillAll(d string) {
	for _, p := range Procs(d) {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
}
