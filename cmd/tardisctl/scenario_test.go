package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/fakerunc"
	"github.com/tardis-runtime/tardis/internal/tardis"
)

// The test binary is also tardisctl, tardis, the fake runc and a fake criu: testscript
// puts them on the scenarios' PATH, so that the scenarios make real state by driving
// tardis over the fake runc and then look at it with tardisctl.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"tardisctl": func() {
			c := &cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now, node: thisNode}
			os.Exit(c.main(os.Args[1:]))
		},
		"tardis": func() {
			env := tardis.OS()
			// All the programs are links to one file: tardis knows itself by name.
			env.IsSelf = func(p string) bool { return filepath.Base(p) == "tardis" }
			os.Exit(tardis.Main(env))
		},
		"runc": func() { os.Exit(fakerunc.Main()) },
		"criu": fakeCriu,
	})
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

func TestScenarios(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "../../testdata/tardisctl",
		UpdateScripts: os.Getenv("UPDATE_SCRIPTS") == "1",
		Setup: func(e *testscript.Env) error {
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
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"bundle":        cmdBundle,
			"exitcode":      cmdExitcode,
			"jsonvalid":     cmdJSONValid,
			"backdate":      cmdBackdate,
			"agecheckpoint": cmdAgeCheckpoint,
		},
	})
}

// bundle DIR [name=value ...]: a bundle with an empty rootfs whose config.json carries the
// given annotations; "env:NAME=value" goes to process.env instead.
func cmdBundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: bundle DIR [annotation=value | env:NAME=value ...]")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755))
	ann := map[string]string{}
	env := []string{"PATH=/bin"}
	for _, kv := range args[1:] {
		if e, ok := strings.CutPrefix(kv, "env:"); ok {
			env = append(env, e)
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
		"process":    map[string]any{"args": []string{"sh"}, "env": env, "cwd": "/"},
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

// jsonvalid [array|object]: the last command's stdout is one JSON value (of that kind when
// given); with `! jsonvalid` it is not JSON.
func cmdJSONValid(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) > 1 {
		ts.Fatalf("usage: jsonvalid [array|object]")
	}
	var v any
	err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &v)
	if neg {
		if err == nil {
			ts.Fatalf("stdout is JSON")
		}
		return
	}
	if err != nil {
		ts.Fatalf("stdout is not JSON: %v", err)
	}
	if len(args) == 1 {
		_, isArr := v.([]any)
		_, isObj := v.(map[string]any)
		if (args[0] == "array" && !isArr) || (args[0] == "object" && !isObj) {
			ts.Fatalf("stdout is JSON but not an %s", args[0])
		}
	}
}

// backdate DURATION PATH...: sets the modification time of each path (globs allowed,
// each must match) to DURATION ago, as if it had been left there that long.
func cmdBackdate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: backdate DURATION PATH...")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	t := time.Now().Add(-d)
	for _, p := range args[1:] {
		matches, err := filepath.Glob(ts.MkAbs(p))
		ts.Check(err)
		if len(matches) == 0 {
			ts.Fatalf("backdate: nothing matches %s", p)
		}
		for _, m := range matches {
			ts.Check(os.Chtimes(m, t, t))
		}
	}
}

// agecheckpoint KEY DURATION: makes the key's current checkpoint look DURATION old (its
// manifest's created time), as tardisctl and a restore read it.
func cmdAgeCheckpoint(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: agecheckpoint KEY DURATION")
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	p := filepath.Join(ts.Getenv("TARDIS_CHECKPOINT_ROOT"), args[0], "current", "manifest.json")
	b, err := os.ReadFile(p)
	ts.Check(err)
	var m map[string]any
	ts.Check(json.Unmarshal(b, &m))
	m["created"] = time.Now().Add(-d).UTC().Format(time.RFC3339Nano)
	b, err = json.MarshalIndent(m, "", "  ")
	ts.Check(err)
	ts.Check(os.WriteFile(p, b, 0o600))
}
