package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/internal/scenario"
)

// The test binary is also tardisctl, tardis, the fake runc, a fake criu and the fake GPU
// tools: testscript puts them on the scenarios' PATH, so that the scenarios make real
// state by driving tardis over the fake runc and then look at it with tardisctl.
func TestMain(m *testing.M) {
	programs := scenario.Programs()
	maps.Copy(programs, scenario.GPUPrograms())
	programs["tardisctl"] = func() {
		c := &cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now, node: thisNode}
		os.Exit(c.main(os.Args[1:]))
	}
	scenario.Main(m, programs)
}

func TestScenarios(t *testing.T) {
	cmds := scenario.Cmds()
	maps.Copy(cmds, scenario.GPUCmds())
	cmds["jsonvalid"] = cmdJSONValid
	cmds["backdate"] = cmdBackdate
	cmds["agecheckpoint"] = cmdAgeCheckpoint
	testscript.Run(t, testscript.Params{
		Dir:           "../../testdata/tardisctl",
		UpdateScripts: os.Getenv("UPDATE_SCRIPTS") == "1",
		Setup: func(e *testscript.Env) error {
			if err := scenario.Setup(e); err != nil {
				return err
			}
			return scenario.GPUSetup(e)
		},
		Cmds: cmds,
	})
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
	p := filepath.Join(ts.Getenv("TARDIS_CHECKPOINT_ROOT"), "default", args[0], "current", "manifest.json")
	b, err := os.ReadFile(p)
	ts.Check(err)
	var m map[string]any
	ts.Check(json.Unmarshal(b, &m))
	m["created"] = time.Now().Add(-d).UTC().Format(time.RFC3339Nano)
	b, err = json.MarshalIndent(m, "", "  ")
	ts.Check(err)
	ts.Check(os.WriteFile(p, b, 0o600))
}
