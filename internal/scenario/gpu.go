package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc/fakecuda"
)

// GPUPrograms are the fake GPU tools a test binary plays beside Programs (see package
// fakecuda for their environment): "cuda-checkpoint" (NVIDIA's, with the real one's
// answers, state kept per pid in $FAKECUDA_DIR, faults from $FAKECUDA_FAULTS),
// "nvidia-smi" (its --query-gpu and --query-compute-apps) and "cudaproc" (a process that
// holds fake /dev/nvidia* files under $FAKECUDA_DEV, as a CUDA process does).
func GPUPrograms() map[string]func() {
	return fakecuda.Programs()
}

// GPUSetup gives a scenario the fakes' directory ($FAKECUDA_DIR), call log
// ($FAKECUDA_CALLS), device prefix ($FAKECUDA_DEV, $WORK/dev/nvidia, where tardis looks for
// GPU devices too) and driver library ($FAKECUDA_LIB, $WORK/lib/libcuda.so.1). It leaves
// GPU support off in tardis: a scenario turns it on with
// TARDIS_CUDA_CHECKPOINT=cuda-checkpoint. The fake CUDA processes a scenario leaves running
// are killed at its end.
func GPUSetup(e *testscript.Env) error {
	w := e.WorkDir
	for _, d := range []string{"cuda", "dev", "lib"} {
		if err := os.MkdirAll(filepath.Join(w, d), 0o755); err != nil {
			return err
		}
	}
	e.Setenv("FAKECUDA_DIR", filepath.Join(w, "cuda"))
	e.Setenv("FAKECUDA_CALLS", filepath.Join(w, "cuda-calls.log"))
	e.Setenv("FAKECUDA_DEV", filepath.Join(w, "dev", "nvidia"))
	e.Setenv("FAKECUDA_LIB", filepath.Join(w, "lib", "libcuda.so.1"))
	e.Defer(func() { fakecuda.KillAll(filepath.Join(w, "cuda")) })
	return nil
}

// GPUCmds are the scenario commands about the fake GPU, documented one by one below.
func GPUCmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"cudaprocs": cmdCudaProcs,
		"cudafault": cmdCudaFault,
		"cudacalls": cmdCudaCalls,
	}
}

// cudaprocs: prints the live fake CUDA processes, one a line in the order they started, as
// "cudaN: pid PID STATE MIB MiB devices open|closed", and remembers each pid's name for
// cudacalls; `! cudaprocs` checks there is none.
func cmdCudaProcs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 0 {
		ts.Fatalf("usage: cudaprocs")
	}
	ps := fakecuda.Procs(ts.Getenv("FAKECUDA_DIR"))
	if neg {
		if len(ps) > 0 {
			ts.Fatalf("fake CUDA processes live: %+v", ps)
		}
		return
	}
	names, err := os.OpenFile(ts.MkAbs(cudaNames), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	ts.Check(err)
	defer names.Close()
	for i, p := range ps {
		fmt.Fprintf(ts.Stdout(), "cuda%d: pid %d %s %d MiB devices %s\n", i+1, p.PID, p.State, p.MiB, p.Devices)
		fmt.Fprintf(names, "%d cuda%d\n", p.PID, i+1)
	}
}

// cudaNames is where cudaprocs remembers the names it gave pids.
const cudaNames = ".cuda-names"

// cudacalls: prints the fake GPU tools' calls ($FAKECUDA_CALLS), with each pid cudaprocs
// has named written as its name ("--pid cuda1"), so that a scenario can check which
// process each step was for; then empties the log.
func cmdCudaCalls(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: cudacalls")
	}
	names := map[string]string{}
	if b, err := os.ReadFile(ts.MkAbs(cudaNames)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if pid, name, ok := strings.Cut(line, " "); ok {
				names[pid] = name
			}
		}
	}
	path := ts.Getenv("FAKECUDA_CALLS")
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		ts.Fatalf("cudacalls: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		for i := 1; i < len(f); i++ {
			if name, ok := names[f[i]]; ok && f[i-1] == "--pid" {
				f[i] = name
			}
		}
		if len(f) > 0 {
			fmt.Fprintln(ts.Stdout(), strings.Join(f, " "))
		}
	}
	ts.Check(os.WriteFile(path, nil, 0o644))
}

// cudafault N ACTION:KIND[=ARG]: the fake cuda-checkpoint misbehaves so for cudaN, the
// Nth live fake CUDA process (as cudaprocs numbers them), from now on (a line of
// $FAKECUDA_DIR/faults; see package fakecuda for the faults).
func cmdCudaFault(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cudafault N ACTION:KIND[=ARG]")
	}
	n, err := strconv.Atoi(args[0])
	ps := fakecuda.Procs(ts.Getenv("FAKECUDA_DIR"))
	if err != nil || n < 1 || n > len(ps) {
		ts.Fatalf("cudafault: %q: there are %d fake CUDA processes", args[0], len(ps))
	}
	f, err := os.OpenFile(filepath.Join(ts.Getenv("FAKECUDA_DIR"), "faults"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	ts.Check(err)
	_, err = fmt.Fprintf(f, "%s@%d\n", args[1], ps[n-1].PID)
	ts.Check(err)
	ts.Check(f.Close())
}
