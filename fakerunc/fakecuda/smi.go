package fakecuda

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// noDriver is what nvidia-smi prints when it cannot reach the driver (exit 9).
const noDriver = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. " +
	"Make sure that the latest NVIDIA driver is installed and running."

type fakeGPU struct {
	name        string
	total, free uint64 // MiB
	freeGiven   bool
}

// app is a fake CUDA process holding memory on GPU 0.
type app struct {
	pid int
	mib uint64
}

// SMIMain runs the fake nvidia-smi over os.Args and returns its exit status. It answers
// --query-gpu and --query-compute-apps with --format=csv[,noheader][,nounits].
func SMIMain() int {
	args := os.Args[1:]
	logCall("nvidia-smi", args)
	var query, fields string
	header, units := true, true
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--query-gpu="), strings.HasPrefix(a, "--query-compute-apps="):
			q, f, _ := strings.Cut(a[2:], "=")
			query, fields = q, f
		case strings.HasPrefix(a, "--format="):
			for _, o := range strings.Split(strings.TrimPrefix(a, "--format="), ",") {
				switch o {
				case "csv":
				case "noheader":
					header = false
				case "nounits":
					units = false
				default:
					fmt.Printf("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n")
					return 2
				}
			}
		default:
			fmt.Printf("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n")
			return 2
		}
	}
	if query == "" {
		fmt.Println("fake nvidia-smi: only --query-gpu and --query-compute-apps are played")
		return 2
	}
	f, err := findFault(query, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake nvidia-smi: %v\n", err)
		return 2
	}
	switch f.kind {
	case "hang":
		hang()
	case "fail":
		if f.arg == "" {
			f.arg = noDriver
		}
		fmt.Println(f.arg)
		return 9
	case "lie":
		return 0
	}
	gpus, err := gpusFromEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fake nvidia-smi: %v\n", err)
		return 2
	}
	apps := liveApps()
	var used uint64
	for _, a := range apps {
		used += a.mib
	}
	driver := os.Getenv("FAKESMI_DRIVER")
	if driver == "" {
		driver = "580.159.04"
	}
	names := strings.Split(fields, ",")
	mem := func(v uint64) string {
		if units {
			return fmt.Sprintf("%d MiB", v)
		}
		return strconv.FormatUint(v, 10)
	}
	var rows [][]string
	switch query {
	case "query-gpu":
		for i, g := range gpus {
			free := g.free
			if !g.freeGiven {
				free = g.total
				if i == 0 {
					free -= min(used, g.total)
				}
			}
			row := make([]string, len(names))
			for j, n := range names {
				switch n {
				case "index":
					row[j] = strconv.Itoa(i)
				case "count":
					row[j] = strconv.Itoa(len(gpus))
				case "name":
					row[j] = g.name
				case "uuid":
					row[j] = fmt.Sprintf("GPU-fake-%d", i)
				case "driver_version":
					row[j] = driver
				case "memory.total":
					row[j] = mem(g.total)
				case "memory.free":
					row[j] = mem(free)
				case "memory.used":
					row[j] = mem(g.total - free)
				default:
					return badField(n)
				}
			}
			rows = append(rows, row)
		}
	case "query-compute-apps":
		for _, a := range apps {
			row := make([]string, len(names))
			for j, n := range names {
				switch n {
				case "pid":
					row[j] = strconv.Itoa(a.pid)
				case "used_memory":
					row[j] = mem(a.mib)
				case "process_name":
					row[j], _ = os.Readlink(filepath.Join("/proc", strconv.Itoa(a.pid), "exe"))
				case "gpu_uuid":
					row[j] = "GPU-fake-0"
				default:
					return badField(n)
				}
			}
			rows = append(rows, row)
		}
	}
	if header {
		h := make([]string, len(names))
		for j, n := range names {
			h[j] = n
			if n == "memory.total" || n == "memory.free" || n == "memory.used" || n == "used_memory" {
				h[j] += " [MiB]"
			}
		}
		fmt.Println(strings.Join(h, ", "))
	}
	for _, r := range rows {
		fmt.Println(strings.Join(r, ", "))
	}
	return 0
}

// badField is nvidia-smi's answer to a field it does not know (exit code not checked
// against the real one).
func badField(n string) int {
	fmt.Printf("Field \"%s\" is not a valid field to query.\n\n", n)
	return 2
}

func gpusFromEnv() ([]fakeGPU, error) {
	spec := os.Getenv("FAKESMI_GPUS")
	if spec == "" {
		spec = "NVIDIA H200:143771"
	}
	var gpus []fakeGPU
	for _, e := range strings.Split(spec, ";") {
		f := strings.Split(strings.TrimSpace(e), ":")
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("FAKESMI_GPUS entry %q: want NAME:TOTAL_MIB[:FREE_MIB]", e)
		}
		g := fakeGPU{name: f[0]}
		var err error
		if g.total, err = strconv.ParseUint(f[1], 10, 64); err != nil {
			return nil, fmt.Errorf("FAKESMI_GPUS entry %q: %w", e, err)
		}
		if g.freeGiven = len(f) == 3; g.freeGiven {
			if g.free, err = strconv.ParseUint(f[2], 10, 64); err != nil {
				return nil, fmt.Errorf("FAKESMI_GPUS entry %q: %w", e, err)
			}
		}
		gpus = append(gpus, g)
	}
	return gpus, nil
}

// liveApps are the fake CUDA processes that hold memory on the GPU: alive, and not
// checkpointed (a suspended process holds none).
func liveApps() []app {
	if dir() == "" {
		return nil
	}
	matches, _ := filepath.Glob(filepath.Join(dir(), "*.json"))
	var apps []app
	for _, m := range matches {
		pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(m), ".json"))
		if err != nil {
			continue
		}
		st, err := load(pid)
		if err != nil || st == nil || st.State == checkpointed {
			continue
		}
		apps = append(apps, app{pid, st.MiB})
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].pid < apps[j].pid })
	return apps
}
