// Command tardis-bench measures what tardis costs over the real runc on this machine:
// every pass-through command against runc itself and against the cheapest Go wrapper (a
// program that only execs runc), the create of a container that did not opt in, checkpoint
// (a stop through tardis) and restore (a create through tardis, validation included)
// against bare `runc checkpoint` and `runc restore -d` of the same containers, time to
// ready of a slow-starting application fresh and restored, checkpoint validation alone,
// and saving and restoring a writable layer against tar. The variants of a case are timed
// alternately in one loop on the same containers; it prints a table of medians and writes
// it as JSON.
//
// It needs root, runc, a CRIU that passes `criu check`, busybox-static and Go (it builds
// tardis, the exec floor and its test application). Everything it creates lives in one
// temporary directory and under its own runc root, and is removed at the end, also on
// failure or interrupt.
//
//	go run ./cmd/tardis-bench [-n 30] [-heavy-n 10] [-sizes 64,512] [-json FILE]
package main

import (
	"context"
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
	n, heavyN  int
	sizes      []int
	changesMiB int
	warm       time.Duration
	only       map[string]bool
	jsonPath   string
	dir        string
	keep       bool
	tardis     string
	runc       string
	criu       string
	cpuProfile string
}

func main() {
	var o options
	var sizes, only string
	flag.IntVar(&o.n, "n", 30, "repetitions of each variant of the quick cases (pass-through, create, validation)")
	flag.IntVar(&o.heavyN, "heavy-n", 10, "repetitions of each variant of the checkpoint, restore, time-to-ready and file cases")
	flag.StringVar(&sizes, "sizes", "64,512", "memory the checkpointed containers touch, MiB, comma-separated (2048 is slow)")
	flag.IntVar(&o.changesMiB, "changes-mib", 300, "size of the writable-layer change set of the overlay cases, MiB")
	flag.DurationVar(&o.warm, "warm", 5*time.Second, "warm-up phase of the slow-starting application (time-to-ready case)")
	flag.StringVar(&only, "cases", "passthrough,create,files,checkpoint,warm", "cases to run, comma-separated")
	flag.StringVar(&o.jsonPath, "json", "", "write the results as JSON to this file")
	flag.StringVar(&o.dir, "dir", "/var/tmp", "directory for the run's temporary directory (its filesystem holds checkpoints and images)")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's directory (containers and mounts are removed anyway)")
	flag.StringVar(&o.tardis, "tardis", "", "tardis binary (default: built from the module the harness runs in)")
	flag.StringVar(&o.runc, "runc", "/usr/sbin/runc", "the real runc")
	flag.StringVar(&o.criu, "criu", "", "CRIU (default: the path in /etc/tardis/criu-path, else criu on PATH)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the in-process cases: rootfs.Save/Apply, validation) to this file")
	flag.Parse()
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "tardis-bench: bad -sizes %q\n", sizes)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	o.only = map[string]bool{}
	for _, c := range strings.Split(only, ",") {
		o.only[strings.TrimSpace(c)] = true
	}
	if o.n < 1 || o.heavyN < 1 {
		fmt.Fprintln(os.Stderr, "tardis-bench: -n and -heavy-n must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "tardis-bench: %v\n", err)
		os.Exit(1)
	}
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
	if err := b.goBuild("exec-floor", floorSource(b.runc), b.floor, false); err != nil {
		return err
	}
	if err := b.goBuild("memhog", memhogSource, b.memhog, true); err != nil {
		return err
	}
	if err := b.makeLower(); err != nil {
		return err
	}

	res := &results{Started: time.Now().UTC(), Machine: b.machine(), Params: map[string]any{
		"n": o.n, "heavy_n": o.heavyN, "sizes_mib": o.sizes, "changes_mib": o.changesMiB,
		"warm": o.warm.String(), "work_dir": b.work, "tardis": b.tardis, "runc": b.runc, "criu": b.criu,
	}}
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
		{"files", func() error { return b.files(res, o.heavyN, o.changesMiB) }},
		{"checkpoint", func() error {
			if err := b.nodeProbe(res, o.n); err != nil {
				return err
			}
			if err := b.makeChanges(o.changesMiB); err != nil {
				return err
			}
			val := res.group("validate", "in-process validation of the real checkpoint images just written (page cache warm): criuimg.Validate alone, and store.Validate (manifest, every file's size, then criuimg.Validate, then node compatibility)", "")
			for _, ovl := range []bool{false, true} {
				for _, mib := range o.sizes {
					if err := b.checkpointRestore(res, val, o, mib, ovl); err != nil {
						return err
					}
				}
			}
			return nil
		}},
		{"warm", func() error { return b.timeToReady(res, o.heavyN, o.warm) }},
	}
	for _, s := range steps {
		if !o.only[s.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.Now()
		fmt.Fprintf(os.Stderr, "tardis-bench: %s ...\n", s.name)
		if err := s.f(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(os.Stderr, "tardis-bench: %s done in %s\n", s.name, time.Since(t).Round(time.Second))
	}
	res.Elapsed = time.Since(start).Round(time.Second).String()
	res.Machine["loadavg_end"] = loadavg()
	if others := otherRuntimes(); others != "" {
		res.Machine["other_runtimes_at_end"] = others
		fmt.Fprintf(os.Stderr, "tardis-bench: warning: other runc/criu/containerd processes ran at the end of the run (the numbers may be disturbed): %s\n", others)
	}
	res.finish()
	res.print(os.Stdout)
	if o.jsonPath != "" {
		if err := res.writeJSON(o.jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "tardis-bench: wrote %s\n", o.jsonPath)
	}
	return nil
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
