package tardis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
	"github.com/tardis-runtime/tardis/internal/fsys"
	"github.com/tardis-runtime/tardis/internal/node"
	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/state"
)

// fakeRunc is runc in memory: containers with a status, a call log, and faults per verb.
// Checkpoint writes real-format CRIU images (criuimgtest) and ends the container, as runc
// does; Restore makes a running container. With start set, a running container's process
// is real: start runs it (restored: as a restore brings it back) and returns its pid and
// how to end it; Ps lists it; Checkpoint, Kill and Delete end it.
type fakeRunc struct {
	mu         *sync.Mutex
	root       string
	containers map[string]*runc.State // by root + "/" + id
	calls      *[]string
	faults     map[string]fault
	version    runc.Version // what Version reports; 1.1.5 unless set
	start      func(id string, restored bool) (pid int, end func())
	ends       map[int]func() // by pid
}

// fault is what a verb does instead of its work.
type fault struct {
	err          error         // returned (after writing images, for checkpoint, when afterImages)
	hang         bool          // blocks until the context ends
	afterImages  bool          // checkpoint: write complete images, then fail or hang
	leaveRunning bool          // checkpoint: the container is not ended
	delay        time.Duration // checkpoint: the dump takes this long (the container runs on)
}

func newFakeRunc() *fakeRunc {
	return &fakeRunc{mu: &sync.Mutex{}, root: state.DefaultRoot, containers: map[string]*runc.State{},
		calls: &[]string{}, faults: map[string]fault{}, ends: map[int]func(){}}
}

// spawn gives a new running container its pid: a real process's with start, else pid.
func (f *fakeRunc) spawn(id string, restored bool, pid int) int {
	if f.start == nil {
		return pid
	}
	p, end := f.start(id, restored)
	f.mu.Lock()
	f.ends[p] = end
	f.mu.Unlock()
	return p
}

// end ends a container's real process, if it has one.
func (f *fakeRunc) end(id string) {
	st := f.get(id)
	if st == nil {
		return
	}
	f.mu.Lock()
	end := f.ends[st.Pid]
	delete(f.ends, st.Pid)
	f.mu.Unlock()
	if end != nil {
		end()
	}
}

func (f *fakeRunc) record(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.calls = append(*f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeRunc) called(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range *f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeRunc) get(id string) *runc.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.containers[f.root+"/"+id]
}

func (f *fakeRunc) put(st *runc.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st.Status == "" {
		delete(f.containers, f.root+"/"+st.ID)
		return
	}
	f.containers[f.root+"/"+st.ID] = st
}

// apply runs a verb's fault: (true, err) when the fault replaced the verb.
func (f *fakeRunc) apply(ctx context.Context, verb string) (bool, error) {
	ft, ok := f.faults[verb]
	if !ok || ft.afterImages || ft.err == nil && !ft.hang {
		return false, nil // no fault, or one the verb plays itself
	}
	if ft.hang {
		<-ctx.Done()
		return true, fmt.Errorf("runc %s: %w", verb, runc.ErrTimeout)
	}
	return true, ft.err
}

// Exec stands for the caller's own command: create, run and start make containers.
func (f *fakeRunc) Exec(args []string) error {
	f.record("exec %s", strings.Join(args, " "))
	for i, a := range args {
		switch a {
		case "create", "run":
			id := args[len(args)-1]
			if f.get(id) != nil {
				return nil // runc refuses: "container with given ID already exists"
			}
			status := runc.Created
			if a == "run" {
				status = runc.Running
			}
			f.put(&runc.State{ID: id, Pid: f.spawn(id, false, 4242), Status: status})
			return nil
		case "delete":
			f.end(args[len(args)-1])
			f.put(&runc.State{ID: args[len(args)-1]})
			return nil
		case "kill":
			f.end(args[i+1])
			if st := f.get(args[i+1]); st != nil {
				c := *st
				c.Status = runc.Stopped
				f.put(&c)
			}
			return nil
		}
	}
	return nil
}

func (f *fakeRunc) Forward(args []string, _ runc.Stdio) (int, error) {
	f.record("forward %s", strings.Join(args, " "))
	if len(args) > 0 && strings.Contains(strings.Join(args, " "), "delete") {
		f.end(args[len(args)-1])
		f.put(&runc.State{ID: args[len(args)-1]})
	}
	return 0, nil
}

func (f *fakeRunc) State(ctx context.Context, id string) (*runc.State, error) {
	f.record("state %s", id)
	if done, err := f.apply(ctx, "state"); done {
		return nil, err
	}
	st := f.get(id)
	if st == nil {
		return nil, fmt.Errorf("runc state %s: %w", id, runc.ErrNotExist)
	}
	c := *st
	return &c, nil
}

func (f *fakeRunc) Ps(ctx context.Context, id string) ([]int, error) {
	f.record("ps %s", id)
	if done, err := f.apply(ctx, "ps"); done {
		return nil, err
	}
	st := f.get(id)
	if st == nil {
		return nil, fmt.Errorf("runc ps %s: %w", id, runc.ErrNotExist)
	}
	if st.Status == runc.Stopped {
		return nil, nil
	}
	return []int{st.Pid}, nil
}

func (f *fakeRunc) Checkpoint(ctx context.Context, id string, o runc.CheckpointOpts) error {
	f.record("checkpoint %s", id)
	if o.Started != nil {
		o.Started(runc.Proc{Pid: 999999999})
	}
	if done, err := f.apply(ctx, "checkpoint"); done {
		return err
	}
	if d := f.faults["checkpoint"].delay; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return fmt.Errorf("runc checkpoint: %w", runc.ErrTimeout)
		}
	}
	ft := f.faults["checkpoint"]
	if err := criuimgtest.WriteFake(o.ImagePath, criuimgtest.FakeProcess{Pid: 1, Threads: 1, Pages: 2, Comm: "sh"}); err != nil {
		return err
	}
	if !ft.leaveRunning {
		f.end(id)
		f.put(&runc.State{ID: id})
	}
	if ft.hang {
		<-ctx.Done()
		return fmt.Errorf("runc checkpoint: %w", runc.ErrTimeout)
	}
	return ft.err
}

func (f *fakeRunc) Restore(ctx context.Context, id string, o runc.RestoreOpts) error {
	f.record("restore %s", id)
	if o.Started != nil {
		o.Started(runc.Proc{Pid: 999999999})
	}
	if done, err := f.apply(ctx, "restore"); done {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.ImagePath, "inventory.img")); err != nil {
		return err
	}
	f.put(&runc.State{ID: id, Pid: f.spawn(id, true, 4343), Status: runc.Running})
	return nil
}

func (f *fakeRunc) Delete(ctx context.Context, id string, force bool) error {
	f.record("delete force=%v %s", force, id)
	if done, err := f.apply(ctx, "delete"); done {
		return err
	}
	f.end(id)
	f.put(&runc.State{ID: id})
	return nil
}

func (f *fakeRunc) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	f.record("kill %s %d", id, sig)
	f.end(id)
	if st := f.get(id); st != nil {
		c := *st
		c.Status = runc.Stopped
		f.put(&c)
	}
	return nil
}

func (f *fakeRunc) Resume(ctx context.Context, id string) error {
	f.record("resume %s", id)
	return nil
}

func (f *fakeRunc) Version(context.Context) (runc.Version, error) {
	if f.version.Major == 0 {
		return runc.Version{Major: 1, Minor: 1, Patch: 5, Text: "runc version 1.1.5"}, nil
	}
	return f.version, nil
}

func (f *fakeRunc) InRoot(root string) Runc {
	d := *f
	d.root = root
	return &d
}

type fakeCRIU struct{}

func (fakeCRIU) Version(context.Context) string { return "4.1.1" }

// world is one test's node: directories, a bundle, the fake runc, and a way to run tardis.
type world struct {
	t      *testing.T
	dir    string
	env    map[string]string
	runc   *fakeRunc
	fs     fsys.FS
	stderr *os.File
	// environ is added to the process environment tardis hands its tools (the fake GPU's
	// variables); devPrefix is where tardis looks for GPU devices.
	environ   []string
	devPrefix string
	cgroup2   bool // /sys/fs/cgroup is cgroup v2, as tardis sees it
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{t: t, dir: dir, runc: newFakeRunc(), fs: fsys.OS{}}
	w.env = map[string]string{
		"TARDIS_CONFIG":          filepath.Join(dir, "tardis.toml"),
		"TARDIS_STATE_DIR":       filepath.Join(dir, "state"),
		"TARDIS_CHECKPOINT_ROOT": filepath.Join(dir, "ckpt"),
		"TARDIS_WORK_DIR":        filepath.Join(dir, "work"),
		"TARDIS_LOG_FILE":        filepath.Join(dir, "tardis.log"),
		"TARDIS_LOCK_TIMEOUT":    "2s",
	}
	if err := os.WriteFile(w.env["TARDIS_CONFIG"], nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "stderr"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w.stderr = f
	return w
}

// bundle writes a bundle whose process runs args, with these annotations (and
// "env:NAME=value" for process.env).
func (w *world) bundle(name string, args []string, kv ...string) string {
	w.t.Helper()
	b := filepath.Join(w.dir, name)
	if err := os.MkdirAll(filepath.Join(b, "rootfs"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	ann := map[string]string{}
	env := []string{"PATH=/bin"}
	for _, s := range kv {
		if e, ok := strings.CutPrefix(s, "env:"); ok {
			env = append(env, e)
			continue
		}
		k, v, _ := strings.Cut(s, "=")
		ann[k] = v
	}
	spec := map[string]any{"process": map[string]any{"args": args, "env": env, "cwd": "/"},
		"root": map[string]any{"path": "rootfs"}, "annotations": ann}
	raw, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(b, "config.json"), raw, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return b
}

// tardis runs one invocation in process and returns its exit code.
func (w *world) tardis(args ...string) int {
	w.t.Helper()
	env := Env{
		Args:   append([]string{"tardis"}, args...),
		Getenv: func(k string) string { return w.env[k] },
		Stdin:  nil, Stdout: w.stderr, Stderr: w.stderr,
		FS: w.fs, IsSelf: func(string) bool { return false },
		Mountinfo: "/proc/self/mountinfo", CPUInfo: "/proc/cpuinfo",
		Runc: w.runc, CRIU: fakeCRIU{},
		Inline:  true,
		Environ: append(os.Environ(), w.environ...), GPUDevPrefix: w.devPrefix,
		CgroupV2: func() bool { return w.cgroup2 },
	}
	return Main(env)
}

func (w *world) log() string {
	b, _ := os.ReadFile(w.env["TARDIS_LOG_FILE"])
	return string(b)
}

func (w *world) wantLog(substr string) {
	w.t.Helper()
	if !strings.Contains(w.log(), substr) {
		w.t.Fatalf("tardis.log lacks %q:\n%s", substr, w.log())
	}
}

func (w *world) state(id string) *state.File {
	w.t.Helper()
	sf, err := state.Store{FS: fsys.OS{}, Dir: w.env["TARDIS_STATE_DIR"]}.Read(state.DefaultRoot, id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return sf
}

// current is the name of the key's current checkpoint in the default tenant ("" if none).
func (w *world) current(key string) string {
	t, _ := os.Readlink(filepath.Join(w.env["TARDIS_CHECKPOINT_ROOT"], "default", key, "current"))
	return t
}

func (w *world) asides(key string) []string {
	m, _ := filepath.Glob(filepath.Join(w.env["TARDIS_CHECKPOINT_ROOT"], "default", key, "aside-*"))
	return m
}

// checkpointed runs a container of key to a checkpoint, and returns the checkpoint's name.
func (w *world) checkpointed(key, id string, args []string) string {
	w.t.Helper()
	b := w.bundle("b-"+id, args, "dev.tardis.enabled=true", "dev.tardis.key="+key)
	if code := w.tardis("run", "-d", "--bundle", b, id); code != 0 {
		w.t.Fatalf("run %s: exit %d\n%s", id, code, w.log())
	}
	if code := w.tardis("kill", id, "15"); code != 0 {
		w.t.Fatalf("kill %s: exit %d\n%s", id, code, w.log())
	}
	name := w.current(key)
	if name == "" {
		w.t.Fatalf("no checkpoint of %s after the kill:\n%s", key, w.log())
	}
	return name
}

func newWorldPaths(w *world) node.Paths {
	return node.Paths{StateDir: w.env["TARDIS_STATE_DIR"], WorkDir: w.env["TARDIS_WORK_DIR"]}
}
