package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

func init() {
	commands = append(commands, &command{
		name: "inspect",
		args: "[TENANT/]KEY|DIR",
		summary: `Shows one checkpoint: the key's current one, or the checkpoint directory DIR (an
absolute path, e.g. a set-aside one). Prints its manifest (key, container,
created, the node it was made on, rootfs kind and statistics, network
filesystem, the GPU side: driver, GPU model and count, and what each CUDA
process held on the GPU; file count and size, timings), the process tree in its CRIU images,
CRIU's dump statistics (freezing_time, frozen_time, memdump_time, memwrite_time
in microseconds; pages_scanned, pages_written), and, when a container on this
node was restored from the key, that restore's statistics (forking_time,
restore_time, pages_restored) and timings. A KEY with neither a checkpoint nor a
restored container is not found (exit 1).`,
		flags:   jsonFlags,
		run:     runInspect,
		minArgs: 1, maxArgs: 1,
	})
}

// inspectOut is `inspect --json`.
type inspectOut struct {
	Tenant      string             `json:"tenant"`
	Key         string             `json:"key"`
	Checkpoint  *ckptRow           `json:"checkpoint"` // null when the key has none
	Manifest    *store.Manifest    `json:"manifest,omitempty"`
	FileCount   int                `json:"file_count"`
	ProcessTree *crit.PsTree       `json:"process_tree,omitempty"`
	TreeError   string             `json:"process_tree_error,omitempty"`
	DumpStats   *criuimg.DumpStats `json:"dump_stats,omitempty"`
	LastRestore *lastRestore       `json:"last_restore,omitempty"`
}

// lastRestore is the most recent restore from the key among this node's state files.
type lastRestore struct {
	ContainerID  string                `json:"container_id"`
	RuncRoot     string                `json:"runc_root"`
	Checkpoint   string                `json:"checkpoint"`
	Restored     time.Time             `json:"restored"`
	RestoreStats *criuimg.RestoreStats `json:"restore_stats"` // null when CRIU left none
	Timings      map[string]float64    `json:"timings_ms,omitempty"`
}

func runInspect(c *cli, opts any, args []string) error {
	out := inspectOut{}
	t, err := c.resolveTarget(args[0])
	var ce *codeError
	if errors.As(err, &ce) && ce.code == exitNotValid && !filepath.IsAbs(args[0]) {
		r, perr := c.parseRef(args[0])
		if perr != nil {
			return perr
		}
		t, err = &target{ref: r}, nil // no checkpoint; perhaps a restore to show
	}
	if err != nil {
		return err
	}
	out.Tenant, out.Key = t.ref.Tenant, t.ref.Key
	now := c.now()
	if t.entry.Dir != "" {
		row := describe(t.entry, now)
		if t.entry.Kind == "" {
			row.Status = "" // a directory outside the store
		}
		out.Checkpoint = &row
		m, err := store.ReadManifest(t.entry.Dir)
		if err != nil {
			return err
		}
		out.Manifest, out.FileCount, out.DumpStats = m, len(m.Files), m.DumpStats
		if out.Key == "" {
			out.Tenant, out.Key = m.Tenant, m.Key
		}
		images := t.entry.Checkpoint().Images()
		if out.DumpStats == nil {
			if ds, err := criuimg.ReadDumpStats(images); err == nil {
				out.DumpStats = ds
			}
		}
		out.ProcessTree, err = processTree(images)
		if err != nil {
			out.TreeError = err.Error()
		}
	}
	if out.Key != "" {
		lr, err := c.lastRestore(store.Ref{Tenant: out.Tenant, Key: out.Key})
		if err != nil {
			fmt.Fprintf(c.stderr, "tardisctl: warning: %v\n", err)
		}
		out.LastRestore = lr
	}
	if out.Checkpoint == nil && out.LastRestore == nil {
		aside := 0
		if es, _ := c.store().Entries(t.ref); es != nil {
			for _, e := range es {
				if e.Kind == store.KindAside {
					aside++
				}
			}
		}
		if aside > 0 {
			return notFoundf("key %s has no current checkpoint (%d set aside: inspect one by its directory, see tardisctl checkpoints), and no container on this node was restored from it", t.ref, aside)
		}
		return notFoundf("key %s has no checkpoint, and no container on this node was restored from it", t.ref)
	}
	if opts.(*jsonOpt).json {
		return writeJSON(c.stdout, out)
	}
	printInspect(c.stdout, &out, now)
	return nil
}

// processTree reads the process tree of a CRIU image directory with go-criu's crit. crit
// keeps decoded images in package variables, so this is done once per process. It panics
// on some damaged images; that is an error here.
func processTree(images string) (tree *crit.PsTree, err error) {
	defer func() {
		if r := recover(); r != nil {
			tree, err = nil, fmt.Errorf("process tree: damaged images: %v", r)
		}
	}()
	tree, err = crit.New(nil, nil, images, false, false).ExplorePs()
	if err != nil {
		return nil, fmt.Errorf("process tree: %w", err)
	}
	return tree, nil
}

// lastRestore finds the most recently created container restored from key on this node.
func (c *cli) lastRestore(r store.Ref) (*lastRestore, error) {
	files, err := c.states().List()
	var best *state.File
	for _, f := range files {
		tenant := f.Tenant
		if tenant == "" {
			tenant = c.cfg.Tenant
		}
		if f.Key == r.Key && tenant == r.Tenant && f.Started == state.StartedRestored && (best == nil || f.Created.After(best.Created)) {
			best = f
		}
	}
	if best == nil {
		return nil, err
	}
	return &lastRestore{ContainerID: best.ID, RuncRoot: best.Root, Checkpoint: best.Checkpoint,
		Restored: best.Created, RestoreStats: best.RestoreStats, Timings: best.Timings}, err
}

func printInspect(w io.Writer, o *inspectOut, now time.Time) {
	kv := newTable(w)
	kv.row("tenant:", o.Tenant)
	kv.row("key:", o.Key)
	if o.Checkpoint == nil {
		kv.row("checkpoint:", "none")
	} else {
		ck, m := o.Checkpoint, o.Manifest
		status := ""
		if ck.Status != "" {
			status = " (" + strings.ReplaceAll(ck.Status, "_", " ") + ")"
		}
		kv.row("checkpoint:", ck.Name+status)
		kv.row("dir:", ck.Dir)
		if ck.Reason != "" {
			kv.row("reason:", firstLine(ck.Reason))
		}
		kv.row("container:", orDash(m.ContainerID))
		kv.row("runs:", identityText(m.Identity))
		kv.row("created:", fmt.Sprintf("%s (%s ago)", m.Created.UTC().Format(time.RFC3339), ageSince(now, m.Created)))
		kv.row("node:", orDash(m.Node.Name))
		kv.row("  kernel:", orDash(m.Node.Kernel))
		kv.row("  arch:", orDash(m.Node.Arch))
		kv.row("  runc:", orDash(m.Node.RuncVersion))
		kv.row("  criu:", orDash(m.Node.CriuVersion))
		kv.row("  cpu flags:", fmt.Sprintf("%d", len(m.Node.CPUFlags)))
		kv.row("rootfs:", orDash(m.Rootfs)+rootfsStats(m.RootfsStats))
		kv.row("networkfs:", orDash(m.NetworkFS))
		kv.row("gpu:", gpuText(m.GPU))
		if m.GPU != nil {
			for _, p := range m.GPU.Processes {
				kv.row("  process:", fmt.Sprintf("pid %d (%s) held %s", p.PID, p.Comm, humanSize(int64(p.Bytes))))
			}
		}
		kv.row("files:", fmt.Sprintf("%d (%s)", o.FileCount, humanSize(m.Size())))
		kv.row("signed:", map[bool]string{true: "yes", false: "no"}[m.Signature != ""])
		kv.row("timings_ms:", timings(m.Timings))
	}
	_ = kv.flush()

	if o.Checkpoint != nil {
		fmt.Fprintln(w, "\nprocess tree:")
		if o.ProcessTree == nil {
			fmt.Fprintf(w, "  (unreadable: %s)\n", o.TreeError)
		} else {
			pt := newTable(w, "  PID", "COMM")
			printTree(pt, o.ProcessTree, 0)
			_ = pt.flush()
		}
		fmt.Fprintln(w, "\ndump statistics (times in microseconds):")
		if o.DumpStats == nil {
			fmt.Fprintln(w, "  (none recorded)")
		} else {
			printStats(w, o.DumpStats)
		}
	}

	fmt.Fprintln(w, "\nlast restore of this key on this node:")
	if o.LastRestore == nil {
		fmt.Fprintln(w, "  (none)")
		return
	}
	lr := o.LastRestore
	t := newTable(w)
	t.row("  container:", lr.ContainerID)
	t.row("  runc root:", lr.RuncRoot)
	t.row("  from:", orDash(lr.Checkpoint))
	t.row("  restored:", fmt.Sprintf("%s (%s ago)", lr.Restored.UTC().Format(time.RFC3339), ageSince(now, lr.Restored)))
	t.row("  timings_ms:", timings(lr.Timings))
	_ = t.flush()
	fmt.Fprintln(w, "  restore statistics (times in microseconds):")
	if lr.RestoreStats == nil {
		fmt.Fprintln(w, "    (none recorded)")
	} else {
		printStats(w, lr.RestoreStats, "  ")
	}
}

// printTree writes one process per row, children indented under their parent.
func printTree(t *table, p *crit.PsTree, depth int) {
	t.row(fmt.Sprintf("  %s%d", strings.Repeat("  ", depth), p.PID), p.Comm)
	kids := append([]*crit.PsTree(nil), p.Children...)
	sort.Slice(kids, func(i, j int) bool { return kids[i].PID < kids[j].PID })
	for _, k := range kids {
		printTree(t, k, depth+1)
	}
}

// printStats writes CRIU's statistics one per line, under the names of their JSON fields
// (the names Podman's --print-stats uses), in the order of the struct.
func printStats(w io.Writer, stats any, indent ...string) {
	b, _ := json.Marshal(stats)
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	t := newTable(w)
	pre := "  " + strings.Join(indent, "")
	// Walk the object's tokens to keep the fields' order.
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return
		}
		v, err := dec.Token()
		if err != nil {
			return
		}
		t.row(fmt.Sprintf("%s%v", pre, k), fmt.Sprintf("%v", v))
	}
	_ = t.flush()
}

// gpuText is the GPU side of a checkpoint on one line: "-" when it holds no CUDA state.
func gpuText(g *gpu.Checkpoint) string {
	if g == nil {
		return "-"
	}
	return fmt.Sprintf("%d x %s, driver %s; %d CUDA processes held %s", g.GPUCount, orDash(g.GPUModel),
		orDash(g.Driver), len(g.Processes), humanSize(int64(g.TotalBytes)))
}

// identityText is what a checkpoint's container runs, on one line.
func identityText(id optin.Identity) string {
	s := fmt.Sprintf("%q in %s as %d:%d", id.Args, orDash(id.Cwd), id.UID, id.GID)
	if len(id.AdditionalGids) > 0 {
		s += fmt.Sprintf(" %v", id.AdditionalGids)
	}
	if id.Image != "" {
		s = "image " + id.Image + ", " + s
	}
	return s
}

// rootfsStats is the manifest's rootfs statistics as " (files=3 dirs=1 ...)".
func rootfsStats(st *rootfs.Stats) string {
	if st == nil {
		return ""
	}
	b, _ := json.Marshal(st)
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || len(m) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		if f, ok := m[k].(float64); ok {
			parts[i] = k + "=" + strconv.FormatFloat(f, 'f', -1, 64)
		} else {
			parts[i] = fmt.Sprintf("%s=%v", k, m[k])
		}
	}
	return " (" + strings.Join(parts, " ") + ")"
}
