package fakerunc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tardis-runtime/tardis/internal/runcargs"
)

// command is one runc subcommand: its help lines, runc's argument count rule and its work.
type command struct {
	usage, desc string
	min, max    int  // positional arguments; max -1: no limit
	needsRoot   bool // runc creates --root before running it
	run         func(*fakerunc) error
}

var commands map[string]command

func init() { // a var initialiser would loop: run → fail → commands
	commands = map[string]command{
		"checkpoint": {"checkpoint [command options] <container-id>", "checkpoint a running container", 1, 1, true, (*fakerunc).checkpoint},
		"create":     {"create [command options] <container-id>", "create a container", 1, 1, true, (*fakerunc).create},
		"delete":     {"delete [command options] <container-id>", "delete any resources held by the container often used with detached container", 1, 1, true, (*fakerunc).delete},
		"events":     {"events [command options] <container-id>", "display container events such as OOM notifications, cpu, memory, and IO usage statistics", 1, 1, true, (*fakerunc).events},
		"exec":       {"exec [command options] <container-id> <command> [command options]  || -p process.json <container-id>", "execute new process inside the container", 1, -1, true, (*fakerunc).exec},
		"kill":       {"kill [command options] <container-id> [signal]", "kill sends the specified signal (default: SIGTERM) to the container's init process", 1, 2, true, (*fakerunc).kill},
		"list":       {"list [command options] ", "lists containers started by runc with the given root", 0, 0, true, (*fakerunc).list},
		"pause":      {"pause <container-id>", "pause suspends all processes inside the container", 1, 1, true, (*fakerunc).pause},
		"ps":         {"ps [command options] <container-id> [ps options]", "ps displays the processes running inside a container", 1, -1, true, (*fakerunc).ps},
		"restore":    {"restore [command options] <container-id>", "restore a container from a previous checkpoint", 1, 1, true, (*fakerunc).restore},
		"resume":     {"resume <container-id>", "resumes all processes that have been previously paused", 1, 1, true, (*fakerunc).resume},
		"run":        {"run [command options] <container-id>", "create and run a container", 1, 1, true, (*fakerunc).runCmd},
		"spec":       {"spec [command options]", "create a new specification file", 0, 0, false, (*fakerunc).spec},
		"start":      {"start <container-id>", "executes the user defined process in a created container", 1, 1, true, (*fakerunc).start},
		"state":      {"state <container-id>", "output the state of a container", 1, 1, true, (*fakerunc).state},
		"update":     {"update [command options] <container-id>", "update container resource constraints", 1, 1, true, (*fakerunc).update},
		"features":   {"features", "show the enabled features", 0, 0, false, (*fakerunc).features},
	}
}

func (c command) help(name string) string {
	return fmt.Sprintf("NAME:\n   runc %s - %s\n\nUSAGE:\n   runc %s\n", name, c.desc, c.usage)
}

// checkArgs is runc's checkArgs: exact, minimum and maximum counts.
func (c command) checkArgs(name string, n int) error {
	var msg string
	switch {
	case c.min == c.max && n != c.min:
		msg = fmt.Sprintf("exactly %d", c.min)
	case n < c.min:
		msg = fmt.Sprintf("a minimum of %d", c.min)
	case c.max >= 0 && n > c.max:
		msg = fmt.Sprintf("a maximum of %d", c.max)
	default:
		return nil
	}
	// runc names itself by its argv[0].
	return &usageError{command: name, msg: fmt.Sprintf("%s: %q requires %s argument(s)", os.Args[0], name, msg)}
}

// locked loads the invocation's container under the root's lock.
func (r *fakerunc) locked() (*container, error) {
	if err := r.lock(); err != nil {
		return nil, err
	}
	return r.load(r.inv.ID)
}

func (r *fakerunc) create() error {
	if err := r.lock(); err != nil {
		return err
	}
	_, err := r.createContainer(true)
	if err != nil {
		return fmt.Errorf("runc create failed: %w", err)
	}
	return nil
}

// createContainer makes a container in status created; with process, its process runs for
// real when the environment asks for it (process.go).
func (r *fakerunc) createContainer(process bool) (*container, error) {
	c, err := r.newContainer(r.bundleArg())
	if err != nil {
		return nil, err
	}
	if process && wantsReal() {
		if err := r.startReal(c, c.env, ""); err != nil {
			return nil, err
		}
	}
	if err := r.save(c); err != nil {
		return nil, err
	}
	r.dieIf()
	return c, r.writePidFile(c.Pid)
}

// runCmd is `run`: create and start; without --detach the process "exits 0" at once.
func (r *fakerunc) runCmd() error {
	if err := r.lock(); err != nil {
		return err
	}
	c, err := r.createContainer(r.inv.Bool("detach"))
	if err != nil {
		return fmt.Errorf("runc run failed: %w", err)
	}
	c.Status = running
	if !r.inv.Bool("detach") {
		c.Status = stopped
	}
	return r.save(c)
}

func (r *fakerunc) start() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	switch c.Status {
	case created:
		c.Status = running
		return r.save(c)
	case stopped:
		return errors.New("cannot start a container that has stopped")
	case running:
		return errors.New("cannot start an already running container")
	}
	return fmt.Errorf("cannot start a container in the %s state", c.Status)
}

func (r *fakerunc) state() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(c.output(""), "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b) // runc prints no final newline
	return err
}

func (r *fakerunc) list() error {
	if err := r.lock(); err != nil {
		return err
	}
	des, err := os.ReadDir(r.root)
	if err != nil {
		return err
	}
	var states []stateOutput
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		c, err := r.load(de.Name())
		if err != nil {
			fmt.Fprintf(os.Stderr, "load container %s: %v\n", de.Name(), err)
			continue
		}
		states = append(states, c.output(owner(r.dir(c.ID))))
	}
	format, _ := r.inv.Value("format")
	switch {
	case r.inv.Bool("quiet"):
		for _, s := range states {
			fmt.Println(s.ID)
		}
	case format == "json":
		b, err := json.Marshal(states)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	case format == "table" || format == "":
		w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
		fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
		for _, s := range states {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle,
				s.Created.Format(time.RFC3339Nano), s.Owner)
		}
		return w.Flush()
	default:
		return errors.New("invalid format option")
	}
	return nil
}

// terminates tells whether a signal's default action ends the process.
func terminates(sig syscall.Signal) bool {
	switch sig {
	case 0, syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN,
		syscall.SIGTTOU, syscall.SIGURG, syscall.SIGWINCH:
		return false
	}
	return true
}

func (r *fakerunc) kill() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	var arg string
	if len(r.inv.Positional) > 1 {
		arg = r.inv.Positional[1]
	}
	sig, err := runcargs.ParseSignal(arg)
	if err != nil {
		return err
	}
	if c.Status == stopped {
		return errNotRunning
	}
	if sig < 0 || sig > 64 {
		return errors.New("unable to signal init: invalid argument")
	}
	if c.Real {
		if c.Status == paused && sig != syscall.SIGKILL {
			return nil
		}
		if c.signalReal(sig, r.inv.Bool("all")) {
			c.Status, c.PausedFrom = stopped, ""
			return r.save(c)
		}
		return nil
	}
	// A frozen process only dies of SIGKILL; other signals wait for the thaw.
	if terminates(sig) && (c.Status != paused || sig == syscall.SIGKILL) {
		c.Status, c.PausedFrom = stopped, ""
		return r.save(c)
	}
	return nil
}

func (r *fakerunc) delete() error {
	c, err := r.locked()
	if errors.Is(err, errNotExist) && r.inv.Bool("force") {
		return nil
	}
	if err != nil {
		return err
	}
	if (c.Status == running || c.Status == paused) && !r.inv.Bool("force") {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", c.ID, c.Status)
	}
	return r.destroy(c)
}

func (r *fakerunc) pause() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	if c.Status != running && c.Status != created {
		return errNotRunning
	}
	c.Status, c.PausedFrom = paused, c.Status
	return r.save(c)
}

func (r *fakerunc) resume() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	if c.Status != paused {
		return errNotPaused
	}
	c.Status, c.PausedFrom = c.PausedFrom, ""
	return r.save(c)
}

func (r *fakerunc) ps() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	var pids []int // runc lists the cgroup's processes: none (null) once stopped
	switch {
	case c.Real:
		pids = c.members()
	case c.Status != stopped:
		pids = []int{c.Pid}
	}
	format, _ := r.inv.Value("format")
	switch format {
	case "json":
		b, err := json.Marshal(pids)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	case "table", "":
		fmt.Println("UID        PID  PPID  C STIME TTY          TIME CMD")
		for _, pid := range pids {
			fmt.Printf("root     %5d     1  0 %s ?        00:00:00 %s\n", pid,
				c.Created.Local().Format("15:04"), strings.Join(c.Args, " "))
		}
		return nil
	}
	return errors.New("invalid format option")
}

// exec starts nothing: it hands out a pid (and writes --pid-file) and exits 0.
func (r *fakerunc) exec() error {
	c, err := r.locked()
	if err == nil {
		switch {
		case c.Status == stopped:
			err = errors.New("cannot exec in a stopped container")
		case c.Status == paused && !r.inv.Bool("ignore-paused"):
			err = errors.New("cannot exec in a paused container (use --ignore-paused to override)")
		}
	}
	if err != nil {
		return &exitError{255, fmt.Errorf("exec failed: %w", err)}
	}
	pid, err := r.nextPid()
	if err != nil {
		return err
	}
	return r.writePidFile(pid)
}

// update records the resources it is given in <root>/<id>/resources.json.
func (r *fakerunc) update() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	if c.Status == stopped {
		return errNotRunning
	}
	var b []byte
	switch res, _ := r.inv.Value("resources"); res {
	case "":
		b, err = json.Marshal(r.inv.Options)
	case "-":
		b, err = io.ReadAll(os.Stdin)
	default:
		b, err = os.ReadFile(res)
	}
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.dir(c.ID), "resources.json"), b, 0o644)
}

func (r *fakerunc) events() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	if c.Status != running && c.Status != paused {
		return fmt.Errorf("container with id %s is not running", c.ID)
	}
	return errors.New("fakerunc: events are not supported")
}
