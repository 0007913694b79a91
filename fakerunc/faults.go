package fakerunc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fault is an injected failure, chosen by $FAKERUNC_FAULTS or <root>/faults.
type fault struct {
	action string // "", exit, hang, hang-after, die, damage
	code   int    // exit
	msg    string // exit
	kind   string // damage
}

// findFault returns the first fault entry for this subcommand. Entries are
// "<subcommand>:<action>[@N]", separated by ";" in $FAKERUNC_FAULTS and by lines in
// <root>/faults (read after the variable). An entry with @N applies to the first N calls
// of the subcommand, counted in <root>/fakerunc-count-<subcommand> from the first call that
// met a counted entry; once spent, the search goes on to the next entry.
func (r *fakerunc) findFault() (fault, error) {
	entries := strings.Split(os.Getenv("FAKERUNC_FAULTS"), ";")
	if b, err := os.ReadFile(filepath.Join(r.root, "faults")); err == nil {
		entries = append(entries, strings.Split(string(b), "\n")...)
	}
	call := 0 // this call's number, counted only when an entry asks for it
	for _, e := range entries {
		cmd, action, ok := strings.Cut(strings.TrimSpace(e), ":")
		if !ok || cmd != r.inv.Command {
			continue
		}
		if i := strings.LastIndexByte(action, '@'); i >= 0 {
			limit, err := strconv.Atoi(action[i+1:])
			if err == nil {
				if call == 0 {
					if call, err = r.countCall(); err != nil {
						return fault{}, err
					}
				}
				if call > limit {
					continue
				}
				action = action[:i]
			}
		}
		return parseFault(action)
	}
	return fault{}, nil
}

func parseFault(s string) (fault, error) {
	name, arg, _ := strings.Cut(s, "=")
	f := fault{action: name}
	switch name {
	case "hang", "hang-after", "die":
		if arg == "" {
			return f, nil
		}
	case "damage":
		if f.kind = arg; arg != "" {
			return f, nil
		}
	case "exit":
		code, msg, hasMsg := strings.Cut(arg, ",msg=")
		var err error
		if f.code, err = strconv.Atoi(code); err == nil {
			f.msg = "injected fault"
			if hasMsg {
				f.msg = msg
			}
			return f, nil
		}
	}
	return f, fmt.Errorf("fakerunc: bad fault %q", s)
}

// countCall adds one to this subcommand's call counter and returns the new count.
func (r *fakerunc) countCall() (int, error) {
	if err := os.MkdirAll(r.root, 0o700); err != nil {
		return 0, err
	}
	name := filepath.Join(r.root, "fakerunc-count-"+r.inv.Command)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, err
	}
	n, err := readInt(name)
	if err != nil {
		n = 0 // an empty file: not written yet
	}
	n++
	if _, err := f.WriteAt([]byte(strconv.Itoa(n)), 0); err != nil {
		return 0, err
	}
	return n, nil
}

// dieIf kills the process where a "die" fault cuts a command short.
func (r *fakerunc) dieIf() {
	if r.fault.action == "die" {
		r.die()
	}
}

func (r *fakerunc) die() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	hang()
}
