package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tardis-runtime/tardis/internal/scenario"
)

// The test binary is also tardis, the fake runc, a fake criu and the fake GPU tools (see
// package scenario).
func TestMain(m *testing.M) {
	programs := scenario.Programs()
	maps.Copy(programs, scenario.GPUPrograms())
	scenario.Main(m, programs)
}

func TestScenarios(t *testing.T) {
	cmds := scenario.Cmds()
	maps.Copy(cmds, scenario.GPUCmds())
	cmds["sameasrunc"] = cmdSameAsRunc
	testscript.Run(t, testscript.Params{
		Dir:           "../../testdata/scripts",
		UpdateScripts: os.Getenv("UPDATE_SCRIPTS") == "1",
		Setup: func(e *testscript.Env) error {
			if err := scenario.Setup(e); err != nil {
				return err
			}
			return scenario.GPUSetup(e)
		},
		Condition: func(cond string) (bool, error) {
			if cond == "realrunc" {
				_, err := os.Stat("/usr/sbin/runc")
				return err == nil, nil
			}
			return scenario.Condition(cond)
		},
		Cmds: cmds,
	})
}

var logTime = regexp.MustCompile(`time="[^"]*"`)

// sameasrunc ARGS...: runs tardis (over the real runc) and the real runc, installed under
// the name "tardis" (runc names itself after its argv[0] in its help and usage errors, and
// tardis hands runc the caller's argv[0]), with the same arguments and checks stdout,
// stderr (log times aside) and exit code are the same.
func cmdSameAsRunc(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: sameasrunc args...")
	}
	run := func(prog string) (string, string, int) {
		cmd := exec.Command(prog, args...)
		// Each in a fresh directory of its own: `spec` writes config.json where it runs.
		dir, err := os.MkdirTemp(ts.Getenv("WORK"), "same-")
		ts.Check(err)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TARDIS_RUNC=/usr/sbin/runc", "TARDIS_CONFIG="+ts.Getenv("TARDIS_CONFIG"),
			"TARDIS_LOG_FILE="+ts.Getenv("TARDIS_LOG_FILE"), "TARDIS_STATE_DIR="+ts.Getenv("TARDIS_STATE_DIR"))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err = cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			ts.Fatalf("%s: %v", prog, err)
		}
		return out.String(), logTime.ReplaceAllString(errb.String(), `time="T"`), code
	}
	tardisPath, err := exec.LookPath("tardis")
	ts.Check(err)
	to, te, tc := run(tardisPath)
	asTardis := filepath.Join(ts.Getenv("WORK"), "runc-as-tardis", "tardis")
	if _, err := os.Lstat(asTardis); err != nil {
		ts.Check(os.MkdirAll(filepath.Dir(asTardis), 0o755))
		ts.Check(os.Symlink("/usr/sbin/runc", asTardis))
	}
	ro, re, rc := run(asTardis)
	if to != ro || te != re || tc != rc {
		ts.Fatalf("tardis %s differs from runc:\ntardis: exit %d\nstdout:\n%s\nstderr:\n%s\nrunc: exit %d\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), tc, to, te, rc, ro, re)
	}
	fmt.Fprintf(ts.Stdout(), "exit %d\n%s", tc, to)
	fmt.Fprint(ts.Stderr(), te)
}
