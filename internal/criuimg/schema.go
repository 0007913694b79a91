package criuimg

// The protobuf messages that Validate and the stats readers decode, and every
// message they contain: CRIU's images/*.proto (all proto2), as field numbers,
// wire kinds and cardinalities. TestSchema checks this table against go-criu's
// generated descriptors, field by field.

// kind is how a field is encoded on the wire.
type kind uint8

const (
	kVarint  kind = 1 + iota // int32, int64, uint32, uint64, sint32, sint64, bool, enum
	kFixed32                 // fixed32, sfixed32, float
	kFixed64                 // fixed64, sfixed64, double
	kBytes                   // string, bytes
	kMessage                 // a nested message
)

func (k kind) wire() wireType {
	switch k {
	case kVarint:
		return wireVarint
	case kFixed32:
		return wireFixed32
	case kFixed64:
		return wireFixed64
	}
	return wireBytes
}

type cardinality uint8

const (
	optional cardinality = iota
	required
	repeated
)

type field struct {
	name string
	kind kind
	card cardinality
	msg  *message // for kMessage
}

// message is a protobuf message type: its fields indexed by field number
// (all below 64), and the bit mask of the numbers of its required fields.
type message struct {
	name     string
	required uint64
	fields   []field
}

// msgUnknown has no known fields: checking an entry against it checks only
// the wire format.
var msgUnknown = message{name: "unknown"}

var msgAioRingEntry = message{name: "aio_ring_entry", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"id", kVarint, required, nil},
	2: {"nr_req", kVarint, required, nil},
	3: {"ring_len", kVarint, required, nil},
}}

var msgBpfmapDataEntry = message{name: "bpfmap_data_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"map_id", kVarint, required, nil},
	2: {"keys_bytes", kVarint, required, nil},
	3: {"values_bytes", kVarint, required, nil},
	4: {"count", kVarint, required, nil},
}}

var msgCoreEntry = message{name: "core_entry", required: 1 << 1, fields: []field{
	1:  {"mtype", kVarint, required, nil},
	2:  {"thread_info", kMessage, optional, &msgThreadInfoX86},
	3:  {"tc", kMessage, optional, &msgTaskCoreEntry},
	4:  {"ids", kMessage, optional, &msgTaskKobjIdsEntry},
	5:  {"thread_core", kMessage, optional, &msgThreadCoreEntry},
	6:  {"ti_arm", kMessage, optional, &msgThreadInfoArm},
	8:  {"ti_aarch64", kMessage, optional, &msgThreadInfoAarch64},
	9:  {"ti_ppc64", kMessage, optional, &msgThreadInfoPpc64},
	10: {"ti_s390", kMessage, optional, &msgThreadInfoS390},
	11: {"ti_mips", kMessage, optional, &msgThreadInfoMips},
}}

var msgCredsEntry = message{name: "creds_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<13, fields: []field{
	1:  {"uid", kVarint, required, nil},
	2:  {"gid", kVarint, required, nil},
	3:  {"euid", kVarint, required, nil},
	4:  {"egid", kVarint, required, nil},
	5:  {"suid", kVarint, required, nil},
	6:  {"sgid", kVarint, required, nil},
	7:  {"fsuid", kVarint, required, nil},
	8:  {"fsgid", kVarint, required, nil},
	9:  {"cap_inh", kVarint, repeated, nil},
	10: {"cap_prm", kVarint, repeated, nil},
	11: {"cap_eff", kVarint, repeated, nil},
	12: {"cap_bnd", kVarint, repeated, nil},
	13: {"secbits", kVarint, required, nil},
	14: {"groups", kVarint, repeated, nil},
	15: {"lsm_profile", kBytes, optional, nil},
	16: {"lsm_sockcreate", kBytes, optional, nil},
	17: {"apparmor_data", kBytes, optional, nil},
}}

var msgDumpStatsEntry = message{name: "dump_stats_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<9, fields: []field{
	1:  {"freezing_time", kVarint, required, nil},
	2:  {"frozen_time", kVarint, required, nil},
	3:  {"memdump_time", kVarint, required, nil},
	4:  {"memwrite_time", kVarint, required, nil},
	5:  {"pages_scanned", kVarint, required, nil},
	6:  {"pages_skipped_parent", kVarint, required, nil},
	7:  {"pages_written", kVarint, required, nil},
	8:  {"irmap_resolve", kVarint, optional, nil},
	9:  {"pages_lazy", kVarint, required, nil},
	10: {"page_pipes", kVarint, optional, nil},
	11: {"page_pipe_bufs", kVarint, optional, nil},
	12: {"shpages_scanned", kVarint, optional, nil},
	13: {"shpages_skipped_parent", kVarint, optional, nil},
	14: {"shpages_written", kVarint, optional, nil},
}}

var msgFsEntry = message{name: "fs_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"cwd_id", kVarint, required, nil},
	2: {"root_id", kVarint, required, nil},
	3: {"umask", kVarint, optional, nil},
}}

var msgGhostChunkEntry = message{name: "ghost_chunk_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"len", kVarint, required, nil},
	2: {"off", kVarint, required, nil},
}}

var msgGhostFileEntry = message{name: "ghost_file_entry", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1:  {"uid", kVarint, required, nil},
	2:  {"gid", kVarint, required, nil},
	3:  {"mode", kVarint, required, nil},
	4:  {"dev", kVarint, optional, nil},
	5:  {"ino", kVarint, optional, nil},
	6:  {"rdev", kVarint, optional, nil},
	7:  {"atim", kMessage, optional, &msgTimeval},
	8:  {"mtim", kMessage, optional, &msgTimeval},
	9:  {"chunks", kVarint, optional, nil},
	10: {"size", kVarint, optional, nil},
	11: {"symlnk_target", kBytes, optional, nil},
}}

var msgInventoryEntry = message{name: "inventory_entry", required: 1 << 1, fields: []field{
	1:  {"img_version", kVarint, required, nil},
	2:  {"fdinfo_per_id", kVarint, optional, nil},
	3:  {"root_ids", kMessage, optional, &msgTaskKobjIdsEntry},
	4:  {"ns_per_id", kVarint, optional, nil},
	5:  {"root_cg_set", kVarint, optional, nil},
	6:  {"lsmtype", kVarint, optional, nil},
	8:  {"dump_uptime", kVarint, optional, nil},
	9:  {"pre_dump_mode", kVarint, optional, nil},
	10: {"tcp_close", kVarint, optional, nil},
	11: {"network_lock_method", kVarint, optional, nil},
}}

var msgIpcDescEntry = message{name: "ipc_desc_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7, fields: []field{
	1: {"key", kVarint, required, nil},
	2: {"uid", kVarint, required, nil},
	3: {"gid", kVarint, required, nil},
	4: {"cuid", kVarint, required, nil},
	5: {"cgid", kVarint, required, nil},
	6: {"mode", kVarint, required, nil},
	7: {"id", kVarint, required, nil},
}}

var msgIpcMsg = message{name: "ipc_msg", required: 1<<1 | 1<<2, fields: []field{
	1: {"mtype", kVarint, required, nil},
	2: {"msize", kVarint, required, nil},
}}

var msgIpcMsgEntry = message{name: "ipc_msg_entry", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"desc", kMessage, required, &msgIpcDescEntry},
	2: {"qbytes", kVarint, required, nil},
	3: {"qnum", kVarint, required, nil},
}}

var msgIpcSemEntry = message{name: "ipc_sem_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"desc", kMessage, required, &msgIpcDescEntry},
	2: {"nsems", kVarint, required, nil},
}}

var msgIpcShmEntry = message{name: "ipc_shm_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"desc", kMessage, required, &msgIpcDescEntry},
	2: {"size", kVarint, required, nil},
	3: {"in_pagemaps", kVarint, optional, nil},
	4: {"hugetlb_flag", kVarint, optional, nil},
}}

var msgItimerEntry = message{name: "itimer_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"isec", kVarint, required, nil},
	2: {"iusec", kVarint, required, nil},
	3: {"vsec", kVarint, required, nil},
	4: {"vusec", kVarint, required, nil},
}}

var msgMmEntry = message{name: "mm_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12, fields: []field{
	1:  {"mm_start_code", kVarint, required, nil},
	2:  {"mm_end_code", kVarint, required, nil},
	3:  {"mm_start_data", kVarint, required, nil},
	4:  {"mm_end_data", kVarint, required, nil},
	5:  {"mm_start_stack", kVarint, required, nil},
	6:  {"mm_start_brk", kVarint, required, nil},
	7:  {"mm_brk", kVarint, required, nil},
	8:  {"mm_arg_start", kVarint, required, nil},
	9:  {"mm_arg_end", kVarint, required, nil},
	10: {"mm_env_start", kVarint, required, nil},
	11: {"mm_env_end", kVarint, required, nil},
	12: {"exe_file_id", kVarint, required, nil},
	13: {"mm_saved_auxv", kVarint, repeated, nil},
	14: {"vmas", kMessage, repeated, &msgVmaEntry},
	15: {"dumpable", kVarint, optional, nil},
	16: {"aios", kMessage, repeated, &msgAioRingEntry},
	17: {"thp_disabled", kVarint, optional, nil},
}}

var msgPagemapEntry = message{name: "pagemap_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"vaddr", kVarint, required, nil},
	2: {"nr_pages", kVarint, required, nil},
	3: {"in_parent", kVarint, optional, nil},
	4: {"flags", kVarint, optional, nil},
}}

var msgPagemapHead = message{name: "pagemap_head", required: 1 << 1, fields: []field{
	1: {"pages_id", kVarint, required, nil},
}}

var msgPipeDataEntry = message{name: "pipe_data_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"pipe_id", kVarint, required, nil},
	2: {"bytes", kVarint, required, nil},
	3: {"size", kVarint, optional, nil},
}}

var msgPosixTimerEntry = message{name: "posix_timer_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10, fields: []field{
	1:  {"it_id", kVarint, required, nil},
	2:  {"clock_id", kVarint, required, nil},
	3:  {"si_signo", kVarint, required, nil},
	4:  {"it_sigev_notify", kVarint, required, nil},
	5:  {"sival_ptr", kVarint, required, nil},
	6:  {"overrun", kVarint, required, nil},
	7:  {"isec", kVarint, required, nil},
	8:  {"insec", kVarint, required, nil},
	9:  {"vsec", kVarint, required, nil},
	10: {"vnsec", kVarint, required, nil},
	11: {"notify_thread_id", kVarint, optional, nil},
}}

var msgPstreeEntry = message{name: "pstree_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"pid", kVarint, required, nil},
	2: {"ppid", kVarint, required, nil},
	3: {"pgid", kVarint, required, nil},
	4: {"sid", kVarint, required, nil},
	5: {"threads", kVarint, repeated, nil},
}}

var msgRestoreStatsEntry = message{name: "restore_stats_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"pages_compared", kVarint, required, nil},
	2: {"pages_skipped_cow", kVarint, required, nil},
	3: {"forking_time", kVarint, required, nil},
	4: {"restore_time", kVarint, required, nil},
	5: {"pages_restored", kVarint, optional, nil},
}}

var msgRlimitEntry = message{name: "rlimit_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"cur", kVarint, required, nil},
	2: {"max", kVarint, required, nil},
}}

var msgRseqEntry = message{name: "rseq_entry", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"rseq_abi_pointer", kVarint, required, nil},
	2: {"rseq_abi_size", kVarint, required, nil},
	3: {"signature", kVarint, required, nil},
	4: {"rseq_cs_pointer", kVarint, optional, nil},
}}

var msgSaEntry = message{name: "sa_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"sigaction", kVarint, required, nil},
	2: {"flags", kVarint, required, nil},
	3: {"restorer", kVarint, required, nil},
	4: {"mask", kVarint, required, nil},
	5: {"compat_sigaction", kVarint, optional, nil},
	6: {"mask_extended", kVarint, optional, nil},
}}

var msgScmEntry = message{name: "scm_entry", required: 1 << 1, fields: []field{
	1: {"type", kVarint, required, nil},
	2: {"rights", kVarint, repeated, nil},
}}

var msgSiginfoEntry = message{name: "siginfo_entry", required: 1 << 1, fields: []field{
	1: {"siginfo", kBytes, required, nil},
}}

var msgSignalQueueEntry = message{name: "signal_queue_entry", required: 0, fields: []field{
	1: {"signals", kMessage, repeated, &msgSiginfoEntry},
}}

var msgSkPacketEntry = message{name: "sk_packet_entry", required: 1<<1 | 1<<2, fields: []field{
	1: {"id_for", kVarint, required, nil},
	2: {"length", kVarint, required, nil},
	4: {"scm", kMessage, repeated, &msgScmEntry},
}}

var msgStatsEntry = message{name: "stats_entry", required: 0, fields: []field{
	1: {"dump", kMessage, optional, &msgDumpStatsEntry},
	2: {"restore", kMessage, optional, &msgRestoreStatsEntry},
}}

var msgTaskCoreEntry = message{name: "task_core_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6, fields: []field{
	1:  {"task_state", kVarint, required, nil},
	2:  {"exit_code", kVarint, required, nil},
	3:  {"personality", kVarint, required, nil},
	4:  {"flags", kVarint, required, nil},
	5:  {"blk_sigset", kVarint, required, nil},
	6:  {"comm", kBytes, required, nil},
	7:  {"timers", kMessage, optional, &msgTaskTimersEntry},
	8:  {"rlimits", kMessage, optional, &msgTaskRlimitsEntry},
	9:  {"cg_set", kVarint, optional, nil},
	10: {"signals_s", kMessage, optional, &msgSignalQueueEntry},
	11: {"old_seccomp_mode", kVarint, optional, nil},
	12: {"old_seccomp_filter", kVarint, optional, nil},
	13: {"loginuid", kVarint, optional, nil},
	14: {"oom_score_adj", kVarint, optional, nil},
	15: {"sigactions", kMessage, repeated, &msgSaEntry},
	18: {"child_subreaper", kVarint, optional, nil},
	20: {"blk_sigset_extended", kVarint, optional, nil},
	21: {"stop_signo", kVarint, optional, nil},
}}

var msgTaskKobjIdsEntry = message{name: "task_kobj_ids_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1:  {"vm_id", kVarint, required, nil},
	2:  {"files_id", kVarint, required, nil},
	3:  {"fs_id", kVarint, required, nil},
	4:  {"sighand_id", kVarint, required, nil},
	5:  {"pid_ns_id", kVarint, optional, nil},
	6:  {"net_ns_id", kVarint, optional, nil},
	7:  {"ipc_ns_id", kVarint, optional, nil},
	8:  {"uts_ns_id", kVarint, optional, nil},
	9:  {"mnt_ns_id", kVarint, optional, nil},
	10: {"user_ns_id", kVarint, optional, nil},
	11: {"cgroup_ns_id", kVarint, optional, nil},
	12: {"time_ns_id", kVarint, optional, nil},
}}

var msgTaskRlimitsEntry = message{name: "task_rlimits_entry", required: 0, fields: []field{
	1: {"rlimits", kMessage, repeated, &msgRlimitEntry},
}}

var msgTaskTimersEntry = message{name: "task_timers_entry", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"real", kMessage, required, &msgItimerEntry},
	2: {"virt", kMessage, required, &msgItimerEntry},
	3: {"prof", kMessage, required, &msgItimerEntry},
	4: {"posix", kMessage, repeated, &msgPosixTimerEntry},
}}

var msgTcpStreamEntry = message{name: "tcp_stream_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7, fields: []field{
	1:  {"inq_len", kVarint, required, nil},
	2:  {"inq_seq", kVarint, required, nil},
	3:  {"outq_len", kVarint, required, nil},
	4:  {"outq_seq", kVarint, required, nil},
	5:  {"opt_mask", kVarint, required, nil},
	6:  {"snd_wscale", kVarint, required, nil},
	7:  {"mss_clamp", kVarint, required, nil},
	8:  {"rcv_wscale", kVarint, optional, nil},
	9:  {"timestamp", kVarint, optional, nil},
	10: {"cork", kVarint, optional, nil},
	11: {"nodelay", kVarint, optional, nil},
	12: {"unsq_len", kVarint, optional, nil},
	13: {"snd_wl1", kVarint, optional, nil},
	14: {"snd_wnd", kVarint, optional, nil},
	15: {"max_window", kVarint, optional, nil},
	16: {"rcv_wnd", kVarint, optional, nil},
	17: {"rcv_wup", kVarint, optional, nil},
}}

var msgThreadCoreEntry = message{name: "thread_core_entry", required: 1<<1 | 1<<2, fields: []field{
	1:  {"futex_rla", kVarint, required, nil},
	2:  {"futex_rla_len", kVarint, required, nil},
	3:  {"sched_nice", kVarint, optional, nil},
	4:  {"sched_policy", kVarint, optional, nil},
	5:  {"sched_prio", kVarint, optional, nil},
	6:  {"blk_sigset", kVarint, optional, nil},
	7:  {"sas", kMessage, optional, &msgThreadSasEntry},
	8:  {"pdeath_sig", kVarint, optional, nil},
	9:  {"signals_p", kMessage, optional, &msgSignalQueueEntry},
	10: {"creds", kMessage, optional, &msgCredsEntry},
	11: {"seccomp_mode", kVarint, optional, nil},
	12: {"seccomp_filter", kVarint, optional, nil},
	13: {"comm", kBytes, optional, nil},
	14: {"blk_sigset_extended", kVarint, optional, nil},
	15: {"rseq_entry", kMessage, optional, &msgRseqEntry},
	16: {"cg_set", kVarint, optional, nil},
}}

var msgThreadInfoAarch64 = message{name: "thread_info_aarch64", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"clear_tid_addr", kVarint, required, nil},
	2: {"tls", kVarint, required, nil},
	3: {"gpregs", kMessage, required, &msgUserAarch64RegsEntry},
	4: {"fpsimd", kMessage, required, &msgUserAarch64FpsimdContextEntry},
}}

var msgThreadInfoArm = message{name: "thread_info_arm", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"clear_tid_addr", kVarint, required, nil},
	2: {"tls", kVarint, required, nil},
	3: {"gpregs", kMessage, required, &msgUserArmRegsEntry},
	4: {"fpstate", kMessage, required, &msgUserArmVfpstateEntry},
}}

var msgThreadInfoMips = message{name: "thread_info_mips", required: 1<<1 | 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"clear_tid_addr", kVarint, required, nil},
	2: {"tls", kVarint, required, nil},
	3: {"gpregs", kMessage, required, &msgUserMipsRegsEntry},
	4: {"fpregs", kMessage, required, &msgUserMipsFpregsEntry},
}}

var msgThreadInfoPpc64 = message{name: "thread_info_ppc64", required: 1<<1 | 1<<2, fields: []field{
	1: {"clear_tid_addr", kVarint, required, nil},
	2: {"gpregs", kMessage, required, &msgUserPpc64RegsEntry},
	3: {"fpstate", kMessage, optional, &msgUserPpc64FpstateEntry},
	4: {"vrstate", kMessage, optional, &msgUserPpc64VrstateEntry},
	5: {"vsxstate", kMessage, optional, &msgUserPpc64VsxstateEntry},
	6: {"tmstate", kMessage, optional, &msgUserPpc64TmRegsEntry},
}}

var msgThreadInfoS390 = message{name: "thread_info_s390", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"clear_tid_addr", kVarint, required, nil},
	2: {"gpregs", kMessage, required, &msgUserS390RegsEntry},
	3: {"fpregs", kMessage, required, &msgUserS390FpregsEntry},
	4: {"vxrs_low", kMessage, optional, &msgUserS390VxrsLowEntry},
	5: {"vxrs_high", kMessage, optional, &msgUserS390VxrsHighEntry},
	6: {"gs_cb", kMessage, optional, &msgUserS390GsCbEntry},
	7: {"gs_bc", kMessage, optional, &msgUserS390GsCbEntry},
	8: {"ri_cb", kMessage, optional, &msgUserS390RiEntry},
}}

var msgThreadInfoX86 = message{name: "thread_info_x86", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"clear_tid_addr", kVarint, required, nil},
	2: {"gpregs", kMessage, required, &msgUserX86RegsEntry},
	3: {"fpregs", kMessage, required, &msgUserX86FpregsEntry},
	4: {"tls", kMessage, repeated, &msgUserDescT},
}}

var msgThreadSasEntry = message{name: "thread_sas_entry", required: 1<<1 | 1<<2 | 1<<3, fields: []field{
	1: {"ss_sp", kVarint, required, nil},
	2: {"ss_size", kVarint, required, nil},
	3: {"ss_flags", kVarint, required, nil},
}}

var msgTimeval = message{name: "timeval", required: 1<<1 | 1<<2, fields: []field{
	1: {"tv_sec", kVarint, required, nil},
	2: {"tv_usec", kVarint, required, nil},
}}

var msgUserAarch64FpsimdContextEntry = message{name: "user_aarch64_fpsimd_context_entry", required: 1<<2 | 1<<3, fields: []field{
	1: {"vregs", kVarint, repeated, nil},
	2: {"fpsr", kVarint, required, nil},
	3: {"fpcr", kVarint, required, nil},
}}

var msgUserAarch64RegsEntry = message{name: "user_aarch64_regs_entry", required: 1<<2 | 1<<3 | 1<<4, fields: []field{
	1: {"regs", kVarint, repeated, nil},
	2: {"sp", kVarint, required, nil},
	3: {"pc", kVarint, required, nil},
	4: {"pstate", kVarint, required, nil},
}}

var msgUserArmRegsEntry = message{name: "user_arm_regs_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<13 | 1<<14 | 1<<15 | 1<<16 | 1<<17 | 1<<18, fields: []field{
	1:  {"r0", kVarint, required, nil},
	2:  {"r1", kVarint, required, nil},
	3:  {"r2", kVarint, required, nil},
	4:  {"r3", kVarint, required, nil},
	5:  {"r4", kVarint, required, nil},
	6:  {"r5", kVarint, required, nil},
	7:  {"r6", kVarint, required, nil},
	8:  {"r7", kVarint, required, nil},
	9:  {"r8", kVarint, required, nil},
	10: {"r9", kVarint, required, nil},
	11: {"r10", kVarint, required, nil},
	12: {"fp", kVarint, required, nil},
	13: {"ip", kVarint, required, nil},
	14: {"sp", kVarint, required, nil},
	15: {"lr", kVarint, required, nil},
	16: {"pc", kVarint, required, nil},
	17: {"cpsr", kVarint, required, nil},
	18: {"orig_r0", kVarint, required, nil},
}}

var msgUserArmVfpstateEntry = message{name: "user_arm_vfpstate_entry", required: 1<<2 | 1<<3 | 1<<4 | 1<<5, fields: []field{
	1: {"vfp_regs", kVarint, repeated, nil},
	2: {"fpscr", kVarint, required, nil},
	3: {"fpexc", kVarint, required, nil},
	4: {"fpinst", kVarint, required, nil},
	5: {"fpinst2", kVarint, required, nil},
}}

var msgUserDescT = message{name: "user_desc_t", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10, fields: []field{
	1:  {"entry_number", kVarint, required, nil},
	2:  {"base_addr", kVarint, required, nil},
	3:  {"limit", kVarint, required, nil},
	4:  {"seg_32bit", kVarint, required, nil},
	5:  {"contents_h", kVarint, required, nil},
	6:  {"contents_l", kVarint, required, nil},
	7:  {"read_exec_only", kVarint, required, nil},
	8:  {"limit_in_pages", kVarint, required, nil},
	9:  {"seg_not_present", kVarint, required, nil},
	10: {"usable", kVarint, required, nil},
}}

var msgUserMipsFpregsEntry = message{name: "user_mips_fpregs_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<13 | 1<<14 | 1<<15 | 1<<16 | 1<<17 | 1<<18 | 1<<19 | 1<<20 | 1<<21 | 1<<22 | 1<<23 | 1<<24 | 1<<25 | 1<<26 | 1<<27 | 1<<28 | 1<<29 | 1<<30 | 1<<31 | 1<<32 | 1<<33 | 1<<34 | 1<<35 | 1<<36, fields: []field{
	1:  {"r0", kVarint, required, nil},
	2:  {"r1", kVarint, required, nil},
	3:  {"r2", kVarint, required, nil},
	4:  {"r3", kVarint, required, nil},
	5:  {"r4", kVarint, required, nil},
	6:  {"r5", kVarint, required, nil},
	7:  {"r6", kVarint, required, nil},
	8:  {"r7", kVarint, required, nil},
	9:  {"r8", kVarint, required, nil},
	10: {"r9", kVarint, required, nil},
	11: {"r10", kVarint, required, nil},
	12: {"r11", kVarint, required, nil},
	13: {"r12", kVarint, required, nil},
	14: {"r13", kVarint, required, nil},
	15: {"r14", kVarint, required, nil},
	16: {"r15", kVarint, required, nil},
	17: {"r16", kVarint, required, nil},
	18: {"r17", kVarint, required, nil},
	19: {"r18", kVarint, required, nil},
	20: {"r19", kVarint, required, nil},
	21: {"r20", kVarint, required, nil},
	22: {"r21", kVarint, required, nil},
	23: {"r22", kVarint, required, nil},
	24: {"r23", kVarint, required, nil},
	25: {"r24", kVarint, required, nil},
	26: {"r25", kVarint, required, nil},
	27: {"r26", kVarint, required, nil},
	28: {"r27", kVarint, required, nil},
	29: {"r28", kVarint, required, nil},
	30: {"r29", kVarint, required, nil},
	31: {"r30", kVarint, required, nil},
	32: {"r31", kVarint, required, nil},
	33: {"lo", kVarint, required, nil},
	34: {"hi", kVarint, required, nil},
	35: {"fpu_fcr31", kVarint, required, nil},
	36: {"fpu_id", kVarint, required, nil},
}}

var msgUserMipsRegsEntry = message{name: "user_mips_regs_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<13 | 1<<14 | 1<<15 | 1<<16 | 1<<17 | 1<<18 | 1<<19 | 1<<20 | 1<<21 | 1<<22 | 1<<23 | 1<<24 | 1<<25 | 1<<26 | 1<<27 | 1<<28 | 1<<29 | 1<<30 | 1<<31 | 1<<32 | 1<<33 | 1<<34 | 1<<35 | 1<<36 | 1<<37 | 1<<38, fields: []field{
	1:  {"r0", kVarint, required, nil},
	2:  {"r1", kVarint, required, nil},
	3:  {"r2", kVarint, required, nil},
	4:  {"r3", kVarint, required, nil},
	5:  {"r4", kVarint, required, nil},
	6:  {"r5", kVarint, required, nil},
	7:  {"r6", kVarint, required, nil},
	8:  {"r7", kVarint, required, nil},
	9:  {"r8", kVarint, required, nil},
	10: {"r9", kVarint, required, nil},
	11: {"r10", kVarint, required, nil},
	12: {"r11", kVarint, required, nil},
	13: {"r12", kVarint, required, nil},
	14: {"r13", kVarint, required, nil},
	15: {"r14", kVarint, required, nil},
	16: {"r15", kVarint, required, nil},
	17: {"r16", kVarint, required, nil},
	18: {"r17", kVarint, required, nil},
	19: {"r18", kVarint, required, nil},
	20: {"r19", kVarint, required, nil},
	21: {"r20", kVarint, required, nil},
	22: {"r21", kVarint, required, nil},
	23: {"r22", kVarint, required, nil},
	24: {"r23", kVarint, required, nil},
	25: {"r24", kVarint, required, nil},
	26: {"r25", kVarint, required, nil},
	27: {"r26", kVarint, required, nil},
	28: {"r27", kVarint, required, nil},
	29: {"r28", kVarint, required, nil},
	30: {"r29", kVarint, required, nil},
	31: {"r30", kVarint, required, nil},
	32: {"r31", kVarint, required, nil},
	33: {"lo", kVarint, required, nil},
	34: {"hi", kVarint, required, nil},
	35: {"cp0_epc", kVarint, required, nil},
	36: {"cp0_badvaddr", kVarint, required, nil},
	37: {"cp0_status", kVarint, required, nil},
	38: {"cp0_cause", kVarint, required, nil},
}}

var msgUserPpc64FpstateEntry = message{name: "user_ppc64_fpstate_entry", required: 0, fields: []field{
	1: {"fpregs", kVarint, repeated, nil},
}}

var msgUserPpc64RegsEntry = message{name: "user_ppc64_regs_entry", required: 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9, fields: []field{
	1:  {"gpr", kVarint, repeated, nil},
	2:  {"nip", kVarint, required, nil},
	3:  {"msr", kVarint, required, nil},
	4:  {"orig_gpr3", kVarint, required, nil},
	5:  {"ctr", kVarint, required, nil},
	6:  {"link", kVarint, required, nil},
	7:  {"xer", kVarint, required, nil},
	8:  {"ccr", kVarint, required, nil},
	9:  {"trap", kVarint, required, nil},
	10: {"texasr", kVarint, optional, nil},
	11: {"tfhar", kVarint, optional, nil},
	12: {"tfiar", kVarint, optional, nil},
}}

var msgUserPpc64TmRegsEntry = message{name: "user_ppc64_tm_regs_entry", required: 1 << 1, fields: []field{
	1: {"gpregs", kMessage, required, &msgUserPpc64RegsEntry},
	2: {"fpstate", kMessage, optional, &msgUserPpc64FpstateEntry},
	3: {"vrstate", kMessage, optional, &msgUserPpc64VrstateEntry},
	4: {"vsxstate", kMessage, optional, &msgUserPpc64VsxstateEntry},
}}

var msgUserPpc64VrstateEntry = message{name: "user_ppc64_vrstate_entry", required: 1 << 2, fields: []field{
	1: {"vrregs", kVarint, repeated, nil},
	2: {"vrsave", kVarint, required, nil},
}}

var msgUserPpc64VsxstateEntry = message{name: "user_ppc64_vsxstate_entry", required: 0, fields: []field{
	1: {"vsxregs", kVarint, repeated, nil},
}}

var msgUserS390FpregsEntry = message{name: "user_s390_fpregs_entry", required: 1 << 1, fields: []field{
	1: {"fpc", kVarint, required, nil},
	2: {"fprs", kVarint, repeated, nil},
}}

var msgUserS390GsCbEntry = message{name: "user_s390_gs_cb_entry", required: 0, fields: []field{
	1: {"regs", kVarint, repeated, nil},
}}

var msgUserS390RegsEntry = message{name: "user_s390_regs_entry", required: 1<<1 | 1<<2 | 1<<5 | 1<<6, fields: []field{
	1: {"psw_mask", kVarint, required, nil},
	2: {"psw_addr", kVarint, required, nil},
	3: {"gprs", kVarint, repeated, nil},
	4: {"acrs", kVarint, repeated, nil},
	5: {"orig_gpr2", kVarint, required, nil},
	6: {"system_call", kVarint, required, nil},
}}

var msgUserS390RiEntry = message{name: "user_s390_ri_entry", required: 1 << 1, fields: []field{
	1: {"ri_on", kVarint, required, nil},
	2: {"regs", kVarint, repeated, nil},
}}

var msgUserS390VxrsHighEntry = message{name: "user_s390_vxrs_high_entry", required: 0, fields: []field{
	1: {"regs", kVarint, repeated, nil},
}}

var msgUserS390VxrsLowEntry = message{name: "user_s390_vxrs_low_entry", required: 0, fields: []field{
	1: {"regs", kVarint, repeated, nil},
}}

var msgUserX86FpregsEntry = message{name: "user_x86_fpregs_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8, fields: []field{
	1:  {"cwd", kVarint, required, nil},
	2:  {"swd", kVarint, required, nil},
	3:  {"twd", kVarint, required, nil},
	4:  {"fop", kVarint, required, nil},
	5:  {"rip", kVarint, required, nil},
	6:  {"rdp", kVarint, required, nil},
	7:  {"mxcsr", kVarint, required, nil},
	8:  {"mxcsr_mask", kVarint, required, nil},
	9:  {"st_space", kVarint, repeated, nil},
	10: {"xmm_space", kVarint, repeated, nil},
	11: {"padding", kVarint, repeated, nil},
	13: {"xsave", kMessage, optional, &msgUserX86XsaveEntry},
}}

var msgUserX86RegsEntry = message{name: "user_x86_regs_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12 | 1<<13 | 1<<14 | 1<<15 | 1<<16 | 1<<17 | 1<<18 | 1<<19 | 1<<20 | 1<<21 | 1<<22 | 1<<23 | 1<<24 | 1<<25 | 1<<26 | 1<<27, fields: []field{
	1:  {"r15", kVarint, required, nil},
	2:  {"r14", kVarint, required, nil},
	3:  {"r13", kVarint, required, nil},
	4:  {"r12", kVarint, required, nil},
	5:  {"bp", kVarint, required, nil},
	6:  {"bx", kVarint, required, nil},
	7:  {"r11", kVarint, required, nil},
	8:  {"r10", kVarint, required, nil},
	9:  {"r9", kVarint, required, nil},
	10: {"r8", kVarint, required, nil},
	11: {"ax", kVarint, required, nil},
	12: {"cx", kVarint, required, nil},
	13: {"dx", kVarint, required, nil},
	14: {"si", kVarint, required, nil},
	15: {"di", kVarint, required, nil},
	16: {"orig_ax", kVarint, required, nil},
	17: {"ip", kVarint, required, nil},
	18: {"cs", kVarint, required, nil},
	19: {"flags", kVarint, required, nil},
	20: {"sp", kVarint, required, nil},
	21: {"ss", kVarint, required, nil},
	22: {"fs_base", kVarint, required, nil},
	23: {"gs_base", kVarint, required, nil},
	24: {"ds", kVarint, required, nil},
	25: {"es", kVarint, required, nil},
	26: {"fs", kVarint, required, nil},
	27: {"gs", kVarint, required, nil},
	28: {"mode", kVarint, optional, nil},
}}

var msgUserX86XsaveEntry = message{name: "user_x86_xsave_entry", required: 1 << 1, fields: []field{
	1: {"xstate_bv", kVarint, required, nil},
	2: {"ymmh_space", kVarint, repeated, nil},
	3: {"bndreg_state", kVarint, repeated, nil},
	4: {"bndcsr_state", kVarint, repeated, nil},
	5: {"opmask_reg", kVarint, repeated, nil},
	6: {"zmm_upper", kVarint, repeated, nil},
	7: {"hi16_zmm", kVarint, repeated, nil},
	8: {"pkru", kVarint, repeated, nil},
}}

var msgVmaEntry = message{name: "vma_entry", required: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8, fields: []field{
	1:  {"start", kVarint, required, nil},
	2:  {"end", kVarint, required, nil},
	3:  {"pgoff", kVarint, required, nil},
	4:  {"shmid", kVarint, required, nil},
	5:  {"prot", kVarint, required, nil},
	6:  {"flags", kVarint, required, nil},
	7:  {"status", kVarint, required, nil},
	8:  {"fd", kVarint, required, nil},
	9:  {"madv", kVarint, optional, nil},
	10: {"fdflags", kVarint, optional, nil},
}}
