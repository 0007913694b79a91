// Package fakerunc is a fake runc for scenario tests: it speaks runc 1.1.5's command line,
// keeps container state on disk under --root, runs no process (unless
// FAKERUNC_REAL_PROCESS=1: see process.go), writes fake CRIU images on checkpoint, logs
// every call to $FAKERUNC_CALLS and injects faults from $FAKERUNC_FAULTS.
// Its outputs, error texts and exit codes are runc 1.1.5's, checked against the real one.
package fakerunc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/runcargs"
)

const defaultRoot = "/run/runc"

// Main runs the fake runc over os.Args (argv[0] is ignored) and returns its exit status.
func Main() int {
	return run(os.Args[1:])
}

// exitError is a failure with an exit status other than 1 (runc exec fails with 255).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a command line runc rejects: it prints "Incorrect Usage" and the command's
// help on stdout, then fails with msg.
type usageError struct {
	command string
	detail  bool // "Incorrect Usage: msg" (a flag error) rather than "Incorrect Usage."
	msg     string
}

func (e *usageError) Error() string { return e.msg }

// fakerunc is one invocation.
type fakerunc struct {
	inv   *runcargs.Invocation
	root  string
	log   logger
	fault fault
	lockf *os.File // the root's lock, once taken
}

func run(args []string) int {
	logCall(args)
	inv, err := runcargs.Parse(args)
	if err != nil && inv.Command == "" {
		// runc has not set its logger up yet: the error goes to stderr as text.
		fmt.Printf("Incorrect Usage. %s\n\n%s", innerError(err), globalHelp)
		logger{}.error(innerError(err))
		return 1
	}
	r := &fakerunc{inv: inv, root: inv.Global.Root, log: newLogger(inv.Global)}
	if r.root == "" {
		r.root = defaultRoot
	}
	if err != nil {
		return r.fail(&usageError{command: inv.Command, detail: true, msg: innerError(err)})
	}
	switch {
	case inv.Global.Version:
		fmt.Print(version)
		return 0
	case inv.Command == "" || inv.Global.Help:
		fmt.Print(globalHelp)
		return 0
	case inv.Command == "help" || inv.Command == "h":
		topic := "" // runcargs reads no positionals for commands it does not know
		if rest := inv.Args[len(inv.GlobalArgs)+1:]; len(rest) > 0 {
			topic = rest[0]
		}
		if h, ok := commands[topic]; ok {
			fmt.Print(h.help(topic))
		} else {
			fmt.Print(globalHelp)
		}
		return 0
	}
	cmd, ok := commands[inv.Command]
	if !ok {
		r.log.error(fmt.Sprintf("No help topic for '%s'\n", inv.Command))
		return 3
	}
	if inv.Bool("help") {
		fmt.Print(cmd.help(inv.Command))
		return 0
	}
	if err := cmd.checkArgs(inv.Command, len(inv.Positional)); err != nil {
		return r.fail(err)
	}
	if cmd.needsRoot {
		if err := os.MkdirAll(r.root, 0o700); err != nil {
			return r.fail(err)
		}
	}
	if r.fault, err = r.findFault(); err != nil {
		return r.fail(err)
	}
	switch r.fault.action {
	case "exit":
		r.log.error(r.fault.msg)
		return r.fault.code
	case "hang":
		hang()
	}
	err = cmd.run(r)
	r.unlock()
	if err != nil {
		return r.fail(err)
	}
	switch r.fault.action {
	case "hang-after":
		hang()
	case "die":
		r.die()
	}
	return 0
}

// fail reports err as runc does and returns the exit status.
func (r *fakerunc) fail(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		sep := "."
		if ue.detail {
			sep = ": " + ue.msg
		}
		h := globalHelp
		if c, ok := commands[ue.command]; ok {
			h = c.help(ue.command)
		}
		fmt.Printf("Incorrect Usage%s\n\n%s", sep, h)
	}
	r.log.error(err.Error())
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// innerError strips runcargs' own wrapping, leaving the words of Go's flag package.
func innerError(err error) string {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := u.Unwrap(); len(errs) > 0 {
			return errs[len(errs)-1].Error()
		}
	}
	return err.Error()
}

func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

// logger writes error lines as runc's logrus does: to --log (text or json) and then the
// bare message on stderr, or as a text line on stderr when there is no --log.
type logger struct {
	file, format string
}

func newLogger(g runcargs.Global) logger {
	l := logger{file: g.Log, format: g.LogFormat}
	if l.file == "/dev/stderr" {
		l.file = ""
	}
	if l.file != "" { // runc opens (and so creates) its log file on every call
		if f, err := os.OpenFile(l.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			f.Close()
		} else {
			l.file = ""
		}
	}
	return l
}

func (l logger) error(msg string) {
	now := time.Now().Format(time.RFC3339)
	var line string
	if l.format == "json" && l.file != "" {
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": now})
		line = string(b) + "\n"
	} else {
		line = fmt.Sprintf("time=%q level=error msg=%s\n", now, logfmtValue(msg))
	}
	if l.file == "" {
		os.Stderr.WriteString(line)
		return
	}
	if f, err := os.OpenFile(l.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		f.WriteString(line)
		f.Close()
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	os.Stderr.WriteString(msg)
}

// logfmtValue quotes a value as logrus's text formatter does: only when it holds a
// character other than letters, digits and -._/@^+.
func logfmtValue(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._/@^+", c)) {
			return strconv.Quote(s)
		}
	}
	return s
}
