package tardis

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
	"github.com/tardis-runtime/tardis/internal/fsys/fsystest"
	"github.com/tardis-runtime/tardis/internal/runc"
)

var counter = []string{"/bin/sh", "-c", "count"}

// Every fallback of create and of stop, through the seams (a fake runc with faults, a
// failing filesystem), in process: fast companions of the scenarios in testdata/scripts.

func TestCreateNotOptedInPassesThrough(t *testing.T) {
	w := newWorld(t)
	b := w.bundle("b", counter)
	if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if w.state("c1") != nil || w.runc.called("state") != 0 || w.runc.called("exec create") != 1 {
		t.Fatalf("a container that did not opt in was touched: %v", *w.runc.calls)
	}
}

func TestCreateFreshWritesStateFile(t *testing.T) {
	w := newWorld(t)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	sf := w.state("c1")
	if sf == nil || sf.Key != "web" || sf.Tenant != "default" || sf.Rootfs != filepath.Join(b, "rootfs") ||
		sf.Identity == nil || sf.Identity.Args[0] != "/bin/sh" {
		t.Fatalf("state file %+v", sf)
	}
}

// A create of an id runc already knows never touches that container, its state file or
// its key: runc refuses it, and so does tardis (issue: it used to kill the running one).
func TestCreateOfExistingIDTouchesNothing(t *testing.T) {
	w := newWorld(t)
	w.checkpointed("web", "c0", counter)
	b := w.bundle("b1", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("create", "--bundle", b, "c1") // restores c1 from c0's checkpoint
	before := w.state("c1")
	w.checkpointed("web", "c2", counter) // a checkpoint the key could restore
	ck := w.current("web")
	b2 := w.bundle("other", []string{"/bin/other"}, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("create", "--bundle", b2, "c1")
	if w.runc.called("restore c1") != 1 || w.current("web") != ck {
		t.Fatalf("the create of an existing id restored or took the checkpoint: %v", *w.runc.calls)
	}
	if after := w.state("c1"); after.Bundle != before.Bundle || after.Started != before.Started {
		t.Fatalf("state file overwritten: %+v", after)
	}
	if st := w.runc.get("c1"); st == nil || st.Status != runc.Running {
		t.Fatalf("the running container was touched: %+v", st)
	}
}

func TestCreateUnusableKey(t *testing.T) {
	w := newWorld(t)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=../x")
	if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	w.wantLog(`opted in with an unusable setting`)
	if sf := w.state("c1"); sf.Key != "" || !strings.Contains(sf.Fallback, "not a safe name") {
		t.Fatalf("state %+v", sf)
	}
}

func TestCreateNetworkFSNotAllowed(t *testing.T) {
	w := newWorld(t)
	b := w.bundle("b", counter, "env:TARDIS_ENABLED=1", "env:TARDIS_NETWORKFS=/:/host")
	w.tardis("run", "-d", "--bundle", b, "c1")
	w.wantLog(`opted in with a setting this node does not allow`)
	raw, _ := os.ReadFile(filepath.Join(b, "config.json"))
	if strings.Contains(string(raw), `"destination"`) {
		t.Fatalf("a mount was added: %s", raw)
	}
}

// A checkpoint of another container (another image, command, cwd or user) under the same
// key is not restored, and is left where it is.
func TestCreateIdentityDiffers(t *testing.T) {
	w := newWorld(t)
	ck := w.checkpointed("web", "c0", counter)
	b := w.bundle("b", []string{"/bin/evil"}, "dev.tardis.enabled=true", "dev.tardis.key=web")
	if code := w.tardis("run", "-d", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	w.wantLog(`the checkpoint is of another container: args [\"/bin/sh\" \"-c\" \"count\"], this container [\"/bin/evil\"]`)
	if w.current("web") != ck || w.runc.called("restore") != 0 {
		t.Fatalf("checkpoint taken: current %q, calls %v", w.current("web"), *w.runc.calls)
	}
}

func TestCreateRestores(t *testing.T) {
	w := newWorld(t)
	w.checkpointed("web", "c0", counter)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if sf := w.state("c1"); sf.Started != "restored" || !sf.StartPending || w.current("web") != "" {
		t.Fatalf("state %+v, current %q", sf, w.current("web"))
	}
	if code := w.tardis("start", "c1"); code != 0 || w.runc.called("exec start") != 0 {
		t.Fatalf("start: %d, %v", code, *w.runc.calls)
	}
}

func TestCreateValidationFails(t *testing.T) {
	w := newWorld(t)
	ck := w.checkpointed("web", "c0", counter)
	if err := criuimgtest.Damage(filepath.Join(w.env["TARDIS_CHECKPOINT_ROOT"], "default", "web", ck, "images"), "missing-core"); err != nil {
		t.Fatal(err)
	}
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("create", "--bundle", b, "c1")
	w.wantLog(`"msg":"restore failed; creating the container fresh"`)
	if len(w.asides("web")) != 1 || w.runc.called("restore") != 0 || w.runc.called("exec create") != 1 {
		t.Fatalf("asides %v, calls %v", w.asides("web"), *w.runc.calls)
	}
}

func TestCreateRestoreFailsOrHangs(t *testing.T) {
	for name, ft := range map[string]fault{
		"error": {err: errors.New("criu failed: type RESTORE errno 0")},
		"hang":  {hang: true},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.env["TARDIS_RESTORE_TIMEOUT"] = "300ms"
			w.checkpointed("web", "c0", counter)
			w.runc.faults["restore"] = ft
			b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
			if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
				t.Fatalf("exit %d", code)
			}
			w.wantLog(`"msg":"restore failed; creating the container fresh"`)
			if len(w.asides("web")) != 1 || w.runc.called("exec create") != 1 {
				t.Fatalf("asides %v, calls %v", w.asides("web"), *w.runc.calls)
			}
			if sf := w.state("c1"); sf.Started != "created" || sf.Fallback == "" {
				t.Fatalf("state %+v", sf)
			}
			// Of the failed restore only the logs its warning names are left.
			_ = filepath.WalkDir(filepath.Join(w.env["TARDIS_WORK_DIR"], "default", "web"), func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".log") {
					t.Errorf("left in the work dir: %s", p)
				}
				return nil
			})
		})
	}
}

// runc before 1.2 restores on cgroup v2 into the cgroup of the container that was
// checkpointed, not the new one's: the new container's limits would not apply and its
// next checkpoint fails (CRIU cannot seize a process outside the frozen cgroup). tardis
// does not restore there; the checkpoint stays for a node whose runc can.
func TestCreateOnCgroup2WithOldRuncKeepsCheckpoint(t *testing.T) {
	for _, c := range []struct {
		name    string
		cgroup2 bool
		version runc.Version
		restore bool
	}{
		{"cgroup v2, runc 1.1.15", true, runc.Version{Major: 1, Minor: 1, Patch: 15, Text: "runc version 1.1.15"}, false},
		{"cgroup v2, runc 1.2.0", true, runc.Version{Major: 1, Minor: 2, Text: "runc version 1.2.0"}, true},
		{"cgroup v1, runc 1.1.5", false, runc.Version{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.cgroup2, w.runc.version = c.cgroup2, c.version
			ck := w.checkpointed("web", "c0", counter)
			b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
			if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if c.restore {
				if w.runc.called("restore") != 1 || w.current("web") != "" {
					t.Fatalf("not restored: current %q, calls %v", w.current("web"), *w.runc.calls)
				}
				return
			}
			w.wantLog(`"msg":"restore not attempted, checkpoint kept; creating the container fresh"`)
			w.wantLog(`runc version 1.1.15 on cgroup v2 restores a container into the cgroup of the one that was checkpointed`)
			if w.current("web") != ck || w.runc.called("restore") != 0 || w.runc.called("exec create") != 1 {
				t.Fatalf("current %q, calls %v", w.current("web"), *w.runc.calls)
			}
			if sf := w.state("c1"); sf.Started != "created" || !strings.Contains(sf.Fallback, "runc 1.2") {
				t.Fatalf("state %+v", sf)
			}
		})
	}
}

func TestCreateForegroundRunKeepsCheckpoint(t *testing.T) {
	w := newWorld(t)
	ck := w.checkpointed("web", "c0", counter)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("run", "--bundle", b, "c1")
	w.wantLog(`run without --detach cannot be restored`)
	if w.current("web") != ck {
		t.Fatal("checkpoint not kept")
	}
}

func TestCreateLockTimeout(t *testing.T) {
	w := newWorld(t)
	w.env["TARDIS_LOCK_TIMEOUT"] = "100ms"
	w.checkpointed("web", "c0", counter)
	lk, err := (newWorldPaths(w)).Lock(ref(w.state("c0")), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("create", "--bundle", b, "c1")
	w.wantLog(`cannot serialise on the key; creating the container as plain runc would`)
	if w.runc.called("restore") != 0 {
		t.Fatal("restored without the lock")
	}
}

// A state directory that cannot be written: warnings, and the container is still created.
func TestCreateStateDirFails(t *testing.T) {
	w := newWorld(t)
	w.fs = fsystest.Failing{FS: w.fs, Words: []string{"/state/"}, Err: syscall.ENOSPC}
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	if code := w.tardis("create", "--bundle", b, "c1"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	w.wantLog(`"msg":"cannot write state file"`)
	w.wantLog(`no space left on device`)
	if w.runc.called("exec create") != 1 {
		t.Fatal("not created")
	}
}

func TestStopCheckpoints(t *testing.T) {
	w := newWorld(t)
	ck := w.checkpointed("web", "c0", counter)
	if sf := w.state("c0"); sf.Checkpointed == nil || sf.Stopping == nil {
		t.Fatalf("state %+v", sf)
	}
	if w.runc.get("c0") != nil {
		t.Fatal("container still there")
	}
	// The delete that follows succeeds without runc and keeps the checkpoint.
	if code := w.tardis("delete", "c0"); code != 0 || w.state("c0") != nil || w.current("web") != ck {
		t.Fatalf("delete: %d, state %+v, current %q", code, w.state("c0"), w.current("web"))
	}
}

func TestStopSignalNotACheckpointTrigger(t *testing.T) {
	w := newWorld(t)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("run", "-d", "--bundle", b, "c1")
	w.tardis("kill", "c1", "HUP")
	if w.runc.called("checkpoint") != 0 || w.runc.called("exec kill c1 HUP") != 1 {
		t.Fatalf("calls %v", *w.runc.calls)
	}
}

// A second kill that arrives while a stop is checkpointing the container and waits for
// the key's lock longer than timeouts.lock (podman stop after its timeout, a person) must
// not kill the container under CRIU: it waits on for that stop, which ends the container,
// bounded by the checkpoint's own deadline, and the checkpoint is published.
func TestSecondKillDuringCheckpoint(t *testing.T) {
	w := newWorld(t)
	w.env["TARDIS_LOCK_TIMEOUT"] = "200ms"
	w.checkpointed("web", "c0", counter)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("create", "--bundle", b, "c1") // restores c0's
	w.runc.faults = map[string]fault{"checkpoint": {delay: time.Second}}
	first := make(chan int)
	go func() { first <- w.tardis("kill", "c1", "15") }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if sf := w.state("c1"); sf != nil && sf.Stopping != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first kill never began its checkpoint")
		}
	}
	if code := w.tardis("kill", "--all", "c1", "9"); code != 0 {
		t.Fatalf("second kill: exit %d", code)
	}
	if code := <-first; code != 0 {
		t.Fatalf("first kill: exit %d", code)
	}
	for _, c := range *w.runc.calls {
		if strings.HasPrefix(c, "exec kill") {
			t.Fatalf("a signal went to runc during the dump: %v", *w.runc.calls)
		}
	}
	w.wantLog(`"msg":"the container is being checkpointed for a stop; waiting for that stop, which ends it"`)
	if w.current("web") == "" {
		t.Fatal("no checkpoint published")
	}
}

func TestStopCheckpointFails(t *testing.T) {
	for name, ft := range map[string]fault{
		"error": {err: errors.New("criu failed: type DUMP errno 0")},
		"hang":  {hang: true},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.env["TARDIS_CHECKPOINT_TIMEOUT"] = "300ms"
			ck := w.checkpointed("web", "c0", counter)
			w.runc.faults["checkpoint"] = ft
			b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
			w.tardis("create", "--bundle", b, "c1") // restores c0's
			w.runc.faults = map[string]fault{"checkpoint": ft}
			w.tardis("kill", "c1", "15")
			w.wantLog(`"msg":"checkpoint failed; carrying on as asked"`)
			if w.runc.called("exec kill c1 15") != 1 {
				t.Fatalf("signal not delivered: %v", *w.runc.calls)
			}
			if w.current("web") != "" {
				t.Fatalf("a failed dump was published: %q (previous %s)", w.current("web"), ck)
			}
			if tmps, _ := filepath.Glob(filepath.Join(w.env["TARDIS_CHECKPOINT_ROOT"], "default", "web", ".tmp-*")); len(tmps) != 0 {
				t.Fatalf("partial checkpoint left: %v", tmps)
			}
		})
	}
}

// CRIU wrote complete images, then runc failed or hung (and left the container alive):
// the dump is published, and the container ended so that it does not run on beside it.
func TestStopCompleteDumpKept(t *testing.T) {
	for name, ft := range map[string]fault{
		"error after the images": {afterImages: true, leaveRunning: true, err: errors.New("criu failed after the dump")},
		"hang after the images":  {afterImages: true, leaveRunning: true, hang: true},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.env["TARDIS_CHECKPOINT_TIMEOUT"] = "300ms"
			b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
			w.tardis("run", "-d", "--bundle", b, "c1")
			w.runc.faults["checkpoint"] = ft
			if code := w.tardis("kill", "c1", "15"); code != 0 {
				t.Fatalf("exit %d", code)
			}
			w.wantLog(`CRIU's images are complete: keeping them`)
			if w.current("web") == "" || w.runc.called("kill c1 9") != 1 {
				t.Fatalf("current %q, calls %v", w.current("web"), *w.runc.calls)
			}
			if st := w.runc.get("c1"); st != nil && st.Status == runc.Running {
				t.Fatal("the container runs on beside its checkpoint")
			}
		})
	}
}

// A stopped container that tardis never stopped ended on its own: its key is forgotten.
// One that tardis was stopping (even if that checkpoint failed) did not: the key's
// checkpoint stays.
func TestDeleteNaturalExitAndNot(t *testing.T) {
	w := newWorld(t)
	ck := w.checkpointed("web", "c0", counter)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("run", "--bundle", b, "c1") // foreground: not restored, checkpoint kept
	w.runc.put(&runc.State{ID: "c1", Status: runc.Running})
	w.runc.faults["checkpoint"] = fault{err: errors.New("dump failed")}
	w.tardis("kill", "c1", "15") // fails: delivered as asked
	w.tardis("delete", "c1")
	if w.current("web") != ck {
		t.Fatalf("the key's checkpoint was removed after a stop tardis made: %q", w.current("web"))
	}
	w.runc.faults = map[string]fault{}
	w.tardis("run", "--bundle", b, "c2") // ends on its own
	w.runc.put(&runc.State{ID: "c2", Status: runc.Stopped})
	w.tardis("delete", "c2")
	w.wantLog(`container ended on its own; its key's checkpoint is removed`)
	if w.current("web") != "" {
		t.Fatal("checkpoint of a container that ended on its own kept")
	}
}

// The kill that a caller retries after tardis's own stop finds the container gone: done.
func TestKillOfAContainerTardisEnded(t *testing.T) {
	w := newWorld(t)
	w.checkpointed("web", "c0", counter)
	if code := w.tardis("kill", "--all", "c0", "9"); code != 0 || w.runc.called("exec kill") != 0 {
		t.Fatalf("kill --all after the checkpoint: %d, %v", code, *w.runc.calls)
	}
}

func TestClientRestoreIsTracked(t *testing.T) {
	w := newWorld(t)
	b := w.bundle("b", counter, "dev.tardis.enabled=true", "dev.tardis.key=web")
	w.tardis("restore", "--detach", "--bundle", b, "--image-path", "/x", "c1")
	if sf := w.state("c1"); sf == nil || sf.Started != "client restore" || sf.Key != "web" {
		t.Fatalf("state %+v", sf)
	}
	if w.runc.called("exec restore") != 1 {
		t.Fatal("not passed through")
	}
}

// Checkpoints nothing restores (docker rm of a stopped container never calls the runtime)
// go after checkpoint_expiry, swept by tardis itself at most once an hour; a claimed one
// never.
func TestExpirySweep(t *testing.T) {
	w := newWorld(t)
	w.checkpointed("old", "c0", counter)
	w.checkpointed("held", "c1", counter)
	held := filepath.Join(w.env["TARDIS_CHECKPOINT_ROOT"], "default", "held")
	if err := os.Rename(filepath.Join(held, "current"), filepath.Join(held, ".claimed-node-b-0a1b2c3d-20200101T000000.000000000Z-0a1b2c3d")); err != nil {
		t.Fatal(err)
	}
	stamp := filepath.Join(w.env["TARDIS_STATE_DIR"], "expire.stamp")
	os.Remove(stamp)
	w.env["TARDIS_CHECKPOINT_EXPIRY"] = "1ns"
	w.checkpointed("new", "c2", counter) // its publication starts the sweep
	w.wantLog(`"msg":"expired","op":"background"`)
	if w.current("old") != "" {
		t.Error("an expired checkpoint is still there")
	}
	if _, err := os.Stat(stamp); err != nil {
		t.Fatal("no stamp")
	}
	if entries, _ := filepath.Glob(filepath.Join(held, "ckpt-*")); len(entries) != 1 {
		t.Errorf("the claimed checkpoint was swept: %v", entries)
	}
	// Within the hour, no second sweep.
	w.checkpointed("again", "c3", counter)
	if w.current("again") == "" {
		t.Error("swept again within the hour")
	}
	// Off.
	os.Remove(stamp)
	w.env["TARDIS_CHECKPOINT_EXPIRY"] = "0"
	w.checkpointed("kept", "c4", counter)
	w.checkpointed("kept2", "c5", counter)
	if w.current("kept") == "" {
		t.Error("swept with the expiry off")
	}
}
