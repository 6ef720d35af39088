// Stock probe "exec": a program was executed, with its argv.
//
// execve()/execveat() entry saves the file name and up to MD_EXEC_ARGS
// arguments per thread; sched_process_exec (the exec succeeded) or the
// syscall's exit with an error emits the record.  TP_OFF and MD_HAVE are
// replaced by moduled from the tracefs format files.

#define MD_EXEC_ARGS 20
#define MD_EXEC_ARGLEN 128
#define MD_TPV(t, off) (*(const t *)((const char *)ctx + (off)))

struct md_exec_args {
    char filename[256];
    u32 argc;
    u32 truncated;
    char argv[MD_EXEC_ARGS * MD_EXEC_ARGLEN];
};
BPF_PERCPU_ARRAY(md_exec_scratch, struct md_exec_args, 1);
BPF_TABLE("lru_hash", u64, struct md_exec_args, md_exec_pending, 4096);

static __always_inline int md_exec_save(const char *filename,
                                        const char *const *argv) {
    u32 zero = 0;
    struct md_exec_args *a = md_exec_scratch.lookup(&zero);
    if (!a)
        return 0;
    a->filename[0] = 0;
    bpf_probe_read_user_str(a->filename, sizeof(a->filename), filename);
    a->argc = 0;
    a->truncated = 0;
#pragma unroll
    for (int i = 0; i < MD_EXEC_ARGS; i++) {
        const char *p = 0;
        if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
            goto saved;
        a->argv[i * MD_EXEC_ARGLEN] = 0;
        bpf_probe_read_user_str(&a->argv[i * MD_EXEC_ARGLEN], MD_EXEC_ARGLEN, p);
        a->argc = i + 1;
    }
    {
        const char *more = 0;
        bpf_probe_read_user(&more, sizeof(more), &argv[MD_EXEC_ARGS]);
        a->truncated = more != 0;
    }
saved:;
    u64 key = bpf_get_current_pid_tgid();
    md_exec_pending.update(&key, a);
    return 0;
}

static __always_inline int md_exec_emit(void *ctx, u64 key, s32 result,
                                        int from_tp, u32 loc) {
    struct md_exec_args *a = md_exec_pending.lookup(&key);
    if (!a && result)
        return 0;
    RECORD *r = md_exec_events.ringbuf_reserve(sizeof(*r));
    if (!r) {
        LOST();
        if (a)
            md_exec_pending.delete(&key);
        return 0;
    }
    FILL_HEADER(r);
    r->f_result = result;
    r->f_filename[0] = 0;
    if (from_tp)
        bpf_probe_read_kernel_str(r->f_filename, sizeof(r->f_filename),
                                  (const char *)ctx + (loc & 0xffff));
    if (a) {
        if (!from_tp)
            bpf_probe_read_kernel_str(r->f_filename, sizeof(r->f_filename),
                                      a->filename);
        r->f_argc = a->argc;
        r->f_truncated = a->truncated;
        bpf_probe_read_kernel(r->f_argv, sizeof(r->f_argv), a->argv);
        md_exec_pending.delete(&key);
    } else {
        r->f_argc = 0;
        r->f_truncated = 0;
    }
    md_exec_events.ringbuf_submit(r, 0);
    return 0;
}

int md_exec_enter(void *ctx) {
    return md_exec_save(
        MD_TPV(const char *, TP_OFF(syscalls, sys_enter_execve, filename)),
        MD_TPV(const char *const *, TP_OFF(syscalls, sys_enter_execve, argv)));
}

int md_exec_exit(void *ctx) {
    s64 ret = MD_TPV(s64, TP_OFF(syscalls, sys_exit_execve, ret));
    if (ret >= 0)
        return 0;
    return md_exec_emit(ctx, bpf_get_current_pid_tgid(), ret, 0, 0);
}

#if MD_HAVE(syscalls, sys_enter_execveat)
int md_exec_enter_at(void *ctx) {
    return md_exec_save(
        MD_TPV(const char *, TP_OFF(syscalls, sys_enter_execveat, filename)),
        MD_TPV(const char *const *, TP_OFF(syscalls, sys_enter_execveat, argv)));
}

int md_exec_exit_at(void *ctx) {
    s64 ret = MD_TPV(s64, TP_OFF(syscalls, sys_exit_execveat, ret));
    if (ret >= 0)
        return 0;
    return md_exec_emit(ctx, bpf_get_current_pid_tgid(), ret, 0, 0);
}
#endif

int md_exec_done(void *ctx) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 old = MD_TPV(u32, TP_OFF(sched, sched_process_exec, old_pid));
    u64 key = (pt & 0xffffffff00000000ULL) | old;
    u32 loc = MD_TPV(u32, TP_OFF(sched, sched_process_exec, filename));
    return md_exec_emit(ctx, key, 0, 1, loc);
}

#undef MD_TPV
#undef MD_EXEC_ARGS
#undef MD_EXEC_ARGLEN
