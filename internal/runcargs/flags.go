package runcargs

import "strings"

// The option tables below are runc's (1.1 to 1.4), checked against `runc CMD --help`.
// They matter for one reason: to know whether the word after an option is its value.
// A spelling is "name" or "name, alias" as urfave/cli v1 declares them.

type flagSpec struct {
	name   string // canonical long name
	isBool bool
}

type flagTable map[string]flagSpec // every spelling (long and alias) -> spec

func table(bools, values []string) flagTable {
	t := flagTable{}
	add := func(spellings string, isBool bool) {
		names := splitNames(spellings)
		for _, n := range names {
			t[n] = flagSpec{name: names[0], isBool: isBool}
		}
	}
	for _, b := range bools {
		add(b, true)
	}
	for _, v := range values {
		add(v, false)
	}
	add("help, h", true) // urfave/cli adds it to every command
	return t
}

func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(n))
	}
	return out
}

var globalFlags = flagTable{
	"debug":          {"debug", true},
	"systemd-cgroup": {"systemd-cgroup", true},
	"help":           {"help", true},
	"h":              {"help", true},
	"version":        {"version", true},
	"v":              {"version", true},
	"log":            {"log", false},
	"log-format":     {"log-format", false},
	"root":           {"root", false},
	"criu":           {"criu", false},
	"rootless":       {"rootless", false},
}

var createValues = []string{"bundle, b", "console-socket", "pidfd-socket", "pid-file", "preserve-fds"}

var commandFlags = map[string]flagTable{
	"create": table([]string{"no-pivot", "no-new-keyring"}, createValues),
	"run": table([]string{"detach, d", "keep", "no-subreaper", "no-pivot", "no-new-keyring"},
		createValues),
	"restore": table(
		[]string{"tcp-established", "ext-unix-sk", "shell-job", "file-locks", "detach, d",
			"no-subreaper", "no-pivot", "auto-dedup", "lazy-pages"},
		[]string{"console-socket", "image-path", "work-path", "manage-cgroups-mode", "bundle, b",
			"pid-file", "empty-ns", "lsm-profile", "lsm-mount-context"}),
	"checkpoint": table(
		[]string{"leave-running", "tcp-established", "ext-unix-sk", "shell-job", "lazy-pages",
			"file-locks", "pre-dump", "auto-dedup"},
		[]string{"image-path", "work-path", "parent-path", "status-fd", "page-server",
			"manage-cgroups-mode", "empty-ns"}),
	"start":  table(nil, nil),
	"state":  table(nil, nil),
	"pause":  table(nil, nil),
	"resume": table(nil, nil),
	"delete": table([]string{"force, f"}, nil),
	"kill":   table([]string{"all, a"}, nil),
	"list":   table([]string{"quiet, q"}, []string{"format, f"}),
	"ps":     table(nil, []string{"format, f"}),
	"exec": table(
		[]string{"tty, t", "detach, d", "no-new-privs", "ignore-paused"},
		[]string{"console-socket", "pidfd-socket", "cwd", "env, e", "user, u", "additional-gids, g",
			"process, p", "pid-file", "process-label", "apparmor", "cap, c", "preserve-fds", "cgroup"}),
	"events": table([]string{"stats"}, []string{"interval"}),
	"spec":   table([]string{"rootless"}, []string{"bundle, b"}),
	"update": table(nil, []string{"resources, r", "blkio-weight", "cpu-period", "cpu-quota",
		"cpu-share", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems",
		"kernel-memory", "kernel-memory-tcp", "memory", "cpu-idle", "memory-reservation",
		"memory-swap", "pids-limit", "l3-cache-schema", "mem-bw-schema"}),
	"features": table(nil, nil),
}

// noReorder lists the commands whose words after the id belong to the command (urfave/cli's
// SkipArgReorder): their options must come before the id.
var noReorder = map[string]bool{"exec": true, "ps": true}
