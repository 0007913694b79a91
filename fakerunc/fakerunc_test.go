package fakerunc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tardis-runtime/tardis/fakerunc"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"runc": func() { os.Exit(fakerunc.Main()) }})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("ROOT", filepath.Join(e.WorkDir, "root"))
			e.Setenv("FAKERUNC_CALLS", filepath.Join(e.WorkDir, "calls"))
			return nil
		},
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"exitcode": cmdExitcode,
			"hangs":    cmdHangs,
		},
	})
}

// exitcode N|killed prog args...: runs prog, which must end with status N (or by SIGKILL).
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N|killed prog args...")
	}
	err := ts.Exec(args[1], args[2:]...)
	got := "0"
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = strconv.Itoa(ee.ExitCode())
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			got = "killed"
		}
	} else if err != nil {
		ts.Fatalf("%v", err)
	}
	if got != args[0] {
		ts.Fatalf("exit status %s, want %s", got, args[0])
	}
}

// hangs DURATION prog args...: prog must still run after DURATION; it is then killed.
func cmdHangs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: hangs DURATION prog args...")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	path, err := exec.LookPath(args[1]) // the test binary's PATH holds the fake runc
	ts.Check(err)
	cmd := exec.Command(path, args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	for _, k := range []string{"ROOT", "FAKERUNC_CALLS", "FAKERUNC_FAULTS", "PATH", "HOME"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	ts.Check(cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ts.Fatalf("%s ended before %v: %v", args[1], d, err)
	case <-time.After(d):
	}
	cmd.Process.Kill()
	<-done
}

// realRunc returns the path of a real runc 1.1, or skips the test.
func realRunc(t *testing.T) (real, fake string) {
	real = os.Getenv("FAKERUNC_REAL_RUNC")
	if real == "" {
		real = "/usr/sbin/runc"
	}
	if _, err := os.Stat(real); err != nil {
		t.Skipf("no real runc: %v", err)
	}
	if out, _ := exec.Command(real, "--version").Output(); !bytes.HasPrefix(out, []byte("runc version 1.1.")) {
		t.Skipf("real runc is not 1.1: %q", out)
	}
	fake, err := exec.LookPath("runc")
	if err != nil || fake == real {
		t.Fatalf("fake runc not first on PATH: %q, %v", fake, err)
	}
	return real, fake
}

// TestSameAsRealRunc runs the fake and the real runc 1.1.5 on the failures that need no
// container and compares exit status, stderr (time values aside) and the --log file.
func TestSameAsRealRunc(t *testing.T) {
	real, fake := realRunc(t)
	times := regexp.MustCompile(`time="[^"]*"|"time":"[^"]*"`)
	run := func(prog, dir string, args []string) (int, string, string) {
		log := filepath.Join(dir, "log")
		args = append([]string{"--root", filepath.Join(dir, "root")}, args...)
		for i, a := range args {
			if a == "LOG" {
				args[i] = log
			}
		}
		cmd := exec.Command(prog, args...)
		cmd.Args[0] = "runc" // runc names itself by its argv[0] in some errors
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		logText, _ := os.ReadFile(log)
		return code, times.ReplaceAllString(stderr.String(), "time=T"),
			times.ReplaceAllString(string(logText), "time=T")
	}
	for _, args := range [][]string{
		{"state", "nope"}, {"kill", "nope"}, {"kill", "nope", "KILL"}, {"delete", "nope"},
		{"delete", "-f", "nope"}, {"delete", "--force", "a/b"}, {"start", "nope"},
		{"pause", "nope"}, {"resume", "nope"}, {"ps", "nope"}, {"exec", "nope", "sh"},
		{"update", "nope"}, {"events", "nope"}, {"checkpoint", "nope"}, {"state", ""},
		{"foo"}, {"--bogus", "state", "x"}, {"state"}, {"kill", "a", "9", "x"},
		{"state", "-x", "nope"}, {"restore", "--lsm-mount-context"},
		{"create", "x"}, {"create", "-b", "/nonexistent", "x"}, {"run", "-d", "x"},
		{"restore", "x"}, {"list"}, {"list", "-q"}, {"list", "--format", "json"},
		{"--log", "LOG", "state", "nope"}, {"--log", "LOG", "--log-format", "json", "state", "nope"},
		{"--log", "LOG", "--log-format", "json", "foo"}, {"--log", "LOG", "--log-format", "json", "state"},
		{"--log", "LOG", "--log-format", "json", "kill", "nope"},
	} {
		t.Run(filepath.Join(args...), func(t *testing.T) {
			rc, rerr, rlog := run(real, t.TempDir(), append([]string(nil), args...))
			fc, ferr, flog := run(fake, t.TempDir(), append([]string(nil), args...))
			if rc != fc || rerr != ferr || rlog != flog {
				t.Errorf("real: %d %q log %q\nfake: %d %q log %q", rc, rerr, rlog, fc, ferr, flog)
			}
		})
	}
}

// TestLifecycleSameAsRealRunc drives a real container (busybox sleep) and a fake one
// through the same commands and compares outputs and exit statuses, pids and times aside.
// It needs root, busybox and a host where runc can run containers.
func TestLifecycleSameAsRealRunc(t *testing.T) {
	real, fake := realRunc(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and busybox")
	}
	bundle := t.TempDir()
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs/bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := exec.Command(real, "spec", "--bundle", bundle)
	if out, err := spec.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	var config map[string]any
	b, _ = os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &config); err != nil {
		t.Fatal(err)
	}
	process := config["process"].(map[string]any)
	process["terminal"] = false
	process["args"] = []string{"/bin/busybox", "sleep", "1000"}
	config["annotations"] = map[string]string{"a.b": "c"}
	b, _ = json.Marshal(config)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	steps := strings.Split(`create c1|create c1|state c1|checkpoint c1|start c1|start c1|state c1|`+
		`delete c1|pause c1|pause c1|start c1|exec c1 true|resume c1|resume c1|kill c1 0|`+
		`kill c1 BOGUS|kill c1 99|list|list -q|kill c1 9|state c1|ps -f json c1|start c1|`+
		`kill c1 9|pause c1|checkpoint c1|exec c1 true|events c1|update c1|delete c1|delete c1|`+
		`create c2|pause c2|state c2|resume c2|kill c2|state c2|delete c2|`+
		`run -d c3|pause c3|delete c3|kill c3 TERM|state c3|kill -a c3 KILL|state c3|delete -f c3|`+
		`run -d c4|delete -f c4|list|delete -f c4`, "|")
	norm := regexp.MustCompile(`time="[^"]*"|"pid": \d+|\d{4}-\d\d-\d\dT[\d:.]+Z|(?m)^(c\d) +\d+ `)
	spaces := regexp.MustCompile(` {2,}`) // list's columns are as wide as this run's times

	run := func(prog, root, step string) string {
		out, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd := exec.Command(prog, append([]string{"--root", root}, strings.Fields(step)...)...)
		cmd.Args[0], cmd.Dir, cmd.Stdout, cmd.Stderr = "runc", bundle, out, out // a file: the container keeps it
		err = cmd.Run()
		if ee := (*exec.ExitError)(nil); err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if strings.HasPrefix(step, "kill") {
			time.Sleep(100 * time.Millisecond) // let a killed container die
			if f := strings.Fields(step); f[len(f)-1] == "9" || f[len(f)-1] == "KILL" {
				// A loaded machine may take longer to reap it; the next step's state must not
				// depend on that.
				id := f[len(f)-2]
				for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
					b, err := exec.Command(prog, "--root", root, "state", id).Output()
					if err != nil || !strings.Contains(string(b), `"running"`) {
						break
					}
				}
			}
		}
		b, _ := os.ReadFile(out.Name())
		return fmt.Sprintf("%s\n%s\nexit %d", step, spaces.ReplaceAllString(norm.ReplaceAllString(string(b), "X"), " "),
			cmd.ProcessState.ExitCode())
	}
	realRoot, fakeRoot := t.TempDir(), t.TempDir()
	t.Cleanup(func() {
		for _, id := range []string{"c1", "c2", "c3", "c4"} {
			exec.Command(real, "--root", realRoot, "delete", "--force", id).Run()
		}
	})
	if got := run(real, realRoot, "run -d probe"); !strings.HasSuffix(got, "exit 0") {
		t.Skipf("real runc cannot run a container here: %s", got)
	}
	exec.Command(real, "--root", realRoot, "delete", "--force", "probe").Run()
	for _, step := range steps {
		if r, f := run(real, realRoot, step), run(fake, fakeRoot, step); r != f {
			t.Errorf("real:\n%s\nfake:\n%s", r, f)
		}
	}
}
