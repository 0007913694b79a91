package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func kinds(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Kind+" "+e.Name[:min(len(e.Name), 5)])
	}
	return out
}

func TestEntriesAndRemove(t *testing.T) {
	s := newStore(t)
	if es, err := s.Entries(Ref{Tenant: "default", Key: "none"}); es != nil || err != nil {
		t.Fatalf("Entries of a missing key = %v, %v", es, err)
	}
	first := publish(t, s, k)
	if _, err := s.SetAside(first, "restore failed: boom\nmore"); err != nil {
		t.Fatal(err)
	}
	held := publish(t, s, k)
	if _, err := s.Claim(k, "node-b"); err != nil {
		t.Fatal(err)
	}
	cur := publish(t, s, k)
	orphan := filepath.Join(keyDir(t, s, k), "ckpt-20200101T000000.000000000Z-00000000")
	tmp := filepath.Join(keyDir(t, s, k), ".tmp-20200101T000000.000000000Z-11111111")
	for _, d := range []string{orphan, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(keyDir(t, s, k), "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	es, err := s.Entries(k)
	if err != nil {
		t.Fatal(err)
	}
	got := kinds(es)
	want := []string{"current ckpt-", "claimed ckpt-", "aside aside", "orphan ckpt-", "partial .tmp-"}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entries %v, want %v", got, want)
		}
	}
	if es[0].Name != cur.Name || es[2].SetAside.IsZero() {
		t.Errorf("current %s (want %s), aside set at %v", es[0].Name, cur.Name, es[2].SetAside)
	}
	if es[1].Name != held.Name || es[1].ClaimOwner != "node-b" || es[1].Claimed.IsZero() {
		t.Errorf("claimed entry %+v, want %s held by node-b", es[1], held.Name)
	}
	if err := s.RemoveEntry(es[1]); err == nil || !strings.Contains(err.Error(), "claimed by node-b") {
		t.Errorf("RemoveEntry of a claimed checkpoint = %v", err)
	}
	if want := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC); !es[3].Stamp.Equal(want) || !es[4].Stamp.Equal(want) {
		t.Errorf("stamps %v %v, want %v", es[3].Stamp, es[4].Stamp, want)
	}
	if r, err := ReadReason(es[2].Dir); err != nil || r != "restore failed: boom\nmore" {
		t.Errorf("reason %q, %v", r, err)
	}
	m, err := ReadManifest(cur.Dir)
	if err != nil || m.Size() <= 0 || m.Size() != DirSize(cur.Dir)-fileSize(t, filepath.Join(cur.Dir, ManifestName)) {
		t.Errorf("manifest size %d, dir size %d, %v", m.Size(), DirSize(cur.Dir), err)
	}

	// A claim released while the key has a current checkpoint is set aside, not lost.
	if got, err := s.ReleaseClaim(es[1], "node-b died"); err != nil || !strings.HasPrefix(got, "set aside") {
		t.Fatalf("ReleaseClaim = %q, %v", got, err)
	}
	es, _ = s.Entries(k)
	for _, e := range es {
		if err := s.RemoveEntry(e); err != nil {
			t.Fatalf("remove %s: %v", e.Name, err)
		}
	}
	if c, err := s.Current(k); c != nil || err != nil {
		t.Errorf("current after removal = %v, %v", c, err)
	}
	if s.RemoveKeyDirIfEmpty(k) {
		t.Error("removed a key directory that still holds a stray file")
	}
	_ = os.Remove(filepath.Join(keyDir(t, s, k), "stray"))
	if !s.RemoveKeyDirIfEmpty(k) {
		t.Error("empty key directory not removed")
	}
}

func TestEntriesWithBrokenCurrentCallsNothingOrphan(t *testing.T) {
	s := newStore(t)
	publish(t, s, k)
	link := filepath.Join(keyDir(t, s, k), "current")
	_ = os.Remove(link)
	if err := os.Symlink("ckpt-20250102T030405.123456789Z-abcd0123", link); err != nil {
		t.Fatal(err)
	}
	es, err := s.Entries(k)
	if err == nil || len(es) != 0 {
		t.Fatalf("entries %v, %v; want none and an error", kinds(es), err)
	}
}

func TestRemoveEntryRefusesOutsiders(t *testing.T) {
	s := newStore(t)
	for _, e := range []Entry{
		{Ref: k, Name: "../x", Dir: filepath.Join(s.Root, "x"), Kind: KindAside},
		{Ref: k, Name: "aside-x", Dir: "/tmp/aside-x", Kind: KindAside},
		{Ref: k, Name: "aside-x", Dir: filepath.Join(keyDir(t, s, k), "aside-x"), Kind: "what"},
	} {
		if err := s.RemoveEntry(e); err == nil {
			t.Errorf("RemoveEntry(%+v) succeeded", e)
		}
	}
}

func TestStampTime(t *testing.T) {
	for name, want := range map[string]string{
		"ckpt-20250102T030405.123456789Z-abcd0123":     "2025-01-02T03:04:05.123456789Z",
		"aside-20250102T030405.000000000Z-abcd0123":    "2025-01-02T03:04:05Z",
		".tmp-20250102T030405.000000000Z-abcd0123":     "2025-01-02T03:04:05Z",
		".current-20250102T030405.000000000Z-abcd0123": "2025-01-02T03:04:05Z",
		".current-20250102T030405.000000000Z-abcd01":   "", // not a stamp tardis makes
		"ckpt-nonsense": "",
		"other":         "",
	} {
		got := StampTime(name)
		if (want == "") != got.IsZero() || (want != "" && got.Format(time.RFC3339Nano) != want) {
			t.Errorf("StampTime(%q) = %v, want %q", name, got, want)
		}
	}
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
