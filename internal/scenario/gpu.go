package scenario

import (
	"os"
	"path/filepath"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc/fakecuda"
)

// GPUPrograms are the fake GPU tools a test binary plays beside Programs (see package
// fakecuda for their environment): "cuda-checkpoint" (NVIDIA's, with the real one's
// answers, state kept per pid in $FAKECUDA_DIR, faults from $FAKECUDA_FAULTS),
// "nvidia-smi" (its --query-gpu and --query-compute-apps) and "cudaproc" (a process that
// holds fake /dev/nvidia* files under $FAKECUDA_DEV, as a CUDA process does).
func GPUPrograms() map[string]func() {
	return map[string]func(){
		"cuda-checkpoint": func() { os.Exit(fakecuda.CheckpointMain()) },
		"nvidia-smi":      func() { os.Exit(fakecuda.SMIMain()) },
		"cudaproc":        func() { os.Exit(fakecuda.ProcessMain()) },
	}
}

// GPUSetup gives a scenario the fakes' directory ($FAKECUDA_DIR), call log
// ($FAKECUDA_CALLS), device prefix ($FAKECUDA_DEV, $WORK/dev/nvidia) and driver library
// ($FAKECUDA_LIB, $WORK/lib/libcuda.so.1). It leaves GPU support off in tardis: a scenario
// turns it on with TARDIS_CUDA_CHECKPOINT=cuda-checkpoint.
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
	return nil
}
