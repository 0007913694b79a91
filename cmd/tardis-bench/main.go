// Command tardis-bench measures what tardis costs over the real runc on this machine,
// each case's variants timed alternately (in a new random order each round) on the same
// kind of container, with the medians, their spread and the goals printed as a table and
// written as JSON:
//
//   - passthrough: every pass-through command against runc and against the static Go exec
//     floor (a static Go program that only execs runc)
//   - create: the create and delete of a container that did not opt in
//   - files: saving and restoring a writable layer against GNU tar
//   - checkpoint: the cost curve (curve.go): stop and restore from 64 MiB to 4 GiB against
//     bare `runc checkpoint` / `runc restore -d` and the disk's own floor, measured in the
//     same loop (the bytes written with fsync, read back cold); checkpoint validation
//   - drain: k containers stopped at once (drain.go)
//   - signing: signed checkpoints against unsigned ones (signing.go)
//   - warm, python: time to ready, fresh against restored (ready.go)
//   - grace: stops that outlast the grace period, under containerd's CRI (grace.go)
//
// -gobench folds the Go benchmarks' goals (small files against tar, digests) in, and
// -svg draws the cost curve and the drain (plot.go).
//
// It needs root, runc, a CRIU that passes `criu check`, busybox-static, Go (it builds
// tardis, the exec floor and its test programs), and for the grace case containerd, ctr
// and crictl. Everything it creates lives in one temporary directory and under its own
// runc roots and containerd, and is removed at the end, also on failure or interrupt.
//
//	go run ./cmd/tardis-bench [-cases LIST] [-sizes 64,...,4096] [-json FILE] [-svg FILE]
//	go run ./cmd/tardis-bench -replot FILE.json -svg FILE.svg
package main

import (
	"context"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	n, heavyN, bigN int
	sizes           []int
	overlaySizes    []int
	changesMiB      int
	warmRestore     bool
	drainKs         []int
	drainMiB        int
	drainN          int
	signMiB, signN  int
	warm            time.Duration
	readyN          int
	python          string
	pythonRows      int
	containerd      string
	ctr, crictl     string
	graceMiB        int
	graceOnly       map[string]bool
	only            map[string]bool
	jsonPath        string
	svgPath         string
	goBench         string
	replot          string
	dir             string
	keep            bool
	tardis          string
	runc            string
	criu            string
	cpuProfile      string
}

// allCases are the cases in the order they run.
const allCases = "passthrough,create,files,checkpoint,drain,signing,warm,python,grace"

func main() {
	var o options
	var sizes, overlaySizes, drainKs, only, graceOnly string
	flag.IntVar(&o.n, "n", 30, "repetitions of each variant of the quick cases (pass-through, create, validation)")
	flag.IntVar(&o.heavyN, "heavy-n", 5, "repetitions of each variant of the checkpoint and restore cases under 1 GiB, and of the file cases")
	flag.IntVar(&o.bigN, "big-n", 5, "repetitions of each variant of the checkpoint and restore cases of 1 GiB and more")
	flag.StringVar(&sizes, "sizes", "64,256,512,1024,2048,4096", "memory the checkpointed containers touch, MiB, comma-separated: the cost curve (plain rootfs)")
	flag.StringVar(&overlaySizes, "overlay-sizes", "64", "sizes also run with an overlay rootfs holding -changes-mib of files (empty: none)")
	flag.IntVar(&o.changesMiB, "changes-mib", 300, "size of the writable-layer change set of the overlay cases, MiB")
	flag.BoolVar(&o.warmRestore, "warm-restore", false, "restore with the checkpoint still in the page cache (default: dropped from it first, a restore from storage)")
	flag.StringVar(&drainKs, "drain", "1,4,8", "numbers of containers stopped at once (the drain)")
	flag.IntVar(&o.drainMiB, "drain-mib", 256, "memory each drained container touches, MiB")
	flag.IntVar(&o.drainN, "drain-n", 5, "repetitions of each drain variant")
	flag.IntVar(&o.signMiB, "sign-mib", 1024, "memory of the signed-checkpoint case's container, MiB")
	flag.IntVar(&o.signN, "sign-n", 5, "repetitions of each signed-checkpoint variant")
	flag.DurationVar(&o.warm, "warm", 5*time.Second, "warm-up phase of the slow-starting memhog application (time-to-ready case)")
	flag.IntVar(&o.readyN, "ready-n", 5, "rounds of the time-to-ready cases")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "the host's CPython for the python time-to-ready case (must live under /usr)")
	flag.IntVar(&o.pythonRows, "python-rows", 300000, "rows of the python application's in-memory table")
	flag.StringVar(&o.containerd, "containerd", "/usr/bin/containerd", "containerd for the grace-period case (its containerd-shim-runc-v2 next to it)")
	flag.StringVar(&o.ctr, "ctr", "/usr/bin/ctr", "ctr of that containerd")
	flag.StringVar(&o.crictl, "crictl", "/usr/local/bin/crictl", "crictl")
	flag.IntVar(&o.graceMiB, "grace-mib", 2048, "memory of the grace-period case's container, MiB")
	flag.StringVar(&graceOnly, "grace-scenarios", "", "grace-period scenarios to run (default all: fits,outlasts,deadline,shared-pid)")
	flag.StringVar(&only, "cases", allCases, "cases to run, comma-separated")
	flag.StringVar(&o.jsonPath, "json", "", "write the results as JSON to this file")
	flag.StringVar(&o.svgPath, "svg", "", "draw the cost curve and the drain to this SVG file")
	flag.StringVar(&o.goBench, "gobench", "", "`go test -bench` output of the same run to fold in (its goals: small files against tar, digests)")
	flag.StringVar(&o.replot, "replot", "", "only draw -svg from this bench.json (no root needed); with -json, write it back with the curve's summary recomputed")
	flag.StringVar(&o.dir, "dir", "/var/tmp", "directory for the run's temporary directory (its filesystem holds checkpoints and images)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (containers and mounts are removed anyway)")
	flag.StringVar(&o.tardis, "tardis", "", "tardis binary (default: built from the module the harness runs in)")
	flag.StringVar(&o.runc, "runc", "/usr/sbin/runc", "the real runc")
	flag.StringVar(&o.criu, "criu", "", "CRIU (default: the path in /etc/tardis/criu-path, else criu on PATH)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the in-process cases: rootfs.Save/Apply, validation) to this file")
	flag.Parse()
	var err error
	if o.sizes, err = intList(sizes); err == nil {
		if o.overlaySizes, err = intList(overlaySizes); err == nil {
			o.drainKs, err = intList(drainKs)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tardis-bench: %v\n", err)
		os.Exit(2)
	}
	o.only, o.graceOnly = nameSet(only), nameSet(graceOnly)
	if o.n < 1 || o.heavyN < 1 || o.bigN < 1 || o.drainN < 1 || o.signN < 1 || o.readyN < 1 {
		fmt.Fprintln(os.Stderr, "tardis-bench: repetitions must be at least 1")
		os.Exit(2)
	}
	if o.replot != "" {
		if err := replot(o); err != nil {
			fmt.Fprintf(os.Stderr, "tardis-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "tardis-bench: %v\n", err)
		os.Exit(1)
	}
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func nameSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			m[c] = true
		}
	}
	return m
}

// replot draws the SVG of an earlier run's JSON.
func replot(o options) error {
	if o.svgPath == "" {
		return fmt.Errorf("-replot needs -svg")
	}
	raw, err := os.ReadFile(o.replot)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	r.Fit = r.stopFit() // what the curve implies, as this version of the harness reads it
	if o.jsonPath != "" {
		if err := r.writeJSON(o.jsonPath); err != nil {
			return err
		}
	}
	return r.writePlot(o.svgPath)
}

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (runc and CRIU run containers for real)")
	}
	b := &bench{ctx: ctx, runc: o.runc, criu: o.criu}
	if b.criu == "" {
		if raw, err := os.ReadFile("/etc/tardis/criu-path"); err == nil && strings.TrimSpace(string(raw)) != "" {
			b.criu = strings.TrimSpace(string(raw))
		} else if p, err := exec.LookPath("criu"); err == nil {
			b.criu = p
		} else {
			return fmt.Errorf("no CRIU: give -criu")
		}
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			b.busybox = p
			break
		}
	}
	if b.busybox == "" {
		return fmt.Errorf("needs busybox-static (/bin/busybox)")
	}
	if b.work, err = os.MkdirTemp(o.dir, "tardis-bench-"); err != nil {
		return err
	}
	b.runcRoot = b.path("runc")
	defer func() {
		b.cleanup()
		if o.keep {
			fmt.Fprintf(os.Stderr, "tardis-bench: kept %s\n", b.work)
		} else if rerr := os.RemoveAll(b.work); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := b.setupEnv(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tardis-bench: building tardis, the exec floor and memhog in %s\n", b.work)
	b.tardis, b.floor, b.memhog = o.tardis, b.path("bin", "exec-floor"), b.path("bin", "memhog")
	if b.tardis == "" {
		b.tardis = b.path("bin", "tardis")
		if err := b.buildTardis(b.tardis); err != nil {
			return err
		}
	}
	if err := b.goBuild("exec-floor", floorSource(b.runc), b.floor, true); err != nil {
		return err
	}
	if err := b.goBuild("memhog", memhogSource, b.memhog, true); err != nil {
		return err
	}
	if err := b.makeLower(); err != nil {
		return err
	}

	res := &results{Started: time.Now().UTC(), Machine: b.machine(), Params: map[string]any{
		"n": o.n, "heavy_n": o.heavyN, "big_n": o.bigN, "sizes_mib": o.sizes, "overlay_sizes_mib": o.overlaySizes,
		"changes_mib": o.changesMiB, "warm_restore": o.warmRestore, "drain": o.drainKs, "drain_mib": o.drainMiB,
		"drain_n": o.drainN, "sign_mib": o.signMiB, "sign_n": o.signN, "ready_n": o.readyN, "python": o.python,
		"python_rows": o.pythonRows, "grace_mib": o.graceMiB,
		"warm": o.warm.String(), "work_dir": b.work, "tardis": b.tardis, "runc": b.runc, "criu": b.criu,
		"tardis_static": isStatic(b.tardis), "exec_floor_static": isStatic(b.floor),
	}}
	if st, err := os.Stat(b.tardis); err == nil {
		res.Params["tardis_bytes"] = st.Size()
	}
	if st, err := os.Stat(b.floor); err == nil {
		res.Params["exec_floor_bytes"] = st.Size()
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	steps := []struct {
		name string
		f    func() error
	}{
		{"passthrough", func() error { return b.passThrough(res, o.n) }},
		{"create", func() error { return b.createNotOptedIn(res, o.n) }},
		{"files", func() error { return b.files(res, 2*o.heavyN, o.changesMiB) }},
		{"checkpoint", func() error {
			if err := b.nodeProbe(res, o.n); err != nil {
				return err
			}
			val := res.group("validate", "in-process validation of the real checkpoint images just written (page cache warm): criuimg.Validate alone, and store.Validate (manifest, every file's size, then criuimg.Validate, then node compatibility)", "")
			for _, mib := range o.sizes {
				rounds := o.heavyN
				if mib >= 1024 {
					rounds = o.bigN
				}
				t := time.Now()
				if err := b.checkpointRestore(res, val, o, mib, false, rounds); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "tardis-bench: checkpoint: %d MiB done in %s\n", mib, time.Since(t).Round(time.Second))
			}
			if len(o.overlaySizes) > 0 {
				if err := b.makeChanges(o.changesMiB); err != nil {
					return err
				}
			}
			for _, mib := range o.overlaySizes {
				if err := b.checkpointRestore(res, val, o, mib, true, o.heavyN); err != nil {
					return err
				}
			}
			return nil
		}},
		{"drain", func() error { return b.drain(res, o) }},
		{"signing", func() error { return b.signing(res, o) }},
		{"warm", func() error { return b.timeToReady(res, o) }},
		{"python", func() error { return b.pythonReady(res, o) }},
		{"grace", func() error { return b.grace(res, o) }},
	}
	for _, s := range steps {
		if !o.only[s.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.Now()
		fmt.Fprintf(os.Stderr, "tardis-bench: %s ... (load average %s)\n", s.name, loadavg())
		if err := s.f(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		res.Steps = append(res.Steps, stepTime{s.name, time.Since(t).Round(time.Second).Seconds()})
		fmt.Fprintf(os.Stderr, "tardis-bench: %s done in %s\n", s.name, time.Since(t).Round(time.Second))
	}
	res.Elapsed = time.Since(start).Round(time.Second).String()
	res.Machine["loadavg_end"] = loadavg()
	if others := otherRuntimes(); others != "" {
		res.Machine["other_runtimes_at_end"] = others
		fmt.Fprintf(os.Stderr, "tardis-bench: warning: other runc/criu/containerd processes ran at the end of the run (the numbers may be disturbed): %s\n", others)
	}
	if o.goBench != "" {
		if err := res.ingestGoBench(o.goBench); err != nil {
			fmt.Fprintf(os.Stderr, "tardis-bench: cannot read the Go benchmarks' output %s: %v\n", o.goBench, err)
		}
	}
	res.finish()
	res.conclude()
	res.print(os.Stdout)
	if o.jsonPath != "" {
		if err := res.writeJSON(o.jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "tardis-bench: wrote %s\n", o.jsonPath)
	}
	if o.svgPath != "" {
		if err := res.writePlot(o.svgPath); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "tardis-bench: wrote %s\n", o.svgPath)
	}
	return nil
}

// isStatic reports whether an ELF executable has no program interpreter (no dynamic
// loader: nothing to resolve at start-up).
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// machine describes where the numbers were taken.
func (b *bench) machine() map[string]string {
	m := map[string]string{
		"date": time.Now().UTC().Format(time.RFC3339),
		"cpus": strconv.Itoa(runtime.NumCPU()),
		"go":   runtime.Version(),
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m["kernel"] = utsString(u.Release[:])
		m["arch"] = utsString(u.Machine[:])
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(raw), "\n")
		m["memory"] = strings.Join(strings.Fields(strings.TrimPrefix(l, "MemTotal:")), " ")
	}
	for _, f := range []string{"sys_vendor", "product_name"} {
		if raw, err := os.ReadFile("/sys/class/dmi/id/" + f); err == nil {
			m["dmi_"+f] = strings.TrimSpace(string(raw))
		}
	}
	if out, err := exec.Command("systemd-detect-virt").Output(); err == nil {
		m["virt"] = strings.TrimSpace(string(out))
	}
	if raw, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m["os"] = strings.Trim(v, `"`)
			}
		}
	}
	if out, err := b.output(b.runc, "--version"); err == nil {
		m["runc"] = strings.SplitN(out, "\n", 2)[0]
	}
	if out, err := b.output(b.criu, "--version"); err == nil {
		m["criu"] = strings.Join(strings.Fields(out), " ")
	}
	m["loadavg_start"] = loadavg()
	if others := otherRuntimes(); others != "" {
		m["other_runtimes_at_start"] = others
	}
	var st syscall.Statfs_t
	if syscall.Statfs(b.work, &st) == nil {
		m["work_fs_magic"] = fmt.Sprintf("%#x", st.Type)
	}
	if out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE,SOURCE", "--target", b.work).Output(); err == nil {
		m["work_fs"] = strings.TrimSpace(string(out))
	}
	return m
}

func loadavg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(raw))
}

// otherRuntimes names the runc, CRIU, containerd and tardis processes this run did not
// start (another test suite on the machine disturbs the numbers).
func otherRuntimes() string {
	var found []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || strings.Contains(string(raw), "tardis-bench") {
			continue
		}
		arg0, _, _ := strings.Cut(string(raw), "\x00")
		switch filepath.Base(arg0) {
		case "runc", "criu", "tardis-criu", "containerd", "containerd-shim-runc-v2", "tardis", "tardis.test":
			found = append(found, fmt.Sprintf("%d:%s", pid, filepath.Base(arg0)))
		}
	}
	return strings.Join(found, " ")
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// alternate runs fn for every variant, n times, in a new random order each round (fixed
// seed): no variant always runs first, or always right after the same other one (whose
// page-cache, writeback or discard work would then always land on it).
func (b *bench) alternate(n int, names []string, fn func(i int, name string) error) error {
	rng := rand.New(rand.NewPCG(uint64(len(names)), uint64(n)))
	for i := 0; i < n; i++ {
		for _, k := range rng.Perm(len(names)) {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			if err := fn(i, names[k]); err != nil {
				return fmt.Errorf("%s #%d: %w", names[k], i, err)
			}
		}
	}
	return nil
}

// makeLower is the image every container runs: busybox-static with its applets, and memhog.
func (b *bench) makeLower() error {
	dir := b.path("lower")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for src, dst := range map[string]string{b.busybox: "bin/busybox", b.memhog: "bin/memhog"} {
		raw, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, dst), raw, 0o755); err != nil {
			return err
		}
	}
	out, err := exec.Command(b.busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
}
