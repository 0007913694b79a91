package fakerunc

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
)

// version is `runc --version`'s five lines, for a runc that calls itself 1.1.5-fake.
const version = `runc version 1.1.5-fake
commit: fakerunc
spec: 1.0.2-dev
go: go1.26
libseccomp: 2.5.4
`

// globalHelp is runc 1.1.5's `runc --help`, with the fake's version.
const globalHelp = `NAME:
   runc - Open Container Initiative runtime

runc is a command line client for running applications packaged according to
the Open Container Initiative (OCI) format and is a compliant implementation of the
Open Container Initiative specification.

runc integrates well with existing process supervisors to provide a production
container runtime environment for applications. It can be used with your
existing process monitoring tools and the container will be spawned as a
direct child of the process supervisor.

Containers are configured using bundles. A bundle for a container is a directory
that includes a specification file named "config.json" and a root filesystem.
The root filesystem contains the contents of the container.

To start a new instance of a container:

    # runc run [ -b bundle ] <container-id>

Where "<container-id>" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host. Providing the bundle directory using "-b" is optional. The default
value for "bundle" is the current directory.

USAGE:
   runc [global options] command [command options] [arguments...]

VERSION:
   1.1.5-fake
commit: fakerunc
spec: 1.0.2-dev
go: go1.26
libseccomp: 2.5.4

COMMANDS:
   checkpoint  checkpoint a running container
   create      create a container
   delete      delete any resources held by the container often used with detached container
   events      display container events such as OOM notifications, cpu, memory, and IO usage statistics
   exec        execute new process inside the container
   kill        kill sends the specified signal (default: SIGTERM) to the container's init process
   list        lists containers started by runc with the given root
   pause       pause suspends all processes inside the container
   ps          ps displays the processes running inside a container
   restore     restore a container from a previous checkpoint
   resume      resumes all processes that have been previously paused
   run         create and run a container
   spec        create a new specification file
   start       executes the user defined process in a created container
   state       output the state of a container
   update      update container resource constraints
   features    show the enabled features
   help, h     Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --debug             enable debug logging
   --log value         set the log file to write runc logs to (default is '/dev/stderr')
   --log-format value  set the log format ('text' (default), or 'json') (default: "text")
   --root value        root directory for storage of container state (this should be located in tmpfs) (default: "/run/runc")
   --criu value        path to the criu binary used for checkpoint and restore (default: "criu")
   --systemd-cgroup    enable systemd cgroup support, expects cgroupsPath to be of form "slice:prefix:name" for e.g. "system.slice:runc:434234"
   --rootless value    ignore cgroup permission errors ('true', 'false', or 'auto') (default: "auto")
   --help, -h          show help
   --version, -v       print the version
`

// features prints a short `runc features` document of runc's shape (4-space indent).
func (r *fakerunc) features() error {
	type enabled struct {
		Enabled bool `json:"enabled"`
	}
	f := struct {
		OCIVersionMin string            `json:"ociVersionMin"`
		OCIVersionMax string            `json:"ociVersionMax"`
		Hooks         []string          `json:"hooks"`
		MountOptions  []string          `json:"mountOptions"`
		Linux         any               `json:"linux"`
		Annotations   map[string]string `json:"annotations"`
	}{
		"1.0.0", "1.0.2-dev",
		[]string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		[]string{"bind", "nodev", "noexec", "nosuid", "rbind", "ro", "rw"},
		struct {
			Namespaces   []string        `json:"namespaces"`
			Capabilities []string        `json:"capabilities"`
			Cgroup       map[string]bool `json:"cgroup"`
			Seccomp      enabled         `json:"seccomp"`
			Apparmor     enabled         `json:"apparmor"`
			Selinux      enabled         `json:"selinux"`
		}{
			[]string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"},
			[]string{"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"},
			map[string]bool{"v1": true, "v2": true, "systemd": true, "systemdUser": true},
			enabled{false}, enabled{false}, enabled{false},
		},
		map[string]string{
			"org.opencontainers.runc.checkpoint.enabled": "true",
			"org.opencontainers.runc.commit":             "fakerunc",
			"org.opencontainers.runc.version":            "1.1.5-fake",
		},
	}
	b, err := json.MarshalIndent(f, "", "    ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// spec writes a small config.json of runc spec's shape (tab indent, no final newline)
// into --bundle or the current directory.
func (r *fakerunc) spec() error {
	name := filepath.Join(r.bundleArg(), "config.json")
	if _, err := os.Stat(name); err == nil {
		return errors.New("File config.json exists. Remove it first")
	}
	type id struct {
		UID int `json:"uid"`
		GID int `json:"gid"`
	}
	type mount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type"`
		Source      string   `json:"source"`
		Options     []string `json:"options,omitempty"`
	}
	type ns struct {
		Type string `json:"type"`
	}
	s := struct {
		OCIVersion string `json:"ociVersion"`
		Process    struct {
			Terminal bool     `json:"terminal"`
			User     id       `json:"user"`
			Args     []string `json:"args"`
			Env      []string `json:"env"`
			Cwd      string   `json:"cwd"`
		} `json:"process"`
		Root struct {
			Path     string `json:"path"`
			Readonly bool   `json:"readonly"`
		} `json:"root"`
		Hostname string  `json:"hostname"`
		Mounts   []mount `json:"mounts"`
		Linux    struct {
			Namespaces []ns `json:"namespaces"`
		} `json:"linux"`
	}{OCIVersion: "1.0.2-dev", Hostname: "runc"}
	s.Process.Terminal = true
	s.Process.Args = []string{"sh"}
	s.Process.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"}
	s.Process.Cwd = "/"
	s.Root.Path, s.Root.Readonly = "rootfs", true
	s.Mounts = []mount{
		{"/proc", "proc", "proc", nil},
		{"/dev", "tmpfs", "tmpfs", []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	}
	for _, t := range []string{"pid", "network", "ipc", "uts", "mount"} {
		s.Linux.Namespaces = append(s.Linux.Namespaces, ns{t})
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(name, b, 0o666)
}
