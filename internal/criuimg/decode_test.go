package criuimg

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	bpfmap_data "github.com/checkpoint-restore/go-criu/v7/crit/images/bpfmap-data"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	fsimg "github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	ghost_file "github.com/checkpoint-restore/go-criu/v7/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	ipc_desc "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-desc"
	ipc_msg "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-shm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	pipe_data "github.com/checkpoint-restore/go-criu/v7/crit/images/pipe-data"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	sk_packet "github.com/checkpoint-restore/go-criu/v7/crit/images/sk-packet"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	tcp_stream "github.com/checkpoint-restore/go-criu/v7/crit/images/tcp-stream"
	"github.com/checkpoint-restore/go-criu/v7/magic"
	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The tests here hold the hand-written decoder to go-criu: its magic table,
// its message descriptors, and what proto.Unmarshal of its generated types
// accepts and reads.

func TestMagicTable(t *testing.T) {
	theirs := magic.LoadMagic()
	known := map[string]bool{}
	for _, m := range magicTable {
		if known[m.name] {
			t.Errorf("%s listed twice", m.name)
		}
		known[m.name] = true
		if v, ok := theirs.ByName[m.name]; !ok || v != uint64(m.value) {
			t.Errorf("%s: 0x%08x, go-criu has 0x%08x (known: %v)", m.name, m.value, v, ok)
		}
		if name, ok := magicName(m.value); !ok || name != m.name {
			t.Errorf("magicName(0x%08x) = %q, want %s", m.value, name, m.name)
		}
	}
	for name, v := range theirs.ByName {
		switch name {
		case "IMG_COMMON", "IMG_SERVICE": // the headers, not an image's magic
			continue
		case "CRTOOLS_IMAGES_V1_1": // inventory's img_version 2, not a magic
			if _, ok := magicName(uint32(v)); ok {
				t.Errorf("%s is a magic", name)
			}
			continue
		}
		if !known[name] {
			t.Errorf("go-criu's magic %s (0x%08x) is not in magicTable", name, v)
		}
	}
	if theirs.ByName["IMG_COMMON"] != imgCommon || theirs.ByName["IMG_SERVICE"] != imgService {
		t.Errorf("imgCommon 0x%08x, imgService 0x%08x: go-criu has 0x%08x, 0x%08x",
			imgCommon, imgService, theirs.ByName["IMG_COMMON"], theirs.ByName["IMG_SERVICE"])
	}
}

// schemaRoots pairs each message the package decodes with go-criu's type.
var schemaRoots = []struct {
	m  *message
	pb proto.Message
}{
	{&msgInventoryEntry, &inventory.InventoryEntry{}},
	{&msgPstreeEntry, &pstree.PstreeEntry{}},
	{&msgCoreEntry, &criu_core.CoreEntry{}},
	{&msgTaskKobjIdsEntry, &criu_core.TaskKobjIdsEntry{}},
	{&msgMmEntry, &mm.MmEntry{}},
	{&msgFsEntry, &fsimg.FsEntry{}},
	{&msgPagemapHead, &pagemap.PagemapHead{}},
	{&msgPagemapEntry, &pagemap.PagemapEntry{}},
	{&msgStatsEntry, &stats.StatsEntry{}},
	{&msgPipeDataEntry, &pipe_data.PipeDataEntry{}},
	{&msgSkPacketEntry, &sk_packet.SkPacketEntry{}},
	{&msgTcpStreamEntry, &tcp_stream.TcpStreamEntry{}},
	{&msgBpfmapDataEntry, &bpfmap_data.BpfmapDataEntry{}},
	{&msgIpcSemEntry, &ipc_sem.IpcSemEntry{}},
	{&msgIpcShmEntry, &ipc_shm.IpcShmEntry{}},
	{&msgIpcMsgEntry, &ipc_msg.IpcMsgEntry{}},
	{&msgIpcMsg, &ipc_msg.IpcMsg{}},
	{&msgGhostFileEntry, &ghost_file.GhostFileEntry{}},
	{&msgGhostChunkEntry, &ghost_file.GhostChunkEntry{}},
}

func wantKind(k protoreflect.Kind) kind {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return kVarint
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return kFixed32
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return kFixed64
	case protoreflect.StringKind, protoreflect.BytesKind:
		return kBytes
	case protoreflect.MessageKind:
		return kMessage
	}
	return 0 // groups: CRIU has none, and check does not know them
}

// TestSchema checks the schema table against go-criu's descriptors: the same
// messages and fields, numbers, names, kinds, cardinalities and required masks.
func TestSchema(t *testing.T) {
	done := map[*message]bool{}
	var compare func(m *message, md protoreflect.MessageDescriptor)
	compare = func(m *message, md protoreflect.MessageDescriptor) {
		if done[m] {
			return
		}
		done[m] = true
		if m.name != string(md.Name()) {
			t.Errorf("message %s: go-criu has %s", m.name, md.Name())
			return
		}
		if md.ExtensionRanges().Len() > 0 || md.Oneofs().Len() > 0 {
			t.Errorf("%s has extensions or oneofs, which check does not know", m.name)
		}
		var req uint64
		singular := 0
		fds := md.Fields()
		for i := range fds.Len() {
			fd := fds.Get(i)
			num := int(fd.Number())
			if num >= 64 || num >= len(m.fields) || m.fields[num].kind == 0 {
				t.Errorf("%s: field %d (%s) missing", m.name, num, fd.Name())
				continue
			}
			f := m.fields[num]
			card := map[protoreflect.Cardinality]cardinality{
				protoreflect.Optional: optional, protoreflect.Required: required, protoreflect.Repeated: repeated,
			}[fd.Cardinality()]
			if f.name != string(fd.Name()) || f.kind != wantKind(fd.Kind()) || f.card != card || fd.IsMap() {
				t.Errorf("%s field %d: %+v, go-criu has %s %v %v", m.name, num, f, fd.Name(), fd.Kind(), fd.Cardinality())
			}
			if card == required {
				req |= 1 << num
			}
			if (f.msg != nil) != (fd.Message() != nil) {
				t.Errorf("%s.%s: message type %v, go-criu has %v", m.name, f.name, f.msg != nil, fd.Message() != nil)
				continue
			}
			if f.msg != nil {
				if card != repeated {
					singular++
				}
				compare(f.msg, fd.Message())
			}
		}
		known := 0
		for _, f := range m.fields {
			if f.kind != 0 {
				known++
			}
		}
		if known != fds.Len() {
			t.Errorf("%s: %d fields, go-criu has %d", m.name, known, fds.Len())
		}
		if m.required != req {
			t.Errorf("%s: required mask %#x, go-criu's is %#x", m.name, m.required, req)
		}
		if singular > maxSingular {
			t.Errorf("%s: %d singular message fields, more than maxSingular", m.name, singular)
		}
	}
	for _, r := range schemaRoots {
		compare(r.m, r.pb.ProtoReflect().Descriptor())
	}
	t.Logf("%d messages", len(done))
}

// A decoded is one message type as both decoders read it: check and the
// readers of entries.go, and proto.Unmarshal and go-criu's getters.
type decoded struct {
	name   string
	m      *message
	pb     func() proto.Message
	mine   func(b []byte) any
	theirs func(pb proto.Message) any
}

func payloadOf(magic string) func([]byte) any {
	return func(b []byte) any { return payloadSize(magic, b) }
}

var decodeds = []decoded{
	{"unknown", &msgUnknown, func() proto.Message { return &emptypb.Empty{} }, nil, nil},
	{"inventory", &msgInventoryEntry, func() proto.Message { return &inventory.InventoryEntry{} },
		func(b []byte) any { return inventoryVersion(b) },
		func(pb proto.Message) any { return pb.(*inventory.InventoryEntry).GetImgVersion() }},
	{"pstree", &msgPstreeEntry, func() proto.Message { return &pstree.PstreeEntry{} },
		func(b []byte) any { e := readPstree(b); return fmt.Sprint(e.pid, e.ppid, e.threads) },
		func(pb proto.Message) any {
			e := pb.(*pstree.PstreeEntry)
			return fmt.Sprint(e.GetPid(), e.GetPpid(), e.GetThreads())
		}},
	{"core", &msgCoreEntry, func() proto.Message { return &criu_core.CoreEntry{} },
		func(b []byte) any { st, ok := taskState(b); return fmt.Sprint(st, ok) },
		func(pb proto.Message) any {
			tc := pb.(*criu_core.CoreEntry).GetTc()
			return fmt.Sprint(tc.GetTaskState(), tc != nil)
		}},
	{"ids", &msgTaskKobjIdsEntry, func() proto.Message { return &criu_core.TaskKobjIdsEntry{} }, nil, nil},
	{"mm", &msgMmEntry, func() proto.Message { return &mm.MmEntry{} }, nil, nil},
	{"fs", &msgFsEntry, func() proto.Message { return &fsimg.FsEntry{} }, nil, nil},
	{"pagemap head", &msgPagemapHead, func() proto.Message { return &pagemap.PagemapHead{} },
		func(b []byte) any { return pagesID(b) },
		func(pb proto.Message) any { return pb.(*pagemap.PagemapHead).GetPagesId() }},
	{"pagemap", &msgPagemapEntry, func() proto.Message { return &pagemap.PagemapEntry{} },
		func(b []byte) any { return presentPages(b) },
		func(pb proto.Message) any {
			e := pb.(*pagemap.PagemapEntry)
			flags := e.GetFlags()
			if e.Flags == nil {
				flags = pePresent
				if e.GetInParent() {
					flags = peParent
				}
			}
			if flags&pePresent == 0 {
				return uint32(0)
			}
			return e.GetNrPages()
		}},
	{"stats", &msgStatsEntry, func() proto.Message { return &stats.StatsEntry{} },
		func(b []byte) any {
			d, dok := dumpStats(b)
			r, rok := restoreStats(b)
			return fmt.Sprintf("%+v %v %+v %v", d, dok, r, rok)
		},
		func(pb proto.Message) any {
			e := pb.(*stats.StatsEntry)
			var d *DumpStats
			var r *RestoreStats
			if x := e.GetDump(); x != nil {
				d = &DumpStats{x.GetFreezingTime(), x.GetFrozenTime(), x.GetMemdumpTime(), x.GetMemwriteTime(),
					x.GetPagesScanned(), x.GetPagesWritten()}
			}
			if x := e.GetRestore(); x != nil {
				r = &RestoreStats{x.GetForkingTime(), x.GetRestoreTime(), x.GetPagesRestored()}
			}
			return fmt.Sprintf("%+v %v %+v %v", d, d != nil, r, r != nil)
		}},
	{"pipes-data", &msgPipeDataEntry, func() proto.Message { return &pipe_data.PipeDataEntry{} },
		payloadOf("PIPES_DATA"),
		func(pb proto.Message) any { return uint64(pb.(*pipe_data.PipeDataEntry).GetBytes()) }},
	{"sk-queues", &msgSkPacketEntry, func() proto.Message { return &sk_packet.SkPacketEntry{} },
		payloadOf("SK_QUEUES"),
		func(pb proto.Message) any { return uint64(pb.(*sk_packet.SkPacketEntry).GetLength()) }},
	{"tcp-stream", &msgTcpStreamEntry, func() proto.Message { return &tcp_stream.TcpStreamEntry{} },
		payloadOf("TCP_STREAM"),
		func(pb proto.Message) any {
			e := pb.(*tcp_stream.TcpStreamEntry)
			return uint64(e.GetInqLen()) + uint64(e.GetOutqLen())
		}},
	{"bpfmap-data", &msgBpfmapDataEntry, func() proto.Message { return &bpfmap_data.BpfmapDataEntry{} },
		payloadOf("BPFMAP_DATA"),
		func(pb proto.Message) any {
			e := pb.(*bpfmap_data.BpfmapDataEntry)
			return uint64(e.GetKeysBytes()) + uint64(e.GetValuesBytes())
		}},
	{"ipcns-sem", &msgIpcSemEntry, func() proto.Message { return &ipc_sem.IpcSemEntry{} },
		payloadOf("IPCNS_SEM"),
		func(pb proto.Message) any { return roundUp(2*uint64(pb.(*ipc_sem.IpcSemEntry).GetNsems()), 8) }},
	{"ipcns-shm", &msgIpcShmEntry, func() proto.Message { return &ipc_shm.IpcShmEntry{} },
		payloadOf("IPCNS_SHM"),
		func(pb proto.Message) any {
			e := pb.(*ipc_shm.IpcShmEntry)
			if e.GetInPagemaps() {
				return uint64(0)
			}
			return roundUp(e.GetSize(), 4)
		}},
	{"ipcns-msg", &msgIpcMsgEntry, func() proto.Message { return &ipc_msg.IpcMsgEntry{} },
		func(b []byte) any { return msgQueueLen(b) },
		func(pb proto.Message) any { return pb.(*ipc_msg.IpcMsgEntry).GetQnum() }},
	{"ipc msg", &msgIpcMsg, func() proto.Message { return &ipc_msg.IpcMsg{} },
		func(b []byte) any { return msgTextLen(b) },
		func(pb proto.Message) any { return roundUp(uint64(pb.(*ipc_msg.IpcMsg).GetMsize()), 8) }},
	{"ghost-file", &msgGhostFileEntry, func() proto.Message { return &ghost_file.GhostFileEntry{} },
		func(b []byte) any { return ghostChunked(b) },
		func(pb proto.Message) any { return pb.(*ghost_file.GhostFileEntry).GetChunks() }},
	{"ghost chunk", &msgGhostChunkEntry, func() proto.Message { return &ghost_file.GhostChunkEntry{} },
		func(b []byte) any { return ghostChunkLen(b) },
		func(pb proto.Message) any { return pb.(*ghost_file.GhostChunkEntry).GetLen() }},
}

// differ checks that check accepts b as d exactly when proto.Unmarshal does
// (with and without required fields), and that both then read the same.
func differ(t *testing.T, d decoded, b []byte) {
	t.Helper()
	pb := d.pb()
	errTheirs := proto.Unmarshal(b, pb)
	errMine := check(d.m, b, true)
	if (errMine == nil) != (errTheirs == nil) {
		t.Fatalf("%s %x: check: %v, proto.Unmarshal: %v", d.name, b, errMine, errTheirs)
	}
	errPartial := proto.UnmarshalOptions{AllowPartial: true}.Unmarshal(b, d.pb())
	if errShape := check(d.m, b, false); (errShape == nil) != (errPartial == nil) {
		t.Fatalf("%s %x: check without required fields: %v, proto.Unmarshal with AllowPartial: %v",
			d.name, b, errShape, errPartial)
	}
	if errMine == nil && d.mine != nil {
		if mine, theirs := d.mine(b), d.theirs(pb); !reflect.DeepEqual(mine, theirs) {
			t.Fatalf("%s %x: read %v, go-criu reads %v", d.name, b, mine, theirs)
		}
	}
}

// differAll runs every decoded on b: entries of one type are usually
// malformed or incomplete as another, which must agree too.
func differAll(t *testing.T, b []byte) {
	t.Helper()
	for _, d := range decodeds {
		differ(t, d, b)
	}
}

// splitEntries returns the entries of an image file (after its one or two
// magics), up to the first that does not fit; raw payloads come out as
// garbage entries, which is fine for a differential test.
func splitEntries(b []byte) [][]byte {
	if len(b) >= 4 && (binary.LittleEndian.Uint32(b) == imgCommon || binary.LittleEndian.Uint32(b) == imgService) {
		b = b[4:]
	}
	if len(b) < 4 {
		return nil
	}
	b = b[4:]
	var entries [][]byte
	for len(b) >= 4 {
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			entries = append(entries, b[4:])
			break
		}
		entries = append(entries, b[4:4+n])
		b = b[4+n:]
	}
	return entries
}

// sampleEntries returns the entries of fake image dirs, with the extras
// (raw payload images), and the hand-made entries of handEntries.
func sampleEntries(t testing.TB) [][]byte {
	var entries [][]byte
	for _, p := range []criuimgtest.FakeProcess{fakeProc, {Pid: 1, Threads: 1, Pages: 1, Comm: "a-very-long-name-indeed"}} {
		dir := fakeDir(t, p)
		writeExtras(t, &criuimgtest.Writer{Dir: dir}, dir, 0)
		des, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			if strings.HasPrefix(de.Name(), "pages-") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, splitEntries(b)...)
		}
	}
	return append(entries, handEntries()...)
}

// handEntries are entries crit's encoder never writes: packed and unpacked
// repeated fields, merged messages, unknown fields, groups, wrong wire types.
func handEntries() [][]byte {
	var (
		v   = protowire.AppendVarint
		tag = protowire.AppendTag
	)
	field := func(b []byte, num protowire.Number, x uint64) []byte { return v(tag(b, num, protowire.VarintType), x) }
	bytesField := func(b []byte, num protowire.Number, p []byte) []byte {
		return protowire.AppendBytes(tag(b, num, protowire.BytesType), p)
	}
	fill := func(m proto.Message) []byte {
		criuimgtest.FillRequired(m.ProtoReflect())
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		return b
	}
	tc := fill(&criu_core.TaskCoreEntry{TaskState: proto.Uint32(taskDead)})
	var packedThreads []byte
	for _, tid := range []uint64{7, 300, 1 << 31} {
		packedThreads = v(packedThreads, tid)
	}
	group := tag(nil, 20, protowire.StartGroupType)
	group = field(group, 1, 5)
	group = tag(group, 21, protowire.StartGroupType)
	group = tag(group, 21, protowire.EndGroupType)
	group = tag(group, 20, protowire.EndGroupType)
	ipcDesc := fill(&ipc_desc.IpcDescEntry{})
	out := [][]byte{
		nil,
		{0},
		// pstree: packed threads, then one unpacked, and a pid given twice.
		field(field(bytesField(field(field(field(field(nil, 1, 9), 2, 0), 3, 1), 4, 1), 5, packedThreads), 5, 8), 1, 10),
		// core: tc in two parts, each incomplete, complete when merged.
		bytesField(bytesField(field(nil, 1, 1), 3, tc[:2]), 3, tc[2:]),
		// core: tc with its required fields split across the two parts, then a bad third part.
		bytesField(bytesField(bytesField(field(nil, 1, 1), 3, tc[:2]), 3, tc[2:]), 3, []byte{0x80}),
		// core: tc whose task_state comes again as fixed32, an unknown field.
		bytesField(field(nil, 1, 1), 3, protowire.AppendFixed32(tag(slices.Clone(tc), 1, protowire.Fixed32Type), 9)),
		// core: tc with only task_state as fixed32: its required task_state is missing.
		bytesField(field(nil, 1, 1), 3, protowire.AppendFixed32(tag(nil, 1, protowire.Fixed32Type), 9)),
		// pagemap entry: flags as fixed64 (unknown), so it is an old-style entry.
		protowire.AppendFixed64(tag(field(field(nil, 1, 4096), 2, 3), 4, protowire.Fixed64Type), 4),
		// pagemap entry: in_parent, and flags twice.
		field(field(field(field(field(nil, 1, 4096), 2, 3), 3, 1), 4, 0), 4, pePresent),
		// stats: dump in two parts.
		bytesField(bytesField(nil, 1, fill(&stats.DumpStatsEntry{FreezingTime: proto.Uint32(3)})), 1, field(nil, 7, 99)),
		// an unknown group, nested.
		append(field(nil, 1, 1), group...),
		// a group ended by another number.
		append(tag(nil, 20, protowire.StartGroupType), tag(nil, 19, protowire.EndGroupType)...),
		// an end of group alone.
		tag(nil, 20, protowire.EndGroupType),
		// field numbers: the largest, one past it, and one past int32 inside a group.
		field(nil, 1<<29-1, 1),
		v(nil, uint64(1<<29)<<3),
		append(tag(nil, 20, protowire.StartGroupType), v(nil, uint64(1<<31)<<3)...),
		append(tag(nil, 20, protowire.StartGroupType), append(v(nil, uint64(1<<30)<<3), tag(nil, 20, protowire.EndGroupType)...)...),
		// wire types 6 and 7.
		v(nil, 1<<3|6), v(nil, 1<<3|7),
		// varints: 10 bytes ending in 1, in 2, 11 bytes, non-minimal.
		append(tag(nil, 1, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		append(tag(nil, 1, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
		append(tag(nil, 1, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80, 0x00),
		append(tag(nil, 1, protowire.VarintType), 0x81, 0x80, 0x80, 0x00),
		// a length that runs past the end, a huge one.
		append(tag(nil, 2, protowire.BytesType), 5, 1, 2),
		append(tag(nil, 2, protowire.BytesType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		// packed repeated fixed and varint values, well and badly sized.
		bytesField(nil, 13, []byte{1, 2, 3}),
		bytesField(nil, 13, []byte{0x80}),
		// ipc entries.
		field(field(bytesField(nil, 1, ipcDesc), 2, 4), 3, 2),
		field(field(field(bytesField(nil, 1, ipcDesc), 2, 1<<40), 3, 1), 4, 0),
		field(field(nil, 1, 1), 2, 3),
		// ghost file with chunks; a chunk.
		field(field(field(field(nil, 1, 0), 2, 0), 3, 0o100644), 9, 1),
		field(field(nil, 1, 1<<40), 2, 0),
	}
	// every message with all its required fields at their defaults.
	for _, r := range schemaRoots {
		out = append(out, fill(proto.Clone(r.pb)))
	}
	return out
}

// mutate derives variants of b: cuts, flipped and replaced bytes, splices.
func mutate(rng *rand.Rand, b []byte, other []byte) []byte {
	c := slices.Clone(b)
	switch rng.Intn(6) {
	case 0:
		if len(c) > 0 {
			c = c[:rng.Intn(len(c))]
		}
	case 1:
		if len(c) > 0 {
			c[rng.Intn(len(c))] ^= byte(1 << rng.Intn(8))
		}
	case 2:
		if len(c) > 0 {
			c[rng.Intn(len(c))] = []byte{0, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1b, 0x1c}[rng.Intn(8)]
		}
	case 3:
		i := rng.Intn(len(c) + 1)
		c = slices.Insert(c, i, other[:rng.Intn(len(other)+1)]...)
	case 4:
		if len(c) > 1 {
			i := rng.Intn(len(c))
			c = slices.Delete(c, i, i+1+rng.Intn(len(c)-i))
		}
	case 5:
		c = append(c, other...)
	}
	return c
}

// TestDecodeMatchesGoCriu runs the differential on every entry of fake
// images, hand-made entries, their mutations, and the entries in the
// FuzzValidate seed corpus.
func TestDecodeMatchesGoCriu(t *testing.T) {
	entries := sampleEntries(t)
	for _, b := range entries {
		differAll(t, b)
	}
	corpus, err := filepath.Glob("testdata/fuzz/FuzzValidate/*")
	if err != nil || len(corpus) == 0 {
		t.Fatalf("FuzzValidate corpus: %v %v", corpus, err)
	}
	for _, path := range corpus {
		data := corpusBytes(t, path)
		differAll(t, data)
		for _, b := range splitEntries(data) {
			differAll(t, b)
		}
	}
	rng := rand.New(rand.NewSource(1))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		b := entries[rng.Intn(len(entries))]
		for range 1 + rng.Intn(3) {
			b = mutate(rng, b, entries[rng.Intn(len(entries))])
		}
		differAll(t, b)
	}
}

// corpusBytes reads the []byte value of a "go test fuzz v1" file.
func corpusBytes(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if q, ok := strings.CutPrefix(line, "[]byte("); ok {
			s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return []byte(s)
		}
	}
	t.Fatalf("%s: no []byte value", path)
	return nil
}

// FuzzDecode runs the differential on the fuzzer's entries, as the message
// type it picks.
func FuzzDecode(f *testing.F) {
	for i, b := range sampleEntries(f) {
		f.Add(uint8(i%len(decodeds)), b)
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		differ(t, decodeds[int(which)%len(decodeds)], b)
	})
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		m    *message
		b    string // hex
		want string
	}{
		{&msgPstreeEntry, "08", "field 1: truncated"},
		{&msgPstreeEntry, "08ffffffffffffffffff02", "field 1: varint overflows 64 bits"},
		{&msgPstreeEntry, "0801", "required field pstree_entry.ppid missing"},
		{&msgPstreeEntry, "0f", "field 1: invalid wire type 7"},
		{&msgPstreeEntry, "0c", "field 1: end of a group that was not started"},
		{&msgPstreeEntry, "2a0180", "field 5: packed varints: truncated"},
		{&msgUnknown, "8080808010", "field number 536870912 out of range"},
		{&msgUnknown, "1205ff", "field 2: length 5 past the end (1 bytes left)"},
		{&msgCoreEntry, "08011a00", "tc: required field task_core_entry.task_state missing"},
		{&msgStatsEntry, "0a00", "dump: required field dump_stats_entry.freezing_time missing"},
	} {
		b, _ := hex.DecodeString(tc.b)
		err := check(tc.m, b, true)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s %s: %v, want %q", tc.m.name, tc.b, err, tc.want)
		}
	}
	// Groups nest as deeply as protobuf allows, and no deeper.
	nested := func(n int) []byte {
		return append(bytes.Repeat([]byte{0xa3, 0x01}, n), bytes.Repeat([]byte{0xa4, 0x01}, n)...)
	}
	differAll(t, nested(maxGroupDepth+1))
	differAll(t, nested(maxGroupDepth+2))
	if err := check(&msgUnknown, nested(maxGroupDepth+2), false); err == nil || !strings.Contains(err.Error(), "nested too deeply") {
		t.Errorf("deep groups: %v", err)
	}
}
