package criuimg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	fsimg "github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	ghost_file "github.com/checkpoint-restore/go-criu/v7/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	ipc_desc "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-desc"
	ipc_msg "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-sem"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	pipe_data "github.com/checkpoint-restore/go-criu/v7/crit/images/pipe-data"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/seccomp"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	tcp_stream "github.com/checkpoint-restore/go-criu/v7/crit/images/tcp-stream"
	"github.com/checkpoint-restore/go-criu/v7/magic"
	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
	"google.golang.org/protobuf/proto"
)

var fakeProc = criuimgtest.FakeProcess{Pid: 100, Threads: 2, Pages: 3, Comm: "sh", Children: 2}

func fakeDir(t testing.TB, p criuimgtest.FakeProcess) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	if err := criuimgtest.WriteFake(dir, p); err != nil {
		t.Fatal(err)
	}
	return dir
}

// wantInvalid fails unless err wraps ErrInvalid and its message names file.
func wantInvalid(t *testing.T, err error, file string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("want an error wrapping ErrInvalid naming %s, got %v", file, err)
	}
	if !strings.Contains(err.Error(), file) {
		t.Fatalf("error does not name %s: %v", file, err)
	}
}

// imageFiles lists the non-raw .img files of dir.
func imageFiles(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), ".img") && !isRaw(de.Name()) {
			names = append(names, de.Name())
		}
	}
	return names
}

func TestWriteFakeValidates(t *testing.T) {
	for _, p := range []criuimgtest.FakeProcess{
		{Pid: 1, Threads: 1, Pages: 1, Comm: "init"},
		{Pid: 4242, Threads: 4, Pages: 100, Comm: "server", Children: 3},
		fakeProc,
	} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			dir := fakeDir(t, p)
			if err := Validate(dir); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(dir)
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Fatalf("dir mode: %v %v", st.Mode(), err)
			}
			entries, _ := os.ReadDir(dir)
			for _, de := range entries {
				if info, _ := de.Info(); info.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, want 0600", de.Name(), info.Mode())
				}
			}
			pages, err := os.Stat(filepath.Join(dir, "pages-1.img"))
			if err != nil || pages.Size() != int64(p.Pages*os.Getpagesize()) {
				t.Fatalf("pages-1.img: %v %v", pages.Size(), err)
			}
		})
	}
}

// TestFakeDecodesWithCrit checks the fake is real CRIU format as far as
// go-criu's crit can tell: every image decodes, and the explorers work.
func TestFakeDecodesWithCrit(t *testing.T) {
	dir := fakeDir(t, fakeProc)
	types := map[string]proto.Message{
		"INVENTORY": &inventory.InventoryEntry{}, "PSTREE": &pstree.PstreeEntry{},
		"CORE": &criu_core.CoreEntry{}, "MM": &mm.MmEntry{}, "PAGEMAP": &pagemap.PagemapEntry{},
		"IDS": &criu_core.TaskKobjIdsEntry{}, "FS": &fsimg.FsEntry{},
		"FDINFO": &fdinfo.FdinfoEntry{}, "FILES": &fdinfo.FileEntry{},
	}
	for _, name := range imageFiles(t, dir) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := crit.ReadMagic(f)
		if err != nil || types[m] == nil {
			t.Fatalf("%s: magic %q %v", name, m, err)
		}
		f.Seek(0, 0)
		img, err := crit.New(f, nil, "", false, false).Decode(types[m])
		f.Close()
		if err != nil || len(img.Entries) == 0 {
			t.Fatalf("%s: crit decode: %v", name, err)
		}
	}
	c := crit.New(nil, nil, dir, false, false)
	ps, err := c.ExplorePs()
	if err != nil {
		t.Fatal(err)
	}
	if ps.PID != 100 || ps.Comm != "sh" || len(ps.Children) != 2 || len(ps.Process.GetThreads()) != 2 {
		t.Fatalf("ExplorePs: pid %d comm %q children %d threads %v",
			ps.PID, ps.Comm, len(ps.Children), ps.Process.GetThreads())
	}
	mems, err := c.ExploreMems()
	if err != nil {
		t.Fatal(err)
	}
	if len(mems) != 3 || mems[0].Exe != "/bin/sh" || len(mems[0].Mems) != 1 || mems[0].Mems[0].Protection != "rw-" {
		t.Fatalf("ExploreMems: %+v", mems[0])
	}
	fds, err := c.ExploreFds()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range fds[0].Files {
		paths = append(paths, f.Path)
	}
	if want := []string{"/dev/null", "pipe[1234]", "pipe[1235]", "/", "/"}; !slices.Equal(paths, want) {
		t.Fatalf("ExploreFds: %v, want %v", paths, want)
	}
	ds, err := crit.GetDumpStats(dir)
	if err != nil || ds.GetPagesWritten() != 5 {
		t.Fatalf("crit.GetDumpStats: %v %v", ds, err)
	}
}

func TestWriteFakeRejectsBadInput(t *testing.T) {
	for _, p := range []criuimgtest.FakeProcess{
		{Pid: 0, Threads: 1, Pages: 1},
		{Pid: 1, Threads: 0, Pages: 1},
		{Pid: 1, Threads: 1, Pages: 0},
		{Pid: 1, Threads: 1, Pages: 1, Children: -1},
	} {
		if err := criuimgtest.WriteFake(t.TempDir(), p); err == nil {
			t.Errorf("criuimgtest.WriteFake(%+v) succeeded", p)
		}
	}
}

func TestDamage(t *testing.T) {
	if !sort.StringsAreSorted(criuimgtest.DamageKinds) {
		t.Fatal("criuimgtest.DamageKinds not sorted")
	}
	names := map[string]string{
		"truncate-pages":    "pages-1.img",
		"flip-magic":        "inventory.img",
		"truncate-image":    "core-",
		"missing-core":      "core-",
		"pages-mismatch":    "pages-1.img",
		"bad-descriptors":   "descriptors.json",
		"missing-inventory": "inventory.img",
		"missing-pstree":    "pstree.img",
	}
	if len(names) != len(criuimgtest.DamageKinds) {
		t.Fatal("table does not cover criuimgtest.DamageKinds")
	}
	for _, kind := range criuimgtest.DamageKinds {
		for _, p := range []criuimgtest.FakeProcess{{Pid: 7, Threads: 1, Pages: 1}, fakeProc} {
			t.Run(fmt.Sprintf("%s/%d-threads", kind, p.Threads), func(t *testing.T) {
				dir := fakeDir(t, p)
				if err := criuimgtest.Damage(dir, kind); err != nil {
					t.Fatal(err)
				}
				err := Validate(dir)
				wantInvalid(t, err, names[kind])
				t.Log(err)
			})
		}
	}
	if err := criuimgtest.Damage(t.TempDir(), "no-such-kind"); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

// TestTruncateEveryOffset cuts every image of a fake at every byte. Cuts
// inside an entry must always be caught; for the images the tree depends on,
// cuts on an entry boundary too.
func TestTruncateEveryOffset(t *testing.T) {
	dir := fakeDir(t, fakeProc)
	strict := func(name string) bool {
		switch imageKind(name) {
		case "inventory", "pstree", "core", "mm", "ids", "fs", "pagemap":
			return true
		}
		return false
	}
	for _, name := range imageFiles(t, dir) {
		path := filepath.Join(dir, name)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		boundaries := entryBoundaries(t, name, orig)
		for cut := range len(orig) {
			if err := os.WriteFile(path, orig[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			err := Validate(dir)
			switch {
			case strict(name) && !errors.Is(err, ErrInvalid):
				t.Fatalf("%s cut at %d of %d: %v", name, cut, len(orig), err)
			case !boundaries[cut] && err == nil:
				t.Fatalf("%s cut inside an entry at %d of %d: accepted", name, cut, len(orig))
			case !boundaries[cut] && !strings.Contains(err.Error(), name):
				t.Fatalf("%s cut at %d: error does not name it: %v", name, cut, err)
			}
		}
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Validate(dir); err != nil {
		t.Fatal(err)
	}
}

// entryBoundaries returns the offsets at which an image could end cleanly.
func entryBoundaries(t *testing.T, name string, b []byte) map[int]bool {
	_, fr, err := bytesFrames(name, b)
	if err != nil {
		t.Fatal(err)
	}
	at := map[int]bool{int(fr.off): true}
	for {
		if _, err := fr.next(); err != nil {
			return at
		}
		at[int(fr.off)] = true
	}
}

func TestValidateCases(t *testing.T) {
	page := os.Getpagesize()
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, dir string, w *criuimgtest.Writer)
		file   string // "" means Validate must accept the result
	}{
		{"ok", func(*testing.T, string, *criuimgtest.Writer) {}, ""},
		{"no dir", func(t *testing.T, dir string, _ *criuimgtest.Writer) { os.RemoveAll(dir) }, "no such file"},
		{"missing descriptors", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.Remove(filepath.Join(dir, "descriptors.json"))
		}, "descriptors.json"},
		{"descriptors not json", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.WriteFile(filepath.Join(dir, "descriptors.json"), []byte("{"), 0o600)
		}, "descriptors.json"},
		{"descriptors with a number", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.WriteFile(filepath.Join(dir, "descriptors.json"), []byte(`["a",1,"c"]`), 0o600)
		}, "descriptors.json"},
		{"known magic of another image", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("core-101.img", "PSTREE", &pstree.PstreeEntry{Pid: proto.Uint32(101)})
		}, "core-101.img: magic PSTREE, want CORE"},
		{"unknown image with unknown magic", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.WriteFile(filepath.Join(dir, "future-1.img"), []byte("\x19\x43\x56\x54\x01\x02\x03\x04"), 0o600)
		}, "future-1.img: unknown magic 0x04030201"},
		{"empty image", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.WriteFile(filepath.Join(dir, "ids-100.img"), nil, 0o600)
		}, "ids-100.img: truncated magic at offset 0"},
		{"garbage entry", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			b := []byte("\x19\x43\x56\x54\x20\x28\x49\x57\x03\x00\x00\x00\xff\xff\xff")
			os.WriteFile(filepath.Join(dir, "mm-100.img"), b, 0o600)
		}, "mm-100.img: entry at offset 8 is not protobuf"},
		{"empty entries are valid (as in CRIU's seccomp.img)", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("seccomp.img", "SECCOMP", &seccomp.SeccompEntry{})
		}, ""},
		{"raw images are skipped", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			for _, n := range []string{"iptables-9.img", "ip6tables-9.img", "nftables-9.img", "ifaddr-9.img",
				"route-9.img", "route6-9.img", "rule-9.img", "tmpfs-dev-55.tar.gz.img", "netns-ct-9.img"} {
				os.WriteFile(filepath.Join(dir, n), []byte("# Generated by iptables-save\n"), 0o600)
			}
		}, ""},
		{"two roots", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pstree.img", "PSTREE",
				&pstree.PstreeEntry{Pid: proto.Uint32(100), Threads: []uint32{100, 101}},
				&pstree.PstreeEntry{Pid: proto.Uint32(102), Threads: []uint32{102}},
				&pstree.PstreeEntry{Pid: proto.Uint32(103), Ppid: proto.Uint32(100), Threads: []uint32{103}})
		}, "pstree.img: 2 root tasks"},
		{"unknown parent", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pstree.img", "PSTREE",
				&pstree.PstreeEntry{Pid: proto.Uint32(100), Threads: []uint32{100, 101}},
				&pstree.PstreeEntry{Pid: proto.Uint32(102), Ppid: proto.Uint32(100), Threads: []uint32{102}},
				&pstree.PstreeEntry{Pid: proto.Uint32(103), Ppid: proto.Uint32(99), Threads: []uint32{103}})
		}, "pstree.img: task 103: ancestor 99"},
		{"parent cycle", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pstree.img", "PSTREE",
				&pstree.PstreeEntry{Pid: proto.Uint32(100), Threads: []uint32{100, 101}},
				&pstree.PstreeEntry{Pid: proto.Uint32(102), Ppid: proto.Uint32(103), Threads: []uint32{102}},
				&pstree.PstreeEntry{Pid: proto.Uint32(103), Ppid: proto.Uint32(102), Threads: []uint32{103}})
		}, "cycle"},
		{"lost pstree entry", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pstree.img", "PSTREE",
				&pstree.PstreeEntry{Pid: proto.Uint32(100), Threads: []uint32{100, 101}},
				&pstree.PstreeEntry{Pid: proto.Uint32(102), Ppid: proto.Uint32(100), Threads: []uint32{102}})
		}, "core-103.img: 103 is not in pstree.img"},
		{"missing mm of a live task", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.Remove(filepath.Join(dir, "mm-102.img"))
		}, "mm-102.img: missing (live task 102"},
		{"zombie needs only its core", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			for _, f := range []string{"mm-103.img", "pagemap-103.img", "pages-3.img", "ids-103.img", "fs-103.img"} {
				os.Remove(filepath.Join(dir, f))
			}
			w.Image("core-103.img", "CORE", &criu_core.CoreEntry{
				Mtype: criu_core.CoreEntry_X86_64.Enum(),
				Tc:    &criu_core.TaskCoreEntry{TaskState: proto.Uint32(taskDead), ExitCode: proto.Uint32(1)},
			})
		}, ""},
		{"leader core without task core", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("core-100.img", "CORE", &criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum()})
		}, "core-100.img: no task_core"},
		{"pages in parent, lazy or old-style are not in pages file", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pagemap-100.img", "PAGEMAP", &pagemap.PagemapHead{PagesId: proto.Uint32(1)},
				&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x1000), NrPages: proto.Uint32(1), Flags: proto.Uint32(pePresent)},
				&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x2000), NrPages: proto.Uint32(5), Flags: proto.Uint32(peParent)},
				&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x9000), NrPages: proto.Uint32(7), Flags: proto.Uint32(2)}, // PE_LAZY
				&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x20000), NrPages: proto.Uint32(1)},
				&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x30000), NrPages: proto.Uint32(9), InParent: proto.Bool(true)})
			w.Sparse("pages-1.img", int64(2*page))
		}, ""},
		{"pages file missing", func(t *testing.T, dir string, _ *criuimgtest.Writer) {
			os.Remove(filepath.Join(dir, "pages-2.img"))
		}, "pages-2.img: missing (pagemap-102.img has 1 present pages)"},
		{"no present pages, no pages file", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pagemap-102.img", "PAGEMAP", &pagemap.PagemapHead{PagesId: proto.Uint32(2)})
			os.Remove(filepath.Join(dir, "pages-2.img"))
		}, ""},
		{"shared pages id", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pagemap-102.img", "PAGEMAP", &pagemap.PagemapHead{PagesId: proto.Uint32(1)})
		}, "pagemap-102.img: pages id 1 already used by pagemap-100.img"},
		{"shmem pagemap checked too", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			w.Image("pagemap-shmem-77.img", "PAGEMAP", &pagemap.PagemapHead{PagesId: proto.Uint32(9)},
				&pagemap.PagemapEntry{Vaddr: proto.Uint64(0), NrPages: proto.Uint32(2), Flags: proto.Uint32(pePresent)})
			w.Sparse("pages-9.img", int64(page))
		}, "pages-9.img: size"},
		{"images with raw payload", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			writeExtras(t, w, dir, 0)
		}, ""},
		{"pipes-data payload cut", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			writeExtras(t, w, dir, 1)
		}, "pipes-data.img: truncated payload of entry 1"},
		{"ipcns-msg message cut", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			writeExtras(t, w, dir, 2)
		}, "ipcns-msg-1.img: truncated message text"},
		{"pipes-data with extra bytes", func(t *testing.T, dir string, w *criuimgtest.Writer) {
			writeExtras(t, w, dir, 3)
		}, "pipes-data.img: truncated entry at offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeDir(t, fakeProc)
			w := &criuimgtest.Writer{Dir: dir}
			tc.change(t, dir, w)
			if w.Err != nil {
				t.Fatal(w.Err)
			}
			err := Validate(dir)
			if tc.file == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantInvalid(t, err, tc.file)
		})
	}
}

// writeExtras writes, by hand, images whose entries are followed by raw
// payload (crit's encoder cannot write all of them), then damages them:
// 0 none, 1 cut pipes-data, 2 cut ipcns-msg, 3 grow pipes-data.
func writeExtras(t testing.TB, w *criuimgtest.Writer, dir string, damage int) {
	frame := func(m proto.Message) []byte {
		criuimgtest.FillRequired(m.ProtoReflect())
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{byte(len(b)), 0, 0, 0}, b...)
	}
	write := func(name, m string, parts ...[]byte) {
		head := []byte{0x19, 0x43, 0x56, 0x54, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(head[4:], uint32(magic.LoadMagic().ByName[m]))
		if err := os.WriteFile(filepath.Join(dir, name), slices.Concat(append([][]byte{head}, parts...)...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	desc := &ipc_desc.IpcDescEntry{}
	pipeTail := []byte("abc")
	switch damage {
	case 1:
		pipeTail = pipeTail[:2]
	case 3:
		pipeTail = append(pipeTail, 0xff)
	}
	write("pipes-data.img", "PIPES_DATA",
		frame(&pipe_data.PipeDataEntry{PipeId: proto.Uint32(1234), Bytes: proto.Uint32(5)}), []byte("hello"),
		frame(&pipe_data.PipeDataEntry{PipeId: proto.Uint32(1235), Bytes: proto.Uint32(3)}), pipeTail)
	write("tcp-stream-1a.img", "TCP_STREAM",
		frame(&tcp_stream.TcpStreamEntry{InqLen: proto.Uint32(2), OutqLen: proto.Uint32(4)}), []byte("inOUTQ"))
	write("ipcns-sem-1.img", "IPCNS_SEM",
		frame(&ipc_sem.IpcSemEntry{Desc: desc, Nsems: proto.Uint32(4)}), bytes.Repeat([]byte{1, 0}, 4), // 64-bit aligned already
		frame(&ipc_sem.IpcSemEntry{Desc: desc, Nsems: proto.Uint32(1)}), []byte{1, 0, 0, 0, 0, 0, 0, 0})
	msgs := [][]byte{
		frame(&ipc_msg.IpcMsgEntry{Desc: desc, Qnum: proto.Uint32(2)}),
		frame(&ipc_msg.IpcMsg{Mtype: proto.Uint64(1), Msize: proto.Uint32(3)}), []byte("hi!\x00\x00\x00\x00\x00"),
		frame(&ipc_msg.IpcMsg{Mtype: proto.Uint64(1), Msize: proto.Uint32(8)}), []byte("12345678"),
	}
	if damage == 2 {
		msgs[4] = msgs[4][:7]
	}
	write("ipcns-msg-1.img", "IPCNS_MSG", msgs...)
	write("ghost-file-2.img", "GHOST_FILE",
		frame(&ghost_file.GhostFileEntry{Mode: proto.Uint32(0o100644)}), []byte("file contents of any length"))
	write("ghost-file-3.img", "GHOST_FILE",
		frame(&ghost_file.GhostFileEntry{Mode: proto.Uint32(0o100644), Chunks: proto.Bool(true)}),
		frame(&ghost_file.GhostChunkEntry{Len: proto.Uint64(3), Off: proto.Uint64(0)}), []byte("xyz"),
		frame(&ghost_file.GhostChunkEntry{Len: proto.Uint64(2), Off: proto.Uint64(4096)}), []byte("zz"))
}

func TestStats(t *testing.T) {
	dir := fakeDir(t, fakeProc)
	d, err := ReadDumpStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := (DumpStats{1200, 25000, 3000, 2000, 69, 5}); *d != want {
		t.Fatalf("ReadDumpStats: %+v, want %+v", *d, want)
	}
	if _, err := ReadRestoreStats(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing stats-restore: %v", err)
	}
	w := &criuimgtest.Writer{Dir: dir}
	w.Image("stats-restore", "STATS", &stats.StatsEntry{Restore: &stats.RestoreStatsEntry{
		ForkingTime: proto.Uint32(10), RestoreTime: proto.Uint32(20), PagesRestored: proto.Uint64(30),
	}})
	if w.Err != nil {
		t.Fatal(w.Err)
	}
	r, err := ReadRestoreStats(dir)
	if err != nil || *r != (RestoreStats{10, 20, 30}) {
		t.Fatalf("ReadRestoreStats: %+v %v", r, err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, "stats-dump"))
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short":          {0x40},
		"magic only":     good[:8],
		"cut entry":      good[:len(good)-1],
		"two entries":    append(slices.Clone(good), good[8:]...),
		"wrong magic":    append([]byte{0x19, 0x43, 0x56, 0x54, 0x30, 0x30, 0x27, 0x50}, good[8:]...),
		"garbage":        []byte("this is not a stats image at all"),
		"garbage entry":  append(slices.Clone(good[:8]), 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff),
		"restore stats":  mustRead(t, filepath.Join(dir, "stats-restore")),
		"no common part": good[4:],
	} {
		t.Run(name, func(t *testing.T) {
			sd := t.TempDir()
			os.WriteFile(filepath.Join(sd, "stats-dump"), b, 0o600)
			_, err := ReadDumpStats(sd)
			if name == "no common part" {
				// CRIU always writes the service magic, but the bare one decodes too.
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantInvalid(t, err, "stats-dump")
		})
	}
	if _, err := ReadDumpStats(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealImage validates a checkpoint made by real runc and CRIU, and checks
// that every criuimgtest.Damage kind is caught on it. Pages files are copied as sparse
// files of the same size: only their size matters.
func TestRealImage(t *testing.T) {
	src := os.Getenv("TARDIS_REAL_IMAGE_DIR")
	if src == "" {
		t.Skip("TARDIS_REAL_IMAGE_DIR is not set")
	}
	if err := Validate(src); err != nil {
		t.Fatal(err)
	}
	if _, err := crit.New(nil, nil, src, false, false).ExplorePs(); err != nil {
		t.Fatalf("crit ExplorePs: %v", err)
	}
	// stats-dump is in runc's --work-path, which defaults to the image dir.
	if _, err := ReadDumpStats(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, kind := range criuimgtest.DamageKinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			des, err := os.ReadDir(src)
			if err != nil {
				t.Fatal(err)
			}
			w := &criuimgtest.Writer{Dir: dir}
			for _, de := range des {
				info, err := de.Info()
				if err != nil || !info.Mode().IsRegular() {
					continue
				}
				if strings.HasPrefix(de.Name(), "pages-") {
					w.Sparse(de.Name(), info.Size())
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, de.Name()), mustRead(t, filepath.Join(src, de.Name())), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if w.Err != nil {
				t.Fatal(w.Err)
			}
			if err := Validate(dir); err != nil {
				t.Fatalf("copy: %v", err)
			}
			if err := criuimgtest.Damage(dir, kind); err != nil {
				t.Fatal(err)
			}
			if err := Validate(dir); !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s not caught: %v", kind, err)
			} else {
				t.Log(err)
			}
		})
	}
}

// FuzzValidate replaces one image of a fake dir with the fuzzer's bytes:
// Validate and the stats readers must never panic, and fail only with ErrInvalid.
// Each fuzzing process reuses one dir and puts the original file back.
func FuzzValidate(f *testing.F) {
	dir := fakeDir(f, fakeProc)
	names := append(imageFiles(f, dir), "stats-dump", "descriptors.json")
	orig := map[string][]byte{}
	for i, name := range names {
		orig[name] = mustReadF(f, filepath.Join(dir, name))
		f.Add(uint8(i), orig[name])
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		name := names[int(which)%len(names)]
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(path, orig[name], 0o600)
		if err := Validate(dir); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: error not wrapping ErrInvalid: %v", name, err)
		}
		if _, err := ReadDumpStats(dir); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("stats: error not wrapping ErrInvalid: %v", err)
		}
	})
}

func mustReadF(f *testing.F, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// BenchmarkValidate shows that validation cost does not depend on the size
// of the pages files: they are only stat'ed (2 GiB here, sparse).
func BenchmarkValidate(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int64
	}{{"4KiB", 4 << 10}, {"2GiB", 2 << 30}} {
		pages := int(size.bytes / int64(os.Getpagesize()))
		b.Run("pages="+size.name, func(b *testing.B) {
			dir := fakeDir(b, criuimgtest.FakeProcess{Pid: 100, Threads: 4, Pages: pages, Comm: "big", Children: 2})
			for b.Loop() {
				if err := Validate(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestNotRegular puts a FIFO (which a plain open would wait on forever) or a
// directory where Validate and the stats readers expect files.
func TestNotRegular(t *testing.T) {
	for _, name := range []string{"inventory.img", "pstree.img", "zz-1.img", "descriptors.json", "stats-dump"} {
		for _, kind := range []string{"fifo", "dir"} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				dir := fakeDir(t, fakeProc)
				path := filepath.Join(dir, name)
				os.Remove(path)
				var err error
				if kind == "fifo" {
					err = syscall.Mkfifo(path, 0o600)
				} else {
					err = os.Mkdir(path, 0o700)
				}
				if err != nil {
					t.Fatal(err)
				}
				errs := make(chan error, 2)
				go func() {
					errs <- Validate(dir)
					_, err := ReadDumpStats(dir)
					errs <- err
				}()
				// Validate does not read stats-dump, and skips directories
				// named *.img (a missing pstree.img is caught as such).
				wantValidate, wantStats := name, ""
				if name == "stats-dump" {
					wantValidate, wantStats = "", name
				} else if name == "zz-1.img" && kind == "dir" {
					wantValidate = ""
				}
				for _, want := range []string{wantValidate, wantStats} {
					select {
					case err := <-errs:
						if want == "" && err != nil {
							t.Fatal(err)
						}
						if want != "" {
							wantInvalid(t, err, want)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("hangs")
					}
				}
			})
		}
	}
}

func TestDescriptorsTooLarge(t *testing.T) {
	dir := fakeDir(t, fakeProc)
	w := &criuimgtest.Writer{Dir: dir}
	w.Sparse("descriptors.json", 2<<20)
	if w.Err != nil {
		t.Fatal(w.Err)
	}
	wantInvalid(t, Validate(dir), "descriptors.json: 2097152 bytes")
}

// An entry announcing a size no CRIU entry has (a planted image: a sparse file whose
// length lets a 1 GiB entry "fit") is refused before anything that size is allocated.
func TestEntryTooLarge(t *testing.T) {
	dir := fakeDir(t, fakeProc)
	path := filepath.Join(dir, "core-100.img")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img := append(append([]byte{}, old[:8]...), 0, 0, 0, 0x40) // the magics, then 1 GiB
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(len(img))+1<<30); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	wantInvalid(t, Validate(dir), "core-100.img")
	err = Validate(dir)
	runtime.ReadMemStats(&after)
	if !strings.Contains(err.Error(), "1073741824 bytes announced") {
		t.Fatalf("error %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Fatalf("validation allocated %d MiB", got>>20)
	}
}
