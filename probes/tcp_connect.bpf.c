// Stock probe "tcp_connect": a TCP connect, with both addresses and ports.
//
// At SYN_SENT the connecting task is current but its source port is not
// chosen yet (inet_hash_connect picks it right after), so the context
// (pid, tgid, uid, comm, cgroup, time) is kept per socket and the record
// is emitted when the socket leaves SYN_SENT: ESTABLISHED (established = 1)
// or CLOSE (the connect failed; established = 0).  A connect that hangs is
// reported when it gives up.

#define MD_TPV(t, off) (*(const t *)((const char *)ctx + (off)))
#define MD_TCP_ESTABLISHED 1
#define MD_TCP_SYN_SENT 2
#define MD_IPPROTO_TCP 6
#define MD_AF_INET 2

struct md_tcp_start {
    u64 ktime_ns;
    u64 cgroup_id;
    u64 pid_tgid;
    u32 uid;
    char comm[16];
};
BPF_TABLE("lru_hash", u64, struct md_tcp_start, md_tcp_started, 8192);

int md_tcp_connect(void *ctx) {
    if (MD_TPV(u16, TP_OFF(sock, inet_sock_set_state, protocol)) != MD_IPPROTO_TCP)
        return 0;
    u64 sk = MD_TPV(u64, TP_OFF(sock, inet_sock_set_state, skaddr));
    int newstate = MD_TPV(int, TP_OFF(sock, inet_sock_set_state, newstate));
    if (newstate == MD_TCP_SYN_SENT) {
        struct md_tcp_start s = {};
        s.ktime_ns = bpf_ktime_get_ns();
        s.cgroup_id = bpf_get_current_cgroup_id();
        s.pid_tgid = bpf_get_current_pid_tgid();
        s.uid = (u32)bpf_get_current_uid_gid();
        bpf_get_current_comm(s.comm, sizeof(s.comm));
        md_tcp_started.update(&sk, &s);
        return 0;
    }
    if (MD_TPV(int, TP_OFF(sock, inet_sock_set_state, oldstate)) != MD_TCP_SYN_SENT)
        return 0;
    struct md_tcp_start *s = md_tcp_started.lookup(&sk);
    if (!s)
        return 0;
    RECORD *r = md_tcp_events.ringbuf_reserve(sizeof(*r));
    if (!r) {
        LOST();
        md_tcp_started.delete(&sk);
        return 0;
    }
    r->f_ktime_ns = s->ktime_ns;
    r->f_cgroup_id = s->cgroup_id;
    r->f_pid = (u32)s->pid_tgid;
    r->f_tgid = s->pid_tgid >> 32;
    r->f_uid = s->uid;
    __builtin_memcpy(r->f_comm, s->comm, sizeof(r->f_comm));
    md_tcp_started.delete(&sk);
    u16 family = MD_TPV(u16, TP_OFF(sock, inet_sock_set_state, family));
    r->f_family = family;
    r->f_established = newstate == MD_TCP_ESTABLISHED;
    r->f_sport = MD_TPV(u16, TP_OFF(sock, inet_sock_set_state, sport));
    r->f_dport = MD_TPV(u16, TP_OFF(sock, inet_sock_set_state, dport));
    __builtin_memset(r->f_saddr, 0, sizeof(r->f_saddr));
    __builtin_memset(r->f_daddr, 0, sizeof(r->f_daddr));
    if (family == MD_AF_INET) {
        bpf_probe_read_kernel(r->f_saddr, 4, (const char *)ctx +
                              TP_OFF(sock, inet_sock_set_state, saddr));
        bpf_probe_read_kernel(r->f_daddr, 4, (const char *)ctx +
                              TP_OFF(sock, inet_sock_set_state, daddr));
    } else {
        bpf_probe_read_kernel(r->f_saddr, 16, (const char *)ctx +
                              TP_OFF(sock, inet_sock_set_state, saddr_v6));
        bpf_probe_read_kernel(r->f_daddr, 16, (const char *)ctx +
                              TP_OFF(sock, inet_sock_set_state, daddr_v6));
    }
    md_tcp_events.ringbuf_submit(r, 0);
    return 0;
}

#undef MD_TPV
#undef MD_TCP_ESTABLISHED
#undef MD_TCP_SYN_SENT
#undef MD_IPPROTO_TCP
#undef MD_AF_INET
