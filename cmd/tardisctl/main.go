// Command tardisctl shows and manages what tardis keeps on a node: the state files of
// opted-in containers and the checkpoints under the checkpoint root (see README.md).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/fsys"

	"github.com/tardis-runtime/tardis/internal/config"
	"github.com/tardis-runtime/tardis/internal/lock"
	"github.com/tardis-runtime/tardis/internal/node"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// Exit codes, documented in the usage text.
const (
	exitOK       = 0
	exitNotValid = 1 // validation failed, or the thing asked about does not exist
	exitUsage    = 2
	exitError    = 3
)

const usageText = `Usage: tardisctl COMMAND [options]

See and manage what tardis keeps on this node. Reads tardis's configuration
(/etc/tardis/config.toml, or $TARDIS_CONFIG, and the TARDIS_* variables).

Commands:
  list          opted-in containers on this node (from tardis's state files)
  checkpoints   every checkpoint, current and set aside
  inspect       one checkpoint: manifest, process tree, CRIU statistics
  validate      check a checkpoint as a restore would, on this node
  rm            remove a key's checkpoint (under the key's lock)
  gc            remove old, set-aside, orphaned and partial checkpoints
  help          help on a command

Run 'tardisctl COMMAND --help' for a command's options.

Exit codes:
  0  ok
  1  validation failed, or not found
  2  usage error (unknown command or flag, bad argument)
  3  other error (unreadable configuration, state or checkpoint, lock timeout)
`

// command is one subcommand.
type command struct {
	name, args, summary string
	flags               func(*flag.FlagSet) any // registers the command's flags
	run                 func(c *cli, opts any, args []string) error
	minArgs, maxArgs    int
}

var commands []*command

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// cli is one invocation's world; tests build their own.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	cfg            config.Config
	node           func(*cli) store.Node
	signingKey     []byte
}

// codeError carries an exit code with an error.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &codeError{exitUsage, fmt.Errorf(format, a...)}
}

func notFoundf(format string, a ...any) error {
	return &codeError{exitNotValid, fmt.Errorf(format, a...)}
}

// silent is returned when the command has already said what there is to say (a failed
// validation prints its verdict) and only the exit code is left.
type silent struct{ code int }

func (s silent) Error() string { return fmt.Sprintf("exit %d", s.code) }

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now, node: thisNode}
	os.Exit(c.main(os.Args[1:]))
}

func (c *cli) main(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageText)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	case "help":
		if len(rest) == 0 {
			fmt.Fprint(c.stdout, usageText)
			return exitOK
		}
		cmd := findCommand(rest[0])
		if cmd == nil {
			fmt.Fprintf(c.stderr, "tardisctl: unknown command %q\n\n%s", rest[0], usageText)
			return exitUsage
		}
		fs, _ := cmd.flagSet(c.stdout)
		fs.Usage()
		return exitOK
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(c.stderr, "tardisctl: unknown command %q\n\n%s", name, usageText)
		return exitUsage
	}
	// flag prints its error and the usage while parsing: keep that for stderr, and give
	// --help its usage on stdout.
	var parseOut strings.Builder
	fs, opts := cmd.flagSet(&parseOut)
	pos, err := parseInterspersed(fs, rest)
	fs.SetOutput(c.stderr)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stdout)
		fs.Usage()
		return exitOK
	}
	if err != nil {
		fmt.Fprint(c.stderr, parseOut.String())
		return exitUsage
	}
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		fmt.Fprintf(c.stderr, "tardisctl %s: want %s\n", cmd.name, argCount(cmd))
		fs.Usage()
		return exitUsage
	}
	path, explicit := config.Path(c.getenv)
	cfg, err := config.Load(fsys.OS{}, path, explicit, c.getenv)
	if err != nil {
		fmt.Fprintf(c.stderr, "tardisctl: %v\n", err)
		return exitError
	}
	c.cfg = cfg
	if cfg.SigningKey != "" {
		if c.signingKey, err = store.ReadSigningKey(cfg.SigningKey); err != nil {
			fmt.Fprintf(c.stderr, "tardisctl: %v\n", err)
			return exitError
		}
	}
	err = cmd.run(c, opts, pos)
	var s silent
	var ce *codeError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &s):
		return s.code
	case errors.As(err, &ce):
		fmt.Fprintf(c.stderr, "tardisctl %s: %v\n", cmd.name, err)
		if ce.code == exitUsage {
			fs.Usage()
		}
		return ce.code
	}
	fmt.Fprintf(c.stderr, "tardisctl %s: %v\n", cmd.name, err)
	return exitError
}

func argCount(cmd *command) string {
	switch {
	case cmd.maxArgs == 0:
		return "no arguments"
	case cmd.minArgs == cmd.maxArgs:
		return cmd.args
	}
	return "at most " + cmd.args
}

func (cmd *command) flagSet(out io.Writer) (*flag.FlagSet, any) {
	fs := flag.NewFlagSet("tardisctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(out)
	var opts any
	if cmd.flags != nil {
		opts = cmd.flags(fs)
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: tardisctl %s [options]", cmd.name)
		if cmd.args != "" {
			fmt.Fprintf(w, " %s", cmd.args)
		}
		fmt.Fprintf(w, "\n\n%s\n", cmd.summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(w, "\nOptions:\n")
			fs.VisitAll(func(f *flag.Flag) {
				name, usage := flag.UnquoteUsage(f)
				fmt.Fprintf(w, "  --%s", f.Name)
				if name != "" {
					fmt.Fprintf(w, " %s", name)
				}
				fmt.Fprintf(w, "\n      %s", usage)
				if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "-1" {
					fmt.Fprintf(w, " (default %s)", f.DefValue)
				}
				fmt.Fprintln(w)
			})
		}
		fmt.Fprintf(w, "\nExit codes: 0 ok, 1 validation failed or not found, 2 usage, 3 other error.\n")
	}
	return fs, opts
}

// parseInterspersed parses flags wherever they are among the arguments ("inspect web
// --json" as well as "inspect --json web"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag or after "--"; tell the two apart.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// states is the state file store of the configuration.
func (c *cli) states() state.Store {
	return state.Store{FS: fsys.OS{}, Dir: c.cfg.StateDir}
}

// store is the checkpoint store of the configuration (signing as tardis does, so that
// validate checks signatures as a restore would).
func (c *cli) store() store.Store { return store.New(c.cfg.CheckpointRoot, c.signingKey) }

func (c *cli) paths() node.Paths {
	return node.Paths{StateDir: c.cfg.StateDir, WorkDir: c.cfg.WorkDir}
}

// lockKey takes the per-key lock tardis takes, so that nothing here races a checkpoint or
// a restore of the key.
func (c *cli) lockKey(r store.Ref) (*lock.Lock, error) {
	return c.paths().Lock(r, c.cfg.Timeouts.Lock.Duration)
}

// parseRef reads a [TENANT/]KEY argument; without a tenant, the node's own (the
// configuration's tenant, that of containers outside Kubernetes). Both become paths, so
// both must be safe names.
func (c *cli) parseRef(arg string) (store.Ref, error) {
	if strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../") || strings.Count(arg, "/") > 1 {
		return store.Ref{}, usageErrorf("%s: a checkpoint directory must be given as an absolute path", arg)
	}
	r := store.Ref{Tenant: c.cfg.Tenant, Key: arg}
	if t, k, ok := strings.Cut(arg, "/"); ok {
		r = store.Ref{Tenant: t, Key: k}
	}
	if err := r.Check(); err != nil {
		return r, usageErrorf("%s: %v", arg, err)
	}
	return r, nil
}

// refs lists every key of every tenant, warning about what in the root is not tardis's.
func (c *cli) refs() ([]store.Ref, error) {
	refs, err := c.store().Refs()
	if err != nil && !errors.Is(err, store.ErrUnsafe) {
		return refs, err
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "tardisctl: warning: %v\n", err)
	}
	return refs, nil
}

// target is what a [TENANT/]KEY|DIR argument names.
type target struct {
	ref   store.Ref
	entry store.Entry // Dir, Name, Kind ("" for a directory outside the store)
}

// resolveTarget turns a [TENANT/]KEY (its current checkpoint) or an absolute checkpoint
// DIR into a target. A KEY without a current checkpoint is not found (exit 1).
func (c *cli) resolveTarget(arg string) (*target, error) {
	if filepath.IsAbs(arg) {
		return c.resolveDir(arg)
	}
	r, err := c.parseRef(arg)
	if err != nil {
		return nil, err
	}
	cur, err := c.store().Current(r)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, notFoundf("key %s has no current checkpoint", r)
	}
	return &target{ref: r, entry: store.Entry{Ref: r, Name: cur.Name, Dir: cur.Dir, Kind: store.KindCurrent,
		Stamp: store.StampTime(cur.Name)}}, nil
}

func (c *cli) resolveDir(arg string) (*target, error) {
	dir := filepath.Clean(arg)
	st, err := os.Stat(dir)
	if err == nil {
		// DIR may be a key's current link, or reach the store through links.
		if real, rerr := filepath.EvalSymlinks(dir); rerr == nil {
			dir = real
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, notFoundf("%s: no such directory", dir)
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, usageErrorf("%s is not a directory", dir)
	}
	t := &target{entry: store.Entry{Name: filepath.Base(dir), Dir: dir, Stamp: store.StampTime(filepath.Base(dir))}}
	// Inside the store, the tenant and key are the directory's parents, as a restore sees them.
	keyDir := filepath.Dir(dir)
	tenantDir := filepath.Dir(keyDir)
	root := filepath.Clean(c.cfg.CheckpointRoot)
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	r := store.Ref{Tenant: filepath.Base(tenantDir), Key: filepath.Base(keyDir)}
	if filepath.Dir(tenantDir) == root && r.Check() == nil {
		t.ref, t.entry.Ref = r, r
		if es, _ := c.store().Entries(r); es != nil {
			for _, e := range es {
				if e.Name == t.entry.Name {
					t.entry = e
				}
			}
		}
		return t, nil
	}
	// Elsewhere (a copy), the manifest names the tenant and key.
	if m, err := store.ReadManifest(dir); err == nil {
		t.ref = store.Ref{Tenant: m.Tenant, Key: m.Key}
		t.entry.Ref = t.ref
	}
	return t, nil
}
