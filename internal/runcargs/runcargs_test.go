package runcargs

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		argv string
		want Invocation
	}{
		{
			name: "containerd shim create",
			argv: "--root /run/containerd/runc/default --log /b/log.json --log-format json create --bundle /b --pid-file /b/init.pid c1",
			want: Invocation{
				GlobalArgs: words("--root /run/containerd/runc/default --log /b/log.json --log-format json"),
				Global:     Global{Root: "/run/containerd/runc/default", Log: "/b/log.json", LogFormat: "json"},
				Command:    "create",
				Options:    []Option{{Name: "bundle", Value: "/b"}, {Name: "pid-file", Value: "/b/init.pid"}},
				Positional: []string{"c1"}, ID: "c1",
			},
		},
		{
			name: "containerd with systemd cgroup and console socket",
			argv: "--root /r --log /b/log.json --log-format json --systemd-cgroup create --bundle /b --pid-file /b/init.pid --console-socket /tmp/pty.sock --no-pivot --no-new-keyring c1",
			want: Invocation{
				GlobalArgs: words("--root /r --log /b/log.json --log-format json --systemd-cgroup"),
				Global:     Global{Root: "/r", Log: "/b/log.json", LogFormat: "json", SystemdCgroup: true},
				Command:    "create",
				Options: []Option{{Name: "bundle", Value: "/b"}, {Name: "pid-file", Value: "/b/init.pid"},
					{Name: "console-socket", Value: "/tmp/pty.sock"}, {Name: "no-pivot", Value: "true", IsBool: true},
					{Name: "no-new-keyring", Value: "true", IsBool: true}},
				Positional: []string{"c1"}, ID: "c1",
			},
		},
		{
			name: "conmon create with --root=",
			argv: "--systemd-cgroup --root=/run/runc create --bundle /b --pid-file /p c1",
			want: Invocation{
				GlobalArgs: words("--systemd-cgroup --root=/run/runc"),
				Global:     Global{Root: "/run/runc", SystemdCgroup: true},
				Command:    "create",
				Options:    []Option{{Name: "bundle", Value: "/b"}, {Name: "pid-file", Value: "/p"}},
				Positional: []string{"c1"}, ID: "c1",
			},
		},
		{
			name: "single dash globals and -b=",
			argv: "-root /r -log-format=json -debug=false create -b=/foo/=bar c1",
			want: Invocation{
				GlobalArgs: words("-root /r -log-format=json -debug=false"),
				Global:     Global{Root: "/r", LogFormat: "json"},
				Command:    "create",
				Options:    []Option{{Name: "bundle", Value: "/foo/=bar"}},
				Positional: []string{"c1"}, ID: "c1",
			},
		},
		{
			name: "bundle named create",
			argv: "create -b create create",
			want: Invocation{Command: "create", Options: []Option{{Name: "bundle", Value: "create"}},
				Positional: []string{"create"}, ID: "create"},
		},
		{
			name: "options after the id",
			argv: "delete c1 --force",
			want: Invocation{Command: "delete", Options: []Option{{Name: "force", Value: "true", IsBool: true}},
				Positional: []string{"c1"}, ID: "c1"},
		},
		{
			name: "crio kill with signal name",
			argv: "--root=/r kill c1 KILL",
			want: Invocation{GlobalArgs: []string{"--root=/r"}, Global: Global{Root: "/r"}, Command: "kill",
				Positional: []string{"c1", "KILL"}, ID: "c1"},
		},
		{
			name: "kill --all after signal",
			argv: "kill c1 9 --all",
			want: Invocation{Command: "kill", Options: []Option{{Name: "all", Value: "true", IsBool: true}},
				Positional: []string{"c1", "9"}, ID: "c1"},
		},
		{
			name: "exec words after the id belong to the command",
			argv: "exec --detach --pid-file /p c1 sh -c --force",
			want: Invocation{Command: "exec", Options: []Option{{Name: "detach", Value: "true", IsBool: true},
				{Name: "pid-file", Value: "/p"}}, Positional: words("c1 sh -c --force"), ID: "c1"},
		},
		{
			name: "run -d",
			argv: "run -d --bundle /b c1",
			want: Invocation{Command: "run", Options: []Option{{Name: "detach", Value: "true", IsBool: true},
				{Name: "bundle", Value: "/b"}}, Positional: []string{"c1"}, ID: "c1"},
		},
		{
			name: "containerd update reads resources from stdin",
			argv: "--root /r update --resources - c1",
			want: Invocation{GlobalArgs: words("--root /r"), Global: Global{Root: "/r"}, Command: "update",
				Options: []Option{{Name: "resources", Value: "-"}}, Positional: []string{"c1"}, ID: "c1"},
		},
		{
			name: "option values that look like options",
			argv: "create --preserve-fds -1 --pid-file -x c1",
			want: Invocation{Command: "create", Options: []Option{{Name: "preserve-fds", Value: "-1"},
				{Name: "pid-file", Value: "-x"}}, Positional: []string{"c1"}, ID: "c1"},
		},
		{
			name: "double dash ends options",
			argv: "delete -- --force",
			want: Invocation{Command: "delete", Positional: []string{"--force"}, ID: "--force"},
		},
		{
			name: "unknown subcommand",
			argv: "--root /r frobnicate --x y",
			want: Invocation{GlobalArgs: words("--root /r"), Global: Global{Root: "/r"}, Command: "frobnicate"},
		},
		{
			name: "version",
			argv: "--version",
			want: Invocation{GlobalArgs: []string{"--version"}, Global: Global{Version: true}},
		},
		{
			name: "value may start with a dash",
			argv: "--log -weird state c1",
			want: Invocation{GlobalArgs: words("--log -weird"), Global: Global{Log: "-weird"}, Command: "state",
				Positional: []string{"c1"}, ID: "c1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := words(tt.argv)
			got, err := Parse(args)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.argv, err)
			}
			tt.want.Args = args
			if diff := cmp.Diff(&tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.argv, diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ argv, msg string }{
		{"--bogus state c1", "flag provided but not defined: -bogus"},
		{"--root", "flag needs an argument: -root"},
		{"--debug=maybe list", `invalid boolean value "maybe" for -debug`},
		{"restore --lsm-mount-context", "flag needs an argument: -lsm-mount-context"},
		{"delete --bogus c1", "flag provided but not defined: -bogus"},
		{"---x list", "bad flag syntax: ---x"},
	}
	for _, tt := range tests {
		_, err := Parse(words(tt.argv))
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax with %q", tt.argv, err, tt.msg)
		}
	}
	// As in runc, an unknown option after the id is taken as a positional, not refused.
	inv, err := Parse(words("delete c1 --bogus"))
	if err != nil || !cmp.Equal(inv.Positional, words("c1 --bogus")) {
		t.Errorf("delete c1 --bogus: %v %q", err, inv.Positional)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"": syscall.SIGTERM, "9": syscall.SIGKILL, "15": syscall.SIGTERM, "KILL": syscall.SIGKILL,
		"SIGKILL": syscall.SIGKILL, "term": syscall.SIGTERM, "SigTerm": syscall.SIGTERM, "0": 0,
		"HUP": syscall.SIGHUP,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseSignal("SIGNOPE"); err == nil {
		t.Error("ParseSignal(SIGNOPE) succeeded")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"--root /r create --bundle /b c1", "kill c1 9 --all", "exec -t c1 sh", "-- x", "--log= -x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		inv, err := Parse(args)
		if inv == nil {
			t.Fatal("nil invocation")
		}
		if err == nil && len(inv.GlobalArgs) > len(args) {
			t.Fatalf("global args longer than argv")
		}
		if err == nil && inv.ID != "" && inv.ID != inv.Positional[0] {
			t.Fatal("id is not the first positional")
		}
	})
}

func words(s string) []string { return strings.Fields(s) }
