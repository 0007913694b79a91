package gpu

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The reasons a node cannot take a checkpoint, each wrapped by Node.Fits's errors.
var (
	ErrDriverBranch = errors.New("another NVIDIA driver branch")
	ErrGPUModel     = errors.New("another GPU model")
	ErrGPUCount     = errors.New("too few GPUs")
	ErrGPUMemory    = errors.New("too little free GPU memory")
)

// Checkpoint is the GPU side of a checkpoint, for its manifest.
type Checkpoint struct {
	Driver     string    `json:"driver"`    // "580.159.04"
	GPUModel   string    `json:"gpu_model"` // Node.Model
	GPUCount   int       `json:"gpu_count"`
	Processes  []Process `json:"processes"`
	TotalBytes uint64    `json:"total_bytes"` // what the processes held on the GPU
}

// bytesOf is what the process with this pid in the container's namespace held; the total
// when it is not known (a deadline must rather be too long than too short).
func (c *Checkpoint) bytesOf(nsPID int) uint64 {
	if c == nil {
		return 0
	}
	for _, p := range c.Processes {
		if nsPID != 0 && p.NSPID == nsPID {
			return p.Bytes
		}
	}
	return c.TotalBytes
}

// Node is what nvidia-smi tells of this node's GPUs.
type Node struct {
	Driver string    `json:"driver"`
	GPUs   []GPUInfo `json:"gpus"`
}

// GPUInfo is one GPU.
type GPUInfo struct {
	Index      int    `json:"index"`
	Name       string `json:"name"`
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
}

// Model is the GPUs' model name; on a node of mixed models, the names in index order
// joined by " + " (so such a node takes only checkpoints of a node mixed alike).
func (n *Node) Model() string {
	var names []string
	for _, g := range n.GPUs {
		if len(names) == 0 || names[len(names)-1] != g.Name {
			names = append(names, g.Name)
		}
	}
	return strings.Join(names, " + ")
}

// Fits says why this node cannot take the checkpoint: another driver branch (the major
// version differs), another GPU model, fewer GPUs, or too little free GPU memory (all the
// checkpoint's processes together on all GPUs, and its biggest process on one). Each
// reason is an error wrapping its sentinel; nil means it fits.
func (n *Node) Fits(c *Checkpoint) error {
	if c == nil || len(c.Processes) == 0 {
		return nil
	}
	var errs []error
	if major(n.Driver) != major(c.Driver) {
		errs = append(errs, fmt.Errorf("gpu: the node's driver %s is of another branch than the checkpoint's %s: %w",
			n.Driver, c.Driver, ErrDriverBranch))
	}
	if m := n.Model(); m != c.GPUModel {
		errs = append(errs, fmt.Errorf("gpu: the node has %q, the checkpoint was taken on %q: %w", m, c.GPUModel, ErrGPUModel))
	}
	if len(n.GPUs) < c.GPUCount {
		errs = append(errs, fmt.Errorf("gpu: the node has %d GPUs, the checkpoint was taken with %d: %w",
			len(n.GPUs), c.GPUCount, ErrGPUCount))
	}
	var free, maxFree, biggest uint64
	for _, g := range n.GPUs {
		free += g.FreeBytes
		maxFree = max(maxFree, g.FreeBytes)
	}
	for _, p := range c.Processes {
		biggest = max(biggest, p.Bytes)
	}
	switch {
	case c.TotalBytes > free:
		errs = append(errs, fmt.Errorf("gpu: the checkpoint's processes held %s on the GPU, the node has %s free: %w",
			mib(c.TotalBytes), mib(free), ErrGPUMemory))
	case biggest > maxFree:
		errs = append(errs, fmt.Errorf("gpu: a process of the checkpoint held %s on one GPU, the node's GPUs have at most %s free: %w",
			mib(biggest), mib(maxFree), ErrGPUMemory))
	}
	return errors.Join(errs...)
}

func major(version string) string {
	m, _, _ := strings.Cut(strings.TrimSpace(version), ".")
	return m
}

func mib(b uint64) string { return strconv.FormatUint(b>>20, 10) + " MiB" }

// Fits is a restore's GPU check: a checkpoint with CUDA state needs GPU support on and this
// node's GPUs (returned, once read) able to take it: another driver branch, another model,
// fewer GPUs or too little free memory is an error saying so. A checkpoint without CUDA
// state always fits.
func (g *GPU) Fits(ctx context.Context, rec *Checkpoint) (*Node, error) {
	if rec == nil || len(rec.Processes) == 0 {
		return nil, nil
	}
	if !g.Enabled() {
		return nil, fmt.Errorf("gpu: the checkpoint holds the CUDA state of %d processes, this node cannot resume it: %w",
			len(rec.Processes), ErrDisabled)
	}
	n, err := g.Node(ctx)
	if err != nil {
		return nil, fmt.Errorf("this node's GPUs: %w", err)
	}
	return n, n.Fits(rec)
}

// Node asks nvidia-smi for the node's driver and GPUs.
func (g *GPU) Node(ctx context.Context) (*Node, error) {
	rows, err := g.smi(ctx, "--query-gpu=index,name,memory.total,memory.free,driver_version", 5)
	if err != nil {
		return nil, err
	}
	n := &Node{}
	for _, r := range rows {
		idx, err1 := strconv.Atoi(r[0])
		total, err2 := parseMiB(r[2])
		free, err3 := parseMiB(r[3])
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("gpu: nvidia-smi: %q: %w", strings.Join(r, ", "), err)
		}
		n.GPUs = append(n.GPUs, GPUInfo{Index: idx, Name: r[1], TotalBytes: total, FreeBytes: free})
		n.Driver = r[4]
	}
	if len(n.GPUs) == 0 {
		return nil, errors.New("gpu: nvidia-smi lists no GPU")
	}
	return n, nil
}

// Record is the GPU side of a checkpoint of procs: the node's driver and GPUs, and what
// each process holds on the GPU now (nvidia-smi's used_memory; 0 when it lists none).
func (g *GPU) Record(ctx context.Context, procs []Process) (*Checkpoint, error) {
	n, err := g.Node(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := g.smi(ctx, "--query-compute-apps=pid,used_memory", 2)
	if err != nil {
		return nil, err
	}
	used := map[int]uint64{}
	for _, r := range rows {
		pid, err := strconv.Atoi(r[0])
		if err != nil {
			continue
		}
		b, err := parseMiB(r[1])
		if err != nil {
			continue // "[N/A]": not known, so the deadline gets the base only
		}
		used[pid] += b
	}
	c := &Checkpoint{Driver: n.Driver, GPUModel: n.Model(), GPUCount: len(n.GPUs)}
	for _, p := range procs {
		p.Bytes = used[p.PID]
		c.TotalBytes += p.Bytes
		c.Processes = append(c.Processes, p)
	}
	return c, nil
}

// smi runs an nvidia-smi query and returns its rows of fields fields. A line with another
// number of fields (such as "No running processes found") is not a row.
func (g *GPU) smi(ctx context.Context, query string, fields int) ([][]string, error) {
	out, err := g.run(ctx, g.Limits.Query.Duration, or(g.NvidiaSMI, "nvidia-smi"), query, "--format=csv,noheader,nounits")
	if err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, ",")
		if len(f) != fields {
			continue
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		rows = append(rows, f)
	}
	return rows, nil
}

func parseMiB(s string) (uint64, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number of MiB", s)
	}
	return v << 20, nil
}
