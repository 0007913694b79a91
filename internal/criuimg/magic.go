package criuimg

// Magic numbers of CRIU images (CRIU's criu/include/magic.h; images v1.1):
// every image but inventory.img starts with imgCommon, and the service files
// stats-* and irmap-cache with imgService, then the image's own magic.
const (
	imgCommon  = 0x54564319
	imgService = 0x55105940
)

// magicTable lists the magic of every kind of image CRIU writes with
// protobuf entries, by value (TestMagicTable checks it against go-criu's).
// Raw images (pages, tarballs, iptables dumps...) have none.
var magicTable = [...]struct {
	name  string
	value uint32
}{
	{"TIMENS", 0x43114433},
	{"EVENTPOLL_TFD", 0x44433746},
	{"EVENTFD_FILE", 0x44523722},
	{"EVENTPOLL_FILE", 0x45023858},
	{"IPCNS_SHM", 0x46283044},
	{"INOTIFY_FILE", 0x48424431},
	{"MEMFD_INODE", 0x48453499},
	{"AUTOFS", 0x49353943},
	{"PSTREE", 0x50273030},
	{"REG_FILES", 0x50363636},
	{"TIMERFD", 0x50493712},
	{"FS", 0x51403912},
	{"TCP_STREAM", 0x51465506},
	{"GHOST_FILE", 0x52583605},
	{"POSIX_TIMERS", 0x52603957},
	{"IPC_VAR", 0x53115007},
	{"CREDS", 0x54023547},
	{"VMAS", 0x54123737},
	{"FILE_LOCKS", 0x54323616},
	{"UNIXSK", 0x54373943},
	{"IDS", 0x54432030},
	{"UTSNS", 0x54473203},
	{"INOTIFY_WD", 0x54562009},
	{"CORE", 0x55053847},
	{"FANOTIFY_FILE", 0x55096122},
	{"SIGACT", 0x55344201},
	{"IPCNS_MSG", 0x55453737},
	{"USERNS", 0x55474906},
	{"MNTS", 0x55563928},
	{"NETNS", 0x55933752},
	{"PAGEMAP", 0x56084025},
	{"FDINFO", 0x56213732},
	{"SK_QUEUES", 0x56264026},
	{"FILES", 0x56303138},
	{"INETSK", 0x56443851},
	{"PIPES_DATA", 0x56453709},
	{"FANOTIFY_MARK", 0x56506035},
	{"PIPES", 0x56513555},
	{"IRMAP_CACHE", 0x57004059},
	{"KDAT", 0x57023458},
	{"STATS", 0x57093306},
	{"RLIMIT", 0x57113925},
	{"TUNFILE", 0x57143751},
	{"SIGNALFD", 0x57323820},
	{"NETDEV", 0x57373951},
	{"ITIMERS", 0x57464056},
	{"MM", 0x57492820},
	{"BPFMAP_FILE", 0x57506142},
	{"NETLINK_SK", 0x58005614},
	{"INVENTORY", 0x58313116},
	{"FIFO", 0x58364939},
	{"REMAP_FPATH", 0x59133954},
	{"EXT_FILES", 0x59255641},
	{"SIGNAL", 0x59255647},
	{"FIFO_DATA", 0x59333054},
	{"CGROUP", 0x59383330},
	{"TTY_DATA", 0x59413026},
	{"APPARMOR", 0x59423047},
	{"TTY_FILES", 0x59433025},
	{"TTY_INFO", 0x59453036},
	{"IPCNS_SEM", 0x59573019},
	{"PACKETSK", 0x60454618},
	{"PIDNS", 0x61157326},
	{"NS_FILES", 0x61394011},
	{"CPUINFO", 0x61404013},
	{"BPFMAP_DATA", 0x64324033},
	{"SECCOMP", 0x64413049},
	{"BINFMT_MISC", 0x67343323},
}

// magicName returns the name of a known image magic.
func magicName(v uint32) (string, bool) {
	for _, m := range magicTable {
		if m.value == v {
			return m.name, true
		}
	}
	return "", false
}
