// Package criuimgtest writes fake CRIU image directories (a process tree with real
// CRIU-format images, as go-criu encodes them) and damages them in known ways, for tests
// and the fake runc. It is a test helper: the tardis binary never links it (it pulls in
// go-criu's crit and every image type it knows).
package criuimgtest

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	core_x86 "github.com/checkpoint-restore/go-criu/v7/crit/images/core-x86"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fown"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pipe"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/regfile"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/vma"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Values of task_core_entry.task_state and pagemap_entry.flags (CRIU's compel
// task-state.h and pagemap.h).
const (
	taskAlive = 1
	pePresent = 1 << 2
)

// FakeProcess describes the process tree WriteFake writes.
type FakeProcess struct {
	Pid      uint32 // root pid (>0)
	Threads  int    // threads of the root process, >= 1
	Pages    int    // present pages in the root's memory (>= 1)
	Comm     string // process name
	Children int    // extra child processes of the root, each with 1 thread and 1 page
}

// FakeDescriptors is the descriptors.json WriteFake writes.
var FakeDescriptors = []string{"/dev/null", "pipe:[1234]", "pipe:[1235]"}

// Ids of the entries of the fake's files.img.
const (
	fileDevNull = 1 + iota
	fileExe
	filePipeOut
	filePipeErr
	fileRoot
)

const fakeVaddr = 0x400000

// WriteFake writes into dir (created if missing, mode 0700, files 0600) a small
// but real CRIU-format image set that Validate accepts and go-criu's crit can
// decode: inventory, pstree, a core per thread, mm, pagemap, a sparse pages
// file, ids, fs and fdinfo per task, files.img, descriptors.json and stats-dump.
// The cores are x86_64 with zeroed registers: enough for tools, not for CRIU.
func WriteFake(dir string, p FakeProcess) error {
	if p.Pid == 0 || p.Threads < 1 || p.Pages < 1 || p.Children < 0 ||
		uint64(p.Pid)+uint64(p.Threads)+uint64(p.Children) > math.MaxInt32 {
		return fmt.Errorf("criuimg: bad fake process %+v", p)
	}
	if p.Comm == "" {
		p.Comm = "fake"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	type task struct {
		pid, ppid uint32
		threads   []uint32
		pages     int
	}
	tasks := []task{{pid: p.Pid, pages: p.Pages}}
	for i := range p.Threads {
		tasks[0].threads = append(tasks[0].threads, p.Pid+uint32(i))
	}
	for i := range p.Children {
		pid := p.Pid + uint32(p.Threads+i)
		tasks = append(tasks, task{pid: pid, ppid: p.Pid, threads: []uint32{pid}, pages: 1})
	}
	ids := func(k int) *criu_core.TaskKobjIdsEntry {
		id := uint32(k + 1)
		return &criu_core.TaskKobjIdsEntry{
			VmId: proto.Uint32(id), FilesId: proto.Uint32(id), FsId: proto.Uint32(id), SighandId: proto.Uint32(id),
			PidNsId: proto.Uint32(1), NetNsId: proto.Uint32(2), IpcNsId: proto.Uint32(3), UtsNsId: proto.Uint32(4),
			MntNsId: proto.Uint32(5), CgroupNsId: proto.Uint32(6),
		}
	}
	w := Writer{Dir: dir}
	w.Image("inventory.img", "INVENTORY", &inventory.InventoryEntry{
		ImgVersion: proto.Uint32(2), FdinfoPerId: proto.Bool(true), NsPerId: proto.Bool(true),
		RootIds: ids(0), Lsmtype: inventory.Lsmtype_NO_LSM.Enum(),
	})
	reg := func(id uint32, name string, flags uint32) *fdinfo.FileEntry {
		return &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: &regfile.RegFileEntry{
			Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: &fown.FownEntry{}, Name: proto.String(name),
		}}
	}
	pipeFile := func(id, pipeID uint32) *fdinfo.FileEntry {
		return &fdinfo.FileEntry{Type: fdinfo.FdTypes_PIPE.Enum(), Id: proto.Uint32(id), Pipe: &pipe.PipeEntry{
			Id: proto.Uint32(id), PipeId: proto.Uint32(pipeID), Flags: proto.Uint32(1), Fown: &fown.FownEntry{},
		}}
	}
	w.Image("files.img", "FILES",
		reg(fileDevNull, "/dev/null", 0o2), reg(fileExe, "/bin/"+p.Comm, 0), // O_RDWR for /dev/null
		pipeFile(filePipeOut, 1234), pipeFile(filePipeErr, 1235), reg(fileRoot, "/", 0o200000))

	var pst []proto.Message
	var pages int
	for k, t := range tasks {
		pst = append(pst, &pstree.PstreeEntry{
			Pid: proto.Uint32(t.pid), Ppid: proto.Uint32(t.ppid), Pgid: proto.Uint32(p.Pid),
			Sid: proto.Uint32(p.Pid), Threads: t.threads,
		})
		for i, tid := range t.threads {
			core := &criu_core.CoreEntry{
				Mtype:      criu_core.CoreEntry_X86_64.Enum(),
				ThreadInfo: &core_x86.ThreadInfoX86{},
				ThreadCore: &criu_core.ThreadCoreEntry{Comm: proto.String(p.Comm)},
			}
			if i == 0 {
				core.Tc = &criu_core.TaskCoreEntry{TaskState: proto.Uint32(taskAlive), Comm: proto.String(p.Comm)}
			}
			w.Image(fmt.Sprintf("core-%d.img", tid), "CORE", core)
		}
		size := uint64(t.pages) * uint64(os.Getpagesize())
		w.Image(fmt.Sprintf("mm-%d.img", t.pid), "MM", &mm.MmEntry{
			ExeFileId: proto.Uint32(fileExe),
			Vmas: []*vma.VmaEntry{{
				Start: proto.Uint64(fakeVaddr), End: proto.Uint64(fakeVaddr + size),
				Prot:   proto.Uint32(0x3),   // PROT_READ|PROT_WRITE
				Flags:  proto.Uint32(0x22),  // MAP_PRIVATE|MAP_ANONYMOUS
				Status: proto.Uint32(0x201), // VMA_AREA_REGULAR|VMA_ANON_PRIVATE
				Fd:     proto.Int64(-1),
			}},
		})
		pagesID := uint32(k + 1)
		w.Image(fmt.Sprintf("pagemap-%d.img", t.pid), "PAGEMAP",
			&pagemap.PagemapHead{PagesId: proto.Uint32(pagesID)},
			&pagemap.PagemapEntry{Vaddr: proto.Uint64(fakeVaddr), NrPages: proto.Uint32(uint32(t.pages)), Flags: proto.Uint32(pePresent)})
		w.Sparse(fmt.Sprintf("pages-%d.img", pagesID), int64(size))
		pages += t.pages
		w.Image(fmt.Sprintf("ids-%d.img", t.pid), "IDS", ids(k))
		w.Image(fmt.Sprintf("fs-%d.img", t.pid), "FS",
			&fs.FsEntry{CwdId: proto.Uint32(fileRoot), RootId: proto.Uint32(fileRoot), Umask: proto.Uint32(0o22)})
		fd := func(n, id uint32, typ fdinfo.FdTypes) proto.Message {
			return &fdinfo.FdinfoEntry{Id: proto.Uint32(id), Flags: proto.Uint32(0), Type: typ.Enum(), Fd: proto.Uint32(n)}
		}
		w.Image(fmt.Sprintf("fdinfo-%d.img", ids(k).GetFilesId()), "FDINFO",
			fd(0, fileDevNull, fdinfo.FdTypes_REG), fd(1, filePipeOut, fdinfo.FdTypes_PIPE), fd(2, filePipeErr, fdinfo.FdTypes_PIPE))
	}
	w.Image("pstree.img", "PSTREE", pst...)
	w.Image("stats-dump", "STATS", &stats.StatsEntry{Dump: &stats.DumpStatsEntry{
		FreezingTime: proto.Uint32(1200), FrozenTime: proto.Uint32(25000), MemdumpTime: proto.Uint32(3000),
		MemwriteTime: proto.Uint32(2000), PagesScanned: proto.Uint64(uint64(pages) + 64),
		PagesWritten: proto.Uint64(uint64(pages)),
	}})
	if w.Err == nil {
		b, _ := json.Marshal(FakeDescriptors)
		w.Err = os.WriteFile(filepath.Join(dir, "descriptors.json"), b, 0o600)
	}
	return w.Err
}

// Writer keeps the first error, so WriteFake reads as a list of images.
type Writer struct {
	Dir string // the image directory
	Err error  // the first error
}

// Image writes entries with crit's encoder (which adds the right magics).
func (w *Writer) Image(name, magic string, entries ...proto.Message) {
	if w.Err != nil {
		return
	}
	img := &crit.CriuImage{Magic: magic}
	for _, e := range entries {
		FillRequired(e.ProtoReflect())
		img.Entries = append(img.Entries, &crit.CriuEntry{Message: e})
	}
	f, err := os.OpenFile(filepath.Join(w.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		w.Err = err
		return
	}
	w.Err = errors.Join(crit.New(nil, f, "", false, false).Encode(img), f.Close())
}

// Sparse writes a raw pages file: its size is what counts, not its contents.
func (w *Writer) Sparse(name string, size int64) {
	if w.Err != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(w.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		w.Err = err
		return
	}
	w.Err = errors.Join(f.Truncate(size), f.Close())
}

// FillRequired sets every unset proto2 required field, recursively, to its
// default, so fakes need not spell out dozens of zero registers.
func FillRequired(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		required := fd.Cardinality() == protoreflect.Required
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := m.Get(fd).List()
			for j := range l.Len() {
				FillRequired(l.Get(j).Message())
			}
		case fd.IsMap():
		case fd.Message() != nil && (required || m.Has(fd)):
			FillRequired(m.Mutable(fd).Message())
		case required && !m.Has(fd):
			m.Set(fd, fd.Default())
		}
	}
}

// DamageKinds lists the kinds Damage knows, sorted.
var DamageKinds = []string{
	"bad-descriptors", "flip-magic", "missing-core", "missing-inventory",
	"missing-pstree", "pages-mismatch", "truncate-image", "truncate-pages",
}

// Damage applies one kind of damage to an image dir (written by WriteFake or
// by CRIU) that Validate must catch:
//
//	truncate-pages     a pages file shorter than its pagemap says
//	flip-magic         inventory.img with a wrong magic
//	truncate-image     a core image cut in the middle of its entry
//	missing-core       one core-<tid>.img removed
//	pages-mismatch     a pages file longer than its pagemap says
//	bad-descriptors    descriptors.json not three strings
//	missing-inventory  inventory.img removed
//	missing-pstree     pstree.img removed
func Damage(dir, kind string) error {
	at := func(name string) string { return filepath.Join(dir, name) }
	page := int64(os.Getpagesize())
	switch kind {
	case "truncate-pages", "pages-mismatch":
		name, size, err := nonEmptyPages(dir)
		if err != nil {
			return err
		}
		if kind == "truncate-pages" {
			return os.Truncate(at(name), size-min(page, size))
		}
		return os.Truncate(at(name), size+page)
	case "flip-magic":
		f, err := os.OpenFile(at("inventory.img"), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		var b [1]byte
		_, err = f.ReadAt(b[:], 0)
		if err == nil {
			b[0] ^= 0xa5
			_, err = f.WriteAt(b[:], 0)
		}
		return errors.Join(err, f.Close())
	case "truncate-image":
		core, err := lastMatch(dir, "core-*.img")
		if err != nil {
			return err
		}
		b, err := os.ReadFile(at(core))
		if err != nil {
			return err
		}
		// A core image: two magic words, then entries of a 32-bit size and the entry.
		if len(b) < 12 {
			return fmt.Errorf("criuimgtest: %s is too short to cut", core)
		}
		cut := int64(10) // inside the size word if the entry is empty
		if n := int64(binary.LittleEndian.Uint32(b[8:12])); n > 0 {
			cut = 12 + n/2 - 1
		}
		return os.Truncate(at(core), cut)
	case "missing-core":
		core, err := lastMatch(dir, "core-*.img")
		if err != nil {
			return err
		}
		return os.Remove(at(core))
	case "bad-descriptors":
		return os.WriteFile(at("descriptors.json"), []byte(`["/dev/null","pipe:[1234]"]`), 0o600)
	case "missing-inventory":
		return os.Remove(at("inventory.img"))
	case "missing-pstree":
		return os.Remove(at("pstree.img"))
	}
	return fmt.Errorf("criuimg: unknown damage kind %q (known: %v)", kind, DamageKinds)
}

// lastMatch returns the last file name matching pattern in dir, by name.
func lastMatch(dir, pattern string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		return "", fmt.Errorf("criuimg: no %s in %s", pattern, dir)
	}
	sort.Strings(m)
	return filepath.Base(m[len(m)-1]), nil
}

// nonEmptyPages returns the first non-empty pages file of dir, by name.
func nonEmptyPages(dir string) (string, int64, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	sort.Strings(m)
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return filepath.Base(p), st.Size(), nil
		}
	}
	return "", 0, fmt.Errorf("criuimg: no non-empty pages-*.img in %s", dir)
}
