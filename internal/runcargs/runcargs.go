// Package runcargs reads a runc command line exactly as runc (urfave/cli v1 over Go's flag
// package) reads it: global options, the subcommand, its options before or after the id
// (except for exec and ps), and the positionals. It never rewrites argv: callers that pass
// a command through hand runc the original words.
package runcargs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// ErrSyntax is wrapped by every parse failure: a word runc itself would reject. Callers
// pass such a command line to runc unchanged and let runc say what is wrong.
var ErrSyntax = errors.New("runc command line")

// Global holds runc's global options.
type Global struct {
	Root, Log, LogFormat, Criu, Rootless string
	Debug, SystemdCgroup, Help, Version  bool
}

// Option is one subcommand option as given, under its canonical long name.
type Option struct {
	Name   string
	Value  string // "true"/"false" for booleans
	IsBool bool
}

// Invocation is a parsed runc command line.
type Invocation struct {
	Args       []string // argv without argv[0], unchanged
	GlobalArgs []string // the words before the subcommand
	Global     Global
	Command    string // the subcommand as given; "" when there is none
	Options    []Option
	Positional []string // words after the subcommand that are not options
	ID         string   // the first positional
}

// Parse reads args (argv without argv[0]). An unknown subcommand is not an error: its
// options and positionals are left empty. Errors wrap ErrSyntax.
func Parse(args []string) (*Invocation, error) {
	inv := &Invocation{Args: args}
	opts, rest, err := parseFlags(globalFlags, args)
	if err != nil {
		return inv, fmt.Errorf("%w: global options: %w", ErrSyntax, err)
	}
	inv.GlobalArgs = args[:len(args)-len(rest)]
	for _, o := range opts {
		g := &inv.Global
		switch o.Name {
		case "root":
			g.Root = o.Value
		case "log":
			g.Log = o.Value
		case "log-format":
			g.LogFormat = o.Value
		case "criu":
			g.Criu = o.Value
		case "rootless":
			g.Rootless = o.Value
		case "debug":
			g.Debug = o.Value == "true"
		case "systemd-cgroup":
			g.SystemdCgroup = o.Value == "true"
		case "help":
			g.Help = o.Value == "true"
		case "version":
			g.Version = o.Value == "true"
		}
	}
	if len(rest) == 0 {
		return inv, nil
	}
	inv.Command = rest[0]
	flags, known := commandFlags[inv.Command]
	if !known {
		return inv, nil
	}
	words := rest[1:]
	if !noReorder[inv.Command] {
		words = reorder(flags, words)
	}
	inv.Options, inv.Positional, err = parseFlags(flags, words)
	if err != nil {
		return inv, fmt.Errorf("%w: %s: %w", ErrSyntax, inv.Command, err)
	}
	if len(inv.Positional) > 0 {
		inv.ID = inv.Positional[0]
	}
	return inv, nil
}

// Value returns the value of the last occurrence of a subcommand option (by long name).
func (inv *Invocation) Value(name string) (string, bool) {
	v, ok := "", false
	for _, o := range inv.Options {
		if o.Name == name {
			v, ok = o.Value, true
		}
	}
	return v, ok
}

// Bool reports whether a boolean subcommand option is set to true.
func (inv *Invocation) Bool(name string) bool {
	v, _ := inv.Value(name)
	return v == "true"
}

// parseFlags follows Go's flag package: options until the first non-option word or "--".
func parseFlags(t flagTable, args []string) (opts []Option, rest []string, err error) {
	for len(args) > 0 {
		s := args[0]
		if len(s) < 2 || s[0] != '-' {
			break
		}
		minuses := 1
		if s[1] == '-' {
			minuses = 2
			if len(s) == 2 {
				args = args[1:]
				break
			}
		}
		name := s[minuses:]
		if name == "" || name[0] == '-' || name[0] == '=' {
			return nil, nil, fmt.Errorf("bad flag syntax: %s", s)
		}
		args = args[1:]
		value, hasValue := "", false
		if i := strings.IndexByte(name, '='); i >= 0 {
			name, value, hasValue = name[:i], name[i+1:], true
		}
		spec, ok := t[name]
		if !ok {
			return nil, nil, fmt.Errorf("flag provided but not defined: -%s", name)
		}
		if spec.isBool {
			b := true
			if hasValue {
				if b, err = strconv.ParseBool(value); err != nil {
					return nil, nil, fmt.Errorf("invalid boolean value %q for -%s: %w", value, name, err)
				}
			}
			opts = append(opts, Option{Name: spec.name, Value: strconv.FormatBool(b), IsBool: true})
			continue
		}
		if !hasValue {
			if len(args) == 0 {
				return nil, nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			value, args = args[0], args[1:]
		}
		opts = append(opts, Option{Name: spec.name, Value: value})
	}
	return opts, args, nil
}

// reorder moves the command's own options (and the word after one without "=", unless it is
// another of the command's options) in front of the other words, as urfave/cli v1.22 does
// before parsing a subcommand; "--" ends it.
func reorder(t flagTable, args []string) []string {
	var flags, others []string
	mayBeValue := false
	for i, a := range args {
		switch {
		case mayBeValue && !isOwnFlag(t, a): // "-", "-1", even "--" can be a value
			mayBeValue = false
			flags = append(flags, a)
		case a == "--":
			return append(flags, append(others, args[i:]...)...)
		case isOwnFlag(t, a):
			flags = append(flags, a)
			mayBeValue = !strings.Contains(a, "=")
		default:
			others = append(others, a)
		}
	}
	return append(flags, others...)
}

func isOwnFlag(t flagTable, a string) bool {
	if a == "-" || !strings.HasPrefix(a, "-") {
		return false
	}
	a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
	name, _, _ := strings.Cut(a, "=")
	_, ok := t[name]
	return ok
}

// ParseSignal reads a kill signal as runc does: a number, or a name with or without "SIG"
// in any case. An empty string is runc's default, SIGTERM.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig, ok := signals[name]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

var signals = map[string]syscall.Signal{
	"SIGABRT": syscall.SIGABRT, "SIGALRM": syscall.SIGALRM, "SIGBUS": syscall.SIGBUS,
	"SIGCHLD": syscall.SIGCHLD, "SIGCLD": syscall.SIGCLD, "SIGCONT": syscall.SIGCONT,
	"SIGFPE": syscall.SIGFPE, "SIGHUP": syscall.SIGHUP, "SIGILL": syscall.SIGILL,
	"SIGINT": syscall.SIGINT, "SIGIO": syscall.SIGIO, "SIGIOT": syscall.SIGIOT,
	"SIGKILL": syscall.SIGKILL, "SIGPIPE": syscall.SIGPIPE, "SIGPOLL": syscall.SIGPOLL,
	"SIGPROF": syscall.SIGPROF, "SIGPWR": syscall.SIGPWR, "SIGQUIT": syscall.SIGQUIT,
	"SIGSEGV": syscall.SIGSEGV, "SIGSTKFLT": syscall.SIGSTKFLT, "SIGSTOP": syscall.SIGSTOP,
	"SIGSYS": syscall.SIGSYS, "SIGTERM": syscall.SIGTERM, "SIGTRAP": syscall.SIGTRAP,
	"SIGTSTP": syscall.SIGTSTP, "SIGTTIN": syscall.SIGTTIN, "SIGTTOU": syscall.SIGTTOU,
	"SIGURG": syscall.SIGURG, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGVTALRM": syscall.SIGVTALRM, "SIGWINCH": syscall.SIGWINCH, "SIGXCPU": syscall.SIGXCPU,
	"SIGXFSZ": syscall.SIGXFSZ,
}
