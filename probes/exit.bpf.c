// Stock probe "exit": a process ended (its last thread exited), with how.
//
// The exit status is what the process passed to exit_group() (or exit()
// from its last thread), noted per tgid at syscall entry; a process killed
// by a signal is noted when a fatal signal meets the default action
// (signal_deliver with SIG_DFL).  A fatal signal sent to a process with
// the default action is turned into SIGKILL by the sender already (the
// kernel's shortcut for fatal signals), so the receiver only ever takes
// SIGKILL: the signal is remembered per target at signal_generate and
// reported in its place, unless the target handled it meanwhile.  (A fatal
// signal sent while blocked, followed by a real SIGKILL, is misreported as
// the first.)  sched_process_exit with group_dead emits the record.
// Reading task_struct->exit_code instead would need the running kernel's
// structure offsets, which stand-in headers do not give.

#define MD_TPV(t, off) (*(const t *)((const char *)ctx + (off)))
#define MD_EXIT_BY_CALL 1
#define MD_EXIT_BY_SIGNAL 2

BPF_TABLE("lru_hash", u32, u64, md_exit_how, 16384);
BPF_TABLE("lru_hash", u32, u32, md_exit_sent, 16384);

// Default action ignore or stop: CHLD CONT STOP TSTP TTIN TTOU URG WINCH.
#define MD_EXIT_HARMLESS ((1U << 17) | (1U << 18) | (1U << 19) | (1U << 20) | \
                          (1U << 21) | (1U << 22) | (1U << 23) | (1U << 28))

static __always_inline int md_exit_fatal(int sig) {
    if (sig <= 0 || sig > 64)
        return 0;
    return sig >= 32 || !((MD_EXIT_HARMLESS >> sig) & 1);
}

static __always_inline void md_exit_note(u64 value, int replace) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (replace)
        md_exit_how.update(&tgid, &value);
    else
        md_exit_how.insert(&tgid, &value);
}

int md_exit_group(void *ctx) {
    u64 code = MD_TPV(u64, TP_OFF(syscalls, sys_enter_exit_group, error_code));
    md_exit_note((code & 0xff) | ((u64)MD_EXIT_BY_CALL << 16), 1);
    return 0;
}

int md_exit_thread(void *ctx) {
    u64 code = MD_TPV(u64, TP_OFF(syscalls, sys_enter_exit, error_code));
    // exit() of one thread says the process's status only if it is the
    // last; a later exit_group() or fatal signal of another thread wins.
    md_exit_note((code & 0xff) | ((u64)MD_EXIT_BY_CALL << 16) | (1ULL << 24), 1);
    return 0;
}

int md_exit_sent_note(void *ctx) {
    int sig = MD_TPV(int, TP_OFF(signal, signal_generate, sig));
    u32 target = MD_TPV(u32, TP_OFF(signal, signal_generate, pid));
    if (MD_TPV(int, TP_OFF(signal, signal_generate, result)) != 0)
        return 0;
    if (sig == 9 || !md_exit_fatal(sig))
        return 0;
    u32 value = sig;
    md_exit_sent.update(&target, &value);
    return 0;
}

int md_exit_signal(void *ctx) {
    int sig = MD_TPV(int, TP_OFF(signal, signal_deliver, sig));
    u64 handler = MD_TPV(u64, TP_OFF(signal, signal_deliver, sa_handler));
    u64 pt = bpf_get_current_pid_tgid();
    u32 tgid = pt >> 32, tid = (u32)pt;
    if (handler != 0 && sig != 9) {
        u32 *sent = md_exit_sent.lookup(&tgid);
        if (sent && *sent == sig)
            md_exit_sent.delete(&tgid);
        return 0;
    }
    if (!md_exit_fatal(sig))
        return 0;
    if (sig == 9) {
        u32 *sent = md_exit_sent.lookup(&tgid);
        if (!sent)
            sent = md_exit_sent.lookup(&tid);
        if (sent)
            sig = *sent;
    }
    u64 *old = md_exit_how.lookup(&tgid);
    // exit_group() already chose the status (its SIGKILL to the other
    // threads is not the cause); a thread's own exit() is overridden.
    if (old && !(*old & (1ULL << 24)))
        return 0;
    u64 value = ((u64)sig << 8) | ((u64)MD_EXIT_BY_SIGNAL << 16);
    md_exit_how.update(&tgid, &value);
    return 0;
}

int md_exit_done(void *ctx) {
    if (!MD_TPV(u8, TP_OFF(sched, sched_process_exit, group_dead)))
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 *how = md_exit_how.lookup(&tgid);
    RECORD *r = md_exit_events.ringbuf_reserve(sizeof(*r));
    if (!r) {
        LOST();
        md_exit_how.delete(&tgid);
        md_exit_sent.delete(&tgid);
        return 0;
    }
    FILL_HEADER(r);
    u64 v = how ? *how : 0;
    r->f_exit_code = v & 0xff;
    r->f_signal = (v >> 8) & 0xff;
    r->f_how = (v >> 16) & 0xff;
    md_exit_how.delete(&tgid);
    md_exit_sent.delete(&tgid);
    md_exit_events.ringbuf_submit(r, 0);
    return 0;
}

#undef MD_TPV
#undef MD_EXIT_BY_CALL
#undef MD_EXIT_BY_SIGNAL
#undef MD_EXIT_HARMLESS
