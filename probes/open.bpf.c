// Stock probe "open": a file open, with path, flags, mode and result.
//
// openat() (and openat2(), open() where the kernel has them) entry saves
// the arguments per thread in a hash keyed by pid_tgid; the matching
// syscall exit emits one record with the result (an fd, or -errno).

#define MD_TPV(t, off) (*(const t *)((const char *)ctx + (off)))
#define MD_OPEN_OPENAT 1
#define MD_OPEN_OPENAT2 2
#define MD_OPEN_OPEN 3

struct md_open_args {
    char filename[256];
    s64 flags;
    u64 mode;
    s32 dfd;
    u32 call;
};
BPF_PERCPU_ARRAY(md_open_scratch, struct md_open_args, 1);
BPF_TABLE("lru_hash", u64, struct md_open_args, md_open_pending, 8192);

static __always_inline int md_open_save(const char *path, s32 dfd, s64 flags,
                                        u64 mode, u32 call) {
    u32 zero = 0;
    struct md_open_args *a = md_open_scratch.lookup(&zero);
    if (!a)
        return 0;
    a->filename[0] = 0;
    bpf_probe_read_user_str(a->filename, sizeof(a->filename), path);
    a->dfd = dfd;
    a->flags = flags;
    a->mode = mode;
    a->call = call;
    u64 key = bpf_get_current_pid_tgid();
    md_open_pending.update(&key, a);
    return 0;
}

static __always_inline int md_open_done(s64 ret) {
    u64 key = bpf_get_current_pid_tgid();
    struct md_open_args *a = md_open_pending.lookup(&key);
    if (!a)
        return 0;
    RECORD *r = md_open_events.ringbuf_reserve(sizeof(*r));
    if (!r) {
        LOST();
        md_open_pending.delete(&key);
        return 0;
    }
    FILL_HEADER(r);
    bpf_probe_read_kernel(r->f_filename, sizeof(r->f_filename), a->filename);
    r->f_flags = a->flags;
    r->f_mode = a->mode;
    r->f_dfd = a->dfd;
    r->f_call = a->call;
    r->f_result = ret;
    md_open_pending.delete(&key);
    md_open_events.ringbuf_submit(r, 0);
    return 0;
}

int md_open_enter_openat(void *ctx) {
    return md_open_save(
        MD_TPV(const char *, TP_OFF(syscalls, sys_enter_openat, filename)),
        (s32)MD_TPV(u64, TP_OFF(syscalls, sys_enter_openat, dfd)),
        (s32)MD_TPV(u64, TP_OFF(syscalls, sys_enter_openat, flags)),
        MD_TPV(u64, TP_OFF(syscalls, sys_enter_openat, mode)), MD_OPEN_OPENAT);
}

int md_open_exit_openat(void *ctx) {
    return md_open_done(MD_TPV(s64, TP_OFF(syscalls, sys_exit_openat, ret)));
}

#if MD_HAVE(syscalls, sys_enter_openat2)
int md_open_enter_openat2(void *ctx) {
    struct { u64 flags; u64 mode; u64 resolve; } how = {};
    const void *uhow = MD_TPV(const void *, TP_OFF(syscalls, sys_enter_openat2, how));
    bpf_probe_read_user(&how, sizeof(how), uhow);
    return md_open_save(
        MD_TPV(const char *, TP_OFF(syscalls, sys_enter_openat2, filename)),
        (s32)MD_TPV(u64, TP_OFF(syscalls, sys_enter_openat2, dfd)), how.flags,
        how.mode, MD_OPEN_OPENAT2);
}

int md_open_exit_openat2(void *ctx) {
    return md_open_done(MD_TPV(s64, TP_OFF(syscalls, sys_exit_openat2, ret)));
}
#endif

#if MD_HAVE(syscalls, sys_enter_open)
int md_open_enter_open(void *ctx) {
    return md_open_save(
        MD_TPV(const char *, TP_OFF(syscalls, sys_enter_open, filename)), -100,
        (s32)MD_TPV(u64, TP_OFF(syscalls, sys_enter_open, flags)),
        MD_TPV(u64, TP_OFF(syscalls, sys_enter_open, mode)), MD_OPEN_OPEN);
}

int md_open_exit_open(void *ctx) {
    return md_open_done(MD_TPV(s64, TP_OFF(syscalls, sys_exit_open, ret)));
}
#endif

#undef MD_TPV
#undef MD_OPEN_OPENAT
#undef MD_OPEN_OPENAT2
#undef MD_OPEN_OPEN
