package fakerunc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Statuses, as runc names them.
const (
	created = "created"
	running = "running"
	paused  = "paused"
	stopped = "stopped"
)

const firstPid = 40000

// runc's sentinel errors, by their texts.
var (
	errNotExist   = errors.New("container does not exist")
	errExist      = errors.New("container with given ID already exists")
	errEmptyID    = errors.New("container id cannot be empty")
	errIDFormat   = errors.New("invalid container ID format")
	errNotRunning = errors.New("container not running")
	errNotPaused  = errors.New("container not paused")
	errNoConfig   = errors.New("JSON specification file config.json not found")
)

// container is what <root>/<id>/state.json holds.
type container struct {
	ID           string            `json:"id"`
	Pid          int               `json:"pid"`
	Status       string            `json:"status"`
	Bundle       string            `json:"bundle"`
	Rootfs       string            `json:"rootfs"`
	Created      time.Time         `json:"created"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Args         []string          `json:"args,omitempty"`         // process.args of config.json
	PausedFrom   string            `json:"pausedFrom,omitempty"`   // the status resume returns to
	RestoredFrom string            `json:"restoredFrom,omitempty"` // the image restore read
	// Real: the container's process runs for real (process.go); Start is the init's start
	// time, so that a reused pid is never taken for it.
	Real  bool   `json:"real,omitempty"`
	Start string `json:"start,omitempty"`

	env []string // process.env of config.json, for a real process
}

// stateOutput is runc's `state` JSON, fields in runc's order.
type stateOutput struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

func (c *container) output(owner string) stateOutput {
	pid := c.Pid
	if c.Status == stopped {
		pid = 0
	}
	return stateOutput{"1.0.2-dev", c.ID, pid, c.Status, c.Bundle, c.Rootfs, c.Created,
		c.Annotations, owner}
}

// validID is runc's rule: ^[\w+-\.]+$ (the range +-. holds the comma), and not . or ..
func validID(id string) error {
	if id == "" {
		return errEmptyID
	}
	if id == "." || id == ".." {
		return errIDFormat
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			c == '+' || c == ',' || c == '-' || c == '.') {
			return errIDFormat
		}
	}
	return nil
}

func (r *fakerunc) dir(id string) string { return filepath.Join(r.root, id) }

// load reads a container's state.
func (r *fakerunc) load(id string) (*container, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(r.dir(id), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotExist
	}
	if err != nil {
		return nil, err
	}
	c := &container{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("fakerunc: %s: %w", id, err)
	}
	if c.Real && c.Status != stopped && !c.alive() {
		c.Status, c.PausedFrom = stopped, "" // its init has died
	}
	return c, nil
}

// save writes the state by rename, so a reader never sees half a file.
func (r *fakerunc) save(c *container) error {
	if err := os.MkdirAll(r.dir(c.ID), 0o711); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(r.dir(c.ID), "state.json"), b)
}

// destroy removes the container; a real one's processes are killed first.
func (r *fakerunc) destroy(c *container) error {
	c.killReal()
	return os.RemoveAll(r.dir(c.ID))
}

func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// nextPid hands out fake pids from <root>/fakerunc-pid, starting at 40000.
func (r *fakerunc) nextPid() (int, error) {
	name := filepath.Join(r.root, "fakerunc-pid")
	last, err := readInt(name)
	if err != nil {
		return 0, err
	}
	pid := max(last+1, firstPid)
	return pid, writeFileAtomic(name, []byte(strconv.Itoa(pid)))
}

// readInt reads a counter file; a missing one counts as 0.
func readInt(name string) (int, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(b))
}

// lock serialises invocations on one root (<root>/fakerunc.lock): runc's own operations
// are atomic per container, and the pid counter needs it. It is held until unlock or exit.
func (r *fakerunc) lock() error {
	if r.lockf != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(r.root, "fakerunc.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return err
	}
	r.lockf = f
	return nil
}

func (r *fakerunc) unlock() {
	if r.lockf != nil {
		r.lockf.Close()
		r.lockf = nil
	}
}

// owner names the owner of a container's state directory, as `runc list` does.
func owner(dir string) string {
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	uid := fi.Sys().(*syscall.Stat_t).Uid
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return fmt.Sprintf("#%d", uid)
}

// spec is the part of a bundle's config.json the fake reads.
type spec struct {
	Process struct {
		Args []string `json:"args"`
		Env  []string `json:"env"`
	} `json:"process"`
	Root struct {
		Path string `json:"path"`
	} `json:"root"`
	Annotations map[string]string `json:"annotations"`
}

// newContainer reads bundle/config.json as runc create does (after its chdir into the
// bundle) and returns a container in status created with a fresh pid; prefix is runc's
// "runc create failed: " and the like.
func (r *fakerunc) newContainer(bundle string) (*container, error) {
	id := r.inv.ID
	if bundle == "" {
		bundle = "."
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(bundle); err != nil || !fi.IsDir() {
		if err == nil {
			err = syscall.ENOTDIR
		} else {
			err = err.(*os.PathError).Err
		}
		return nil, fmt.Errorf("chdir %s: %w", r.bundleArg(), err)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoConfig
	}
	if err != nil {
		return nil, err
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	if _, err := os.Stat(r.dir(id)); err == nil {
		return nil, errExist
	}
	rootfs := s.Root.Path
	if rootfs == "" {
		rootfs = "rootfs"
	}
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	pid, err := r.nextPid()
	if err != nil {
		return nil, err
	}
	return &container{ID: id, Pid: pid, Status: created, Bundle: bundle, Rootfs: rootfs,
		Created: time.Now().UTC(), Annotations: s.Annotations, Args: s.Process.Args, env: s.Process.Env}, nil
}

// bundleArg is the --bundle value as given (runc's chdir error names it so).
func (r *fakerunc) bundleArg() string {
	b, _ := r.inv.Value("bundle")
	return b
}

// writePidFile writes the pid as runc does: decimal, no newline, by rename.
func (r *fakerunc) writePidFile(pid int) error {
	name, ok := r.inv.Value("pid-file")
	if !ok || name == "" {
		return nil
	}
	name, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name))
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o666); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
