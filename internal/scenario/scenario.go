// Package scenario is what the scenario suites share: the programs a test binary plays
// (tardis, the fake runc, a fake criu), the environment every scenario starts with, and
// the commands scenarios use to make bundles and to look at what tardis left on disk.
// Only tests import it.
package scenario

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc"
	"github.com/tardis-runtime/tardis/internal/fsys/fsystest"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/tardis"
)

// Programs are the programs the test binary plays, for testscript.Main. They are all links
// to one file, so the scenarios' tardis knows itself by name rather than by inode. In the
// environment, TARDIS_TEST_CRASH_AT makes tardis kill itself at that crash point,
// TARDIS_TEST_HANG_STAT makes Stat of that path hang (a dead network filesystem), and
// FAKECUDA_DEV is where tardis looks for GPU devices (the fake CUDA processes' ones).
func Programs() map[string]func() {
	return map[string]func(){
		"tardis": func() {
			env := tardis.OS()
			env.IsSelf = func(p string) bool { return filepath.Base(p) == "tardis" }
			if at := os.Getenv("TARDIS_TEST_CRASH_AT"); at != "" {
				env.Crash = func(point string) {
					if point == at {
						_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
						select {}
					}
				}
			}
			if p := os.Getenv("TARDIS_TEST_HANG_STAT"); p != "" {
				env.FS = fsystest.Hanging{FS: env.FS, Path: filepath.Clean(p)}
			}
			env.GPUDevPrefix = os.Getenv("FAKECUDA_DEV")
			os.Exit(tardis.Main(env))
		},
		"runc": func() { os.Exit(fakerunc.Main()) },
		"criu": fakeCriu,
	}
}

// fakeCriu answers `criu --version` (FAKECRIU_VERSION, default 4.1.1) and fails otherwise.
func fakeCriu() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		v := os.Getenv("FAKECRIU_VERSION")
		if v == "" {
			v = "4.1.1"
		}
		fmt.Printf("Version: %s\n", v)
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "fake criu: only --version is supported")
	os.Exit(1)
}

// Main is testscript.Main for the scenario suites, with one addition: a program is also
// found by the name it was executed under (/proc/self/exe of the hard link testscript
// made), not only by its argv[0]. tardis hands runc the caller's argv[0], as a runc
// installed under tardis's name must see it, so the fake runc runs with argv[0] "tardis".
func Main(m *testing.M, programs map[string]func()) {
	if exe, err := os.Executable(); err == nil {
		name := filepath.Base(exe)
		if f, ok := programs[name]; ok && name != filepath.Base(os.Args[0]) {
			f()
			os.Exit(0)
		}
	}
	testscript.Main(m, programs)
}

// Setup gives every scenario its own tardis config, state, checkpoint and work dirs, log,
// runc root ($RUNC_ROOT) and fake-runc call log, all under $WORK.
func Setup(e *testscript.Env) error {
	w := e.WorkDir
	for k, v := range map[string]string{
		"TARDIS_CONFIG":          filepath.Join(w, "tardis.toml"),
		"TARDIS_STATE_DIR":       filepath.Join(w, "state"),
		"TARDIS_CHECKPOINT_ROOT": filepath.Join(w, "ckpt"),
		"TARDIS_WORK_DIR":        filepath.Join(w, "work"),
		"TARDIS_LOG_FILE":        filepath.Join(w, "tardis.log"),
		"FAKERUNC_CALLS":         filepath.Join(w, "calls.log"),
		"RUNC_ROOT":              filepath.Join(w, "runc"),
	} {
		e.Setenv(k, v)
	}
	return os.WriteFile(filepath.Join(w, "tardis.toml"), nil, 0o644)
}

// Condition knows [root].
func Condition(cond string) (bool, error) {
	if cond == "root" {
		return os.Geteuid() == 0, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// Cmds are the scenario commands, documented one by one below.
func Cmds() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"bundle":     cmdBundle,
		"exitcode":   cmdExitcode,
		"statefile":  cmdStatefile,
		"checkpoint": cmdCheckpoint,
		"overlay":    cmdOverlay,
		"cutarchive": cmdCutArchive,
		"jsonlines":  cmdJSONLines,
		"tmpfs":      cmdTmpfs,
		"readonly":   cmdReadonly,
		"waitempty":  cmdWaitEmpty,
	}
}

// bundle DIR [name=value ...]: a bundle with an empty rootfs whose config.json carries the
// given annotations; "env:NAME=value" goes to process.env instead, and "args:WORDS" sets
// the process's args (default: sh).
func cmdBundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: bundle DIR [annotation=value | env:NAME=value ...]")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755))
	ann := map[string]string{}
	env := []string{"PATH=/bin"}
	procArgs := []string{"sh"}
	for _, kv := range args[1:] {
		if e, ok := strings.CutPrefix(kv, "env:"); ok {
			env = append(env, e)
			continue
		}
		if a, ok := strings.CutPrefix(kv, "args:"); ok {
			procArgs = strings.Fields(a)
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			ts.Fatalf("bundle: %q is not name=value", kv)
		}
		ann[k] = v
	}
	spec := map[string]any{
		"ociVersion": "1.0.2-dev",
		"process":    map[string]any{"args": procArgs, "env": env, "cwd": "/"},
		"root":       map[string]any{"path": "rootfs"},
	}
	if len(ann) > 0 {
		spec["annotations"] = ann
	}
	b, err := json.MarshalIndent(spec, "", "\t")
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
}

// exitcode N PROGRAM ARGS...: runs a program and checks its exit code; its stdout and
// stderr are then what the stdout/stderr commands look at.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// statefile ID [RUNC_ROOT]: prints the state file of container ID under RUNC_ROOT
// (default $RUNC_ROOT), failing if there is none; `! statefile ID` checks there is none.
func cmdStatefile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: statefile ID [RUNC_ROOT]")
	}
	root := ts.Getenv("RUNC_ROOT")
	if len(args) == 2 {
		root = args[1]
	}
	p := filepath.Join(ts.Getenv("TARDIS_STATE_DIR"), state.Name(root, args[0]))
	b, err := os.ReadFile(p)
	if neg {
		if err == nil {
			ts.Fatalf("state file of %s exists:\n%s", args[0], b)
		}
		return
	}
	ts.Check(err)
	ts.Stdout().Write(b)
}

// keyDir is the directory of [TENANT/]KEY under the checkpoint root (tenant "default" when
// none is given: containers outside Kubernetes).
func keyDir(ts *testscript.TestScript, arg string) string {
	if !strings.Contains(arg, "/") {
		arg = "default/" + arg
	}
	return filepath.Join(ts.Getenv("TARDIS_CHECKPOINT_ROOT"), arg)
}

// checkpoint [TENANT/]KEY: prints the name of the key's current checkpoint and its
// manifest; `! checkpoint KEY` checks it has none (no current link, no ckpt-* directory).
func cmdCheckpoint(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: checkpoint [TENANT/]KEY")
	}
	dir := keyDir(ts, args[0])
	target, err := os.Readlink(filepath.Join(dir, "current"))
	if neg {
		if err == nil {
			ts.Fatalf("key %s has checkpoint %s", args[0], target)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "ckpt-*")); len(m) > 0 {
			ts.Fatalf("key %s has checkpoint directories %v", args[0], m)
		}
		return
	}
	ts.Check(err)
	b, err := os.ReadFile(filepath.Join(dir, target, "manifest.json"))
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "current %s\n%s", target, b)
}

// overlay LOWER UPPER WORK MERGED: mounts an overlay (root only), unmounted at the end.
func cmdOverlay(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: overlay LOWER UPPER WORK MERGED")
	}
	for _, d := range args {
		ts.Check(os.MkdirAll(ts.MkAbs(d), 0o755))
	}
	merged := ts.MkAbs(args[3])
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", ts.MkAbs(args[0]), ts.MkAbs(args[1]), ts.MkAbs(args[2]))
	out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, merged).CombinedOutput()
	if err != nil {
		ts.Fatalf("mount overlay: %v: %s", err, out)
	}
	ts.Defer(func() { _ = exec.Command("umount", "-l", merged).Run() })
}

// cutarchive [TENANT/]KEY: cuts the current checkpoint's rootfs.tar in half and records the new
// size in its manifest, so that only applying the archive can find the damage.
func cmdCutArchive(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: cutarchive KEY")
	}
	dir := filepath.Join(keyDir(ts, args[0]), "current")
	tarPath := filepath.Join(dir, "rootfs.tar")
	st, err := os.Stat(tarPath)
	ts.Check(err)
	half := st.Size() / 2
	ts.Check(os.Truncate(tarPath, half))
	mpath := filepath.Join(dir, "manifest.json")
	b, err := os.ReadFile(mpath)
	ts.Check(err)
	var m map[string]any
	ts.Check(json.Unmarshal(b, &m))
	for _, f := range m["files"].([]any) {
		if e := f.(map[string]any); e["path"] == "rootfs.tar" {
			e["size"] = half
		}
	}
	b, err = json.Marshal(m)
	ts.Check(err)
	ts.Check(os.WriteFile(mpath, b, 0o600))
}

// jsonlines FILE: every line of FILE is one JSON object with level, msg and an RFC 3339
// time, as containerd decodes a runtime's --log.
func cmdJSONLines(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: jsonlines FILE")
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		var rec struct{ Level, Msg, Time string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			ts.Fatalf("%s line %d is not JSON: %v: %q", args[0], i+1, err, line)
		}
		if _, err := time.Parse(time.RFC3339, rec.Time); err != nil || rec.Level == "" || rec.Msg == "" {
			ts.Fatalf("%s line %d lacks level, msg or an RFC 3339 time: %q", args[0], i+1, line)
		}
	}
}

func mount(ts *testscript.TestScript, dir string, args ...string) {
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		ts.Fatalf("mount %s: %v: %s", strings.Join(args, " "), err, out)
	}
	ts.Defer(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// tmpfs DIR SIZE: mounts a tmpfs of SIZE (e.g. 256k) on DIR (root only), unmounted at the end.
func cmdTmpfs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: tmpfs DIR SIZE")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	mount(ts, dir, "-t", "tmpfs", "-o", "size="+args[1]+",mode=0755", "tmpfs", dir)
}

// readonly DIR: makes DIR read-only with a read-only bind mount over itself (root only);
// `readonly -undo DIR` takes it away again.
func cmdReadonly(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: readonly [-undo] DIR")
	}
	if args[0] == "-undo" {
		if out, err := exec.Command("umount", ts.MkAbs(args[1])).CombinedOutput(); err != nil {
			ts.Fatalf("umount: %v: %s", err, out)
		}
		return
	}
	dir := ts.MkAbs(args[0])
	mount(ts, dir, "--bind", dir, dir)
	mount(ts, dir, "-o", "remount,bind,ro", dir)
}

// waitempty DIR: waits (up to 10 s) until DIR has no entries, for what tardis removes in
// the background.
func cmdWaitEmpty(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitempty DIR")
	}
	var names []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		entries, err := os.ReadDir(ts.MkAbs(args[0]))
		ts.Check(err)
		if names = nil; len(entries) == 0 {
			return
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	ts.Fatalf("%s still holds %v", args[0], names)
}
