package bundle

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tardis-runtime/tardis/internal/fsys"
)

func TestAddMountKeepsUnknownFields(t *testing.T) {
	dir := t.TempDir()
	raw := `{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","noNewPrivileges":true},` +
		`"mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"linux":{"namespaces":[{"type":"pid"}]}}`
	if err := os.WriteFile(filepath.Join(dir, ConfigName), []byte(raw), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := Load(fsys.OS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !b.AddMount(Mount{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind", "rw"}}) {
		t.Fatal("not added")
	}
	if b.AddMount(Mount{Destination: "/data/", Type: "bind", Source: "/other"}) {
		t.Fatal("added twice")
	}
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, ConfigName))
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["linux"] == nil || m["process"].(map[string]any)["noNewPrivileges"] != true || len(m["mounts"].([]any)) != 2 {
		t.Fatalf("config.json lost fields: %s", out)
	}
	if st, _ := os.Stat(filepath.Join(dir, ConfigName)); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	if b.Rootfs() != filepath.Join(dir, "rootfs") {
		t.Errorf("rootfs %s", b.Rootfs())
	}
}

func TestResolveBindSources(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "tini-static")
	os.WriteFile(target, []byte("x"), 0o755)
	link := filepath.Join(dir, "docker-init")
	os.Symlink("tini-static", link)
	raw := `{"mounts":[{"destination":"/sbin/docker-init","type":"bind","source":"` + link + `","options":["rbind","ro"],"x-extra":1},` +
		`{"destination":"/proc","type":"proc","source":"proc"},{"destination":"/etc/hosts","source":"` + target + `","options":["bind"]}]}`
	os.WriteFile(filepath.Join(dir, ConfigName), []byte(raw), 0o644)
	b, err := Load(fsys.OS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := b.ResolveBindSources()
	if err != nil || len(changed) != 1 || !strings.Contains(changed[0], "/sbin/docker-init: "+link+" -> "+target) {
		t.Fatalf("changed %v, %v", changed, err)
	}
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, ConfigName))
	if !strings.Contains(string(out), `"source": "`+target+`"`) || !strings.Contains(string(out), `"x-extra": 1`) {
		t.Fatalf("config.json: %s", out)
	}
}
