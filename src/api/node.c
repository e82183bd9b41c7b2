/* SPDX-License-Identifier: MIT */
/* The node's life cycle: start, the loop threads, stop (see node_int.h for the design). */
#include "api/node_int.h"

#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/httpc_async.h"
#include "net/tls.h"
#include "realtime/rt.h"
#include "repl/compact.h"
#include "repl/tomb.h"

void edge_node_config_defaults(struct edge_node_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->data_dir = "./edgelite-data";
    cfg->region = "local";
    cfg->max_body_bytes = 16u << 20;
    cfg->stream_timeout_ms = 10000;
    cfg->query_budget_ms = 5000;
    cfg->idle_conn_timeout_ms = 60000;
    cfg->bookmark_timeout_ms = 5000;
    cfg->strong_timeout_ms = 5000;
    cfg->log_keep = 1000;
    cfg->compact_interval_ms = 5000;
    cfg->listen_fd = -1;
}

bool edge_node_tls(const struct edge_node *n) { return n->tls != NULL; }

int edge__api_peer_pool(struct loop *l, const char *url, int max_conns, uint64_t idle_ms, struct edge_httpca **out)
{
    struct edge_httpc_url u;
    *out = NULL;
    if (url == NULL || edge_httpc_url_parse(url, &u) != EDGE_OK) return EDGE_EINVAL;
    if (u.tls && l->node->repl.peer_tls == NULL) return EDGE_EINVAL;
    int rv = edge_httpca_new(&l->loop, u.host, u.port, max_conns, idle_ms, out);
    if (rv == EDGE_OK && u.tls) rv = edge_httpca_set_tls(*out, l->node->repl.peer_tls, u.host);
    if (rv != EDGE_OK && *out != NULL) {
        edge_httpca_close(*out);
        *out = NULL;
    }
    return rv;
}

int edge_node_port(const struct edge_node *n) { return n->port; }

static void on_inbox(uv_async_t *a)
{
    struct loop *l = a->data;
    pthread_mutex_lock(&l->inbox_mu);
    struct edge_task *list = l->inbox;
    l->inbox = NULL;
    bool final = l->final;
    pthread_mutex_unlock(&l->inbox_mu);
    if (final && !uv_is_closing((uv_handle_t *)&l->inbox_async)) {
        /* The writer and the peer links have stopped: nothing can arrive any more. */
        uv_close((uv_handle_t *)&l->inbox_async, NULL);
        l->wake_ready = false;
        uv_close((uv_handle_t *)&l->wake_async, NULL);
    }
    /* The list is newest first; answer in arrival order. */
    struct edge_task *rev = NULL;
    while (list != NULL) {
        struct edge_task *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev != NULL) {
        struct edge_task *next = rev->next;
        rev->run(rev);
        rev = next;
    }
}

void edge__api_loop_post(struct loop *l, struct edge_task *t)
{
    pthread_mutex_lock(&l->inbox_mu);
    t->next = l->inbox;
    l->inbox = t;
    pthread_mutex_unlock(&l->inbox_mu);
    uv_async_send(&l->inbox_async);
}

/* edge__api_loop_post unless the loop's inbox is closing (the node is stopping): false
 * then, and t was not queued. The wake-up is sent under the lock, so the inbox cannot
 * close between the check and it. */
static bool loop_try_post(struct loop *l, struct edge_task *t)
{
    pthread_mutex_lock(&l->inbox_mu);
    bool ok = !l->final;
    if (ok) {
        t->next = l->inbox;
        l->inbox = t;
        uv_async_send(&l->inbox_async);
    }
    pthread_mutex_unlock(&l->inbox_mu);
    return ok;
}

/* ---- connections balanced across the loops ----
 * Every loop listens on the same socket; the first to wake accepts a whole burst (64
 * clients connecting at once can all land on one loop, which then does all their work
 * while the other idles). A loop that accepts while it holds two more connections than
 * the least loaded one hands the new socket to that loop instead. */

struct conn_handoff {
    struct edge_task task;
    struct loop *to;
    int fd;
};

static void handoff_run(struct edge_task *t)
{
    struct conn_handoff *h = (struct conn_handoff *)(void *)((char *)t - offsetof(struct conn_handoff, task));
    struct loop *l = h->to;
    if (l->stopping || l->http == NULL) {
        close(h->fd);
    } else {
        edge_http_server_adopt(l->http, h->fd);
    }
    atomic_fetch_sub(&l->n_coming, 1); /* after: counted in n_conns by now */
    edge_free(h);
}

static bool place_conn(void *ud, int fd)
{
    struct loop *l = ud;
    struct edge_node *n = l->node;
    /* A loop that drains keeps what it still accepts (answered with "Connection: close"),
     * and none is given to it: it may have counted itself idle for edge_node_drained. */
    if (n->n_loops < 2 || l->stopping || l->draining) return false;
    long mine = atomic_load(&l->n_conns) + atomic_load(&l->n_coming); /* the new one included */
    struct loop *best = NULL;
    long least = mine - 1;
    for (int i = 0; i < n->n_loops; i++) {
        struct loop *o = &n->loops[i];
        if (o == l || o->draining) continue;
        long c = atomic_load(&o->n_conns) + atomic_load(&o->n_coming);
        if (c < least) {
            least = c;
            best = o;
        }
    }
    if (best == NULL) return false;
    struct conn_handoff *h = edge_malloc(sizeof(*h));
    if (h == NULL) return false;
    h->task.run = handoff_run;
    h->to = best;
    h->fd = fd;
    atomic_fetch_add(&best->n_coming, 1);
    if (!loop_try_post(best, &h->task)) {
        atomic_fetch_sub(&best->n_coming, 1);
        edge_free(h);
        return false;
    }
    atomic_fetch_add(&n->m.conns_handed_off, 1);
    return true;
}

/* The replication state moved (a commit, an applied batch, an ACK): answer the
 * waiters it satisfies. */
static void on_wake(uv_async_t *a)
{
    edge__api_wait_wake(a->data);
}

void edge__api_wake(void *node)
{
    struct edge_node *n = node;
    for (int i = 0; i < n->n_loops; i++) {
        if (n->loops[i].wake_ready) uv_async_send(&n->loops[i].wake_async);
    }
}

/* Pool thread: has this region fallen behind every peer's compacted log (it was
 * unreachable while they passed replication.max_log_bytes)? Then it serves nothing
 * until it is re-seeded (edge_node_reseed_wanted). */
static void behind_work(uv_work_t *w)
{
    struct edge_node *n = w->data;
    if (edge_repl_behind_now(&n->repl)) atomic_store(&n->seeding, true);
}

static void behind_after(uv_work_t *w, int status)
{
    (void)status;
    struct edge_node *n = w->data;
    atomic_store(&n->behind_checking, false);
}

/* The check asks every peer's /v1/status: at most once a second, one at a time. */
#define BEHIND_CHECK_EVERY_MS 1000

static void compact_tick(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge_node *n = l->node;
    if (!n->repl.cluster || l->stopping) return;
    edge_repl_compact(&n->repl);
    uint64_t now = mono_ms();
    if (!atomic_load(&n->seeding) && !atomic_load(&n->behind_checking) &&
        now - n->behind_at_ms >= BEHIND_CHECK_EVERY_MS) {
        n->behind_at_ms = now;
        atomic_store(&n->behind_checking, true);
        n->behind_work.data = n;
        if (uv_queue_work(&l->loop, &n->behind_work, behind_work, behind_after) != 0) {
            atomic_store(&n->behind_checking, false);
        }
    }
}

bool edge_node_reseed_wanted(struct edge_node *n) { return atomic_load(&n->seeding); }

int edge_node_listener_dup(struct edge_node *n)
{
    return n->listen_keep >= 0 ? fcntl(n->listen_keep, F_DUPFD_CLOEXEC, 0) : -1;
}

/* The port a socket is bound to, or -1. */
static int socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* Before the database opens: set it aside when it is behind the other regions (or the
 * embedder says so: cfg.reseed), then, without a database, seed it from a peer while
 * a small server answers 503 SEEDING on the node's socket. aside: the set-aside copy. */
static int seed_phase(struct edge_node *n, const struct edge_node_config *cfg, int listen_fd, char *aside,
                      size_t aside_len, char *errmsg, size_t errmsg_len)
{
    aside[0] = '\0';
    if (!n->repl.cluster) return EDGE_OK;
    bool must = cfg->reseed ? edge_repl_set_aside(&n->repl, aside, aside_len) == EDGE_OK
                            : edge_repl_behind_the_logs(&n->repl, aside, aside_len);
    struct stat st;
    if (cfg->conf->cluster_secret == NULL || stat(n->db_path, &st) == 0) return EDGE_OK;
    struct edge__api_seeding *seeding = NULL;
    int sfd = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    if (sfd < 0 || edge__api_seeding_start(sfd, 5000, n->tls, &seeding) != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "node: cannot answer 503 SEEDING while seeding; the port waits instead");
        seeding = NULL;
    }
    int rv = edge_repl_seed(&n->repl, must, cfg->cancelled, cfg->cancelled_ud);
    edge__api_seeding_stop(seeding);
    if (rv != EDGE_OK) snprintf(errmsg, errmsg_len, "stopped while waiting for a snapshot to seed from");
    return rv;
}

static void tomb_tick(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge_node *n = l->node;
    if (!n->repl.cluster || l->stopping) return;
    edge_repl_tomb_tick(&n->repl);
}

/* A Hrana WebSocket session with a request queued or running must not be closed yet. */
static bool ws_busy(void *ud, struct edge_http_conn *c)
{
    (void)ud;
    struct ws_session *s = edge_http_conn_ud(c);
    return s != NULL && !s->closed && (s->busy || s->q_head != NULL);
}

static void drain_tick(uv_timer_t *t)
{
    struct loop *l = t->data;
    if (l->stopping || l->http == NULL) {
        l->busy_conns = 0;
        return;
    }
    /* A connection handed to this loop and not yet adopted is busy too. */
    l->busy_conns = (long)edge_http_server_close_idle(l->http, ws_busy, l) + atomic_load(&l->n_coming);
}

static void on_drain(uv_async_t *a)
{
    struct loop *l = a->data;
    if (l->draining || l->stopping) return;
    l->draining = true;
    if (l->http != NULL) edge_http_server_drain(l->http);
    /* The listener and idle connections are closed only after a moment: a request
     * already on its way (sent before the stop began, perhaps still in the accept
     * queue) is read and answered first. */
    uv_timer_start(&l->drain_timer, drain_tick, 200, 20);
}

void edge_node_drain(struct edge_node *n)
{
    for (int i = 0; i < n->n_loops; i++) {
        uv_async_send(&n->loops[i].drain_async);
    }
}

bool edge_node_drained(struct edge_node *n)
{
    return edge_node_busy_connections(n) == 0;
}

long edge_node_busy_connections(struct edge_node *n)
{
    long busy = 0;
    for (int i = 0; i < n->n_loops; i++) {
        long b = n->loops[i].busy_conns;
        if (b < 0) return -1; /* not counted yet */
        busy += b;
    }
    return busy;
}

static void on_server_stopped(void *arg)
{
    struct loop *l = arg;
    l->http = NULL;
}

/* Stop accepting and close every connection. The inbox stays open until the writer
 * has drained (edge_node_stop), so late completions still find a live handle. */
static void on_stop(uv_async_t *a)
{
    struct loop *l = a->data;
    if (l->stopping) return;
    l->stopping = true;
    uv_close((uv_handle_t *)&l->stop_async, NULL);
    uv_close((uv_handle_t *)&l->drain_async, NULL);
    uv_close((uv_handle_t *)&l->drain_timer, NULL);
    edge__api_snap_end(&l->snap_check);
    uv_close((uv_handle_t *)&l->snap_check, NULL);
    if (l->idx == 0) {
        uv_close((uv_handle_t *)&l->sweep_timer, NULL);
        uv_close((uv_handle_t *)&l->compact_timer, NULL);
        uv_close((uv_handle_t *)&l->tomb_timer, NULL);
    }
    edge__api_sessions_loop_stop(l);
    if (l->http != NULL) {
        edge_http_server_stop(l->http, on_server_stopped, l);
    }
    /* With every connection closing: waiters and forwards in flight end unanswered. */
    edge__api_wait_stop(l);
    for (int i = 0; i < EDGE_API_MAX_REGIONS; i++) {
        edge_httpca_close(l->fwd[i]);
        l->fwd[i] = NULL;
    }
    edge_rt_loop_stop(l->node->rt, l->idx);
    for (int i = 0; i < EDGE_REPL_MAX_PEERS; i++) {
        edge_httpca_close(l->bcast[i]);
        l->bcast[i] = NULL;
    }
}

static void loop_main(void *arg)
{
    struct loop *l = arg;
    char name[16]; /* what ps -L, top -H and /proc/<pid>/task/<tid>/comm show */
    snprintf(name, sizeof(name), "edge-loop%d", l->idx);
    pthread_setname_np(pthread_self(), name);
    uv_run(&l->loop, UV_RUN_DEFAULT);
}

static int loop_init(struct edge_node *n, struct loop *l, int idx)
{
    l->node = n;
    l->idx = idx;
    pthread_mutex_init(&l->inbox_mu, NULL);
    if (uv_loop_init(&l->loop) != 0) return EDGE_EIO;
    uv_async_init(&l->loop, &l->inbox_async, on_inbox);
    l->inbox_async.data = l;
    uv_async_init(&l->loop, &l->stop_async, on_stop);
    l->stop_async.data = l;
    uv_async_init(&l->loop, &l->drain_async, on_drain);
    l->drain_async.data = l;
    uv_timer_init(&l->loop, &l->drain_timer);
    l->drain_timer.data = l;
    l->busy_conns = -1;
    uv_async_init(&l->loop, &l->wake_async, on_wake);
    l->wake_async.data = l;
    l->wake_ready = true;
    uv_check_init(&l->loop, &l->snap_check);
    l->snap_check.data = l;
    int rv = edge__api_wait_init(l);
    if (rv != EDGE_OK) return rv;
    rv = edge__api_sessions_loop_init(l);
    if (rv != EDGE_OK) return rv;
    rv = edge_rt_loop_init(n->rt, idx, &l->loop);
    if (rv != EDGE_OK) return rv;
    rv = edge_store_open(n->db_path, EDGE_STORE_READ, n->cfg.synchronous_full, 5000, &l->rconn, l->errmsg,
                             sizeof(l->errmsg));
    if (rv != EDGE_OK) return rv;
    struct edge_http_limits lim = {
        .max_body_bytes = n->cfg.max_body_bytes,
        .max_header_bytes = 64 * 1024,
        .max_queued = 64,
        .idle_timeout_ms = n->cfg.idle_conn_timeout_ms,
        .request_timeout_ms = 30000,
        .max_ws_message = n->cfg.max_body_bytes,
        .max_ws_out_bytes = (size_t)n->ws_output_bytes,
    };
    struct edge_http_handler h = {.ud = l,
                                  .on_request = edge__api_on_request,
                                  .on_ws_message = edge__api_ws_on_message,
                                  .on_close = edge__api_ws_on_close,
                                  .on_accept = place_conn,
                                  .n_conns = &l->n_conns};
    int fd = l->listen_fd; /* the node's socket (loop 0) or a dup of it */
    l->listen_fd = -1;     /* the server owns it now */
    rv = edge_http_server_start(&l->loop, fd, &lim, &h, &l->http);
    if (rv != EDGE_OK) {
        snprintf(l->errmsg, sizeof(l->errmsg), "cannot serve on %s:%d", n->cfg.host, n->port);
        return rv;
    }
    if (n->tls != NULL && (rv = edge_http_server_set_tls(l->http, n->tls)) != EDGE_OK) {
        snprintf(l->errmsg, sizeof(l->errmsg), "cannot serve TLS: %s", edge_strerror(rv));
        return rv;
    }
    if (idx == 0) {
        uv_timer_init(&l->loop, &l->sweep_timer);
        l->sweep_timer.data = l;
        uint64_t every = n->cfg.stream_timeout_ms / 4;
        every = every < 50 ? 50 : every > 1000 ? 1000 : every;
        uv_timer_start(&l->sweep_timer, edge__api_stream_sweep, every, every);
        uv_timer_init(&l->loop, &l->compact_timer);
        l->compact_timer.data = l;
        uv_timer_start(&l->compact_timer, compact_tick, n->cfg.compact_interval_ms, n->cfg.compact_interval_ms);
        uv_timer_init(&l->loop, &l->tomb_timer);
        l->tomb_timer.data = l;
        uint64_t gc_every = n->cfg.conf != NULL && n->cfg.conf->tombstone_gc_interval_ms > 0
                                ? (uint64_t)n->cfg.conf->tombstone_gc_interval_ms
                                : EDGE_CONF_TOMBSTONE_GC_INTERVAL_MS;
        uv_timer_start(&l->tomb_timer, tomb_tick, gc_every, gc_every);
    }
    return EDGE_OK;
}

/* The client context of links, pools, seeding and status checks to https:// regions:
 * certificates verified against cluster.ca_file (the system's CAs without it). Made
 * when a region URL is https:// or a CA file is named. */
static int peer_tls_open(struct edge_node *n, const struct edge_node_config *cfg, char *errmsg, size_t errmsg_len)
{
    const struct edge_conf *conf = cfg->conf;
    if (conf == NULL) return EDGE_OK;
    if (n->tls != NULL && conf->ca_file != NULL) {
        /* Mutual: peers present their region's certificate, and this node asks for one. */
        int rv = edge_tls_ctx_verify_clients(n->tls, conf->ca_file, errmsg, errmsg_len);
        if (rv != EDGE_OK) return rv;
        n->tls_peers_verified = true;
    }
    bool https = conf->ca_file != NULL;
    for (size_t i = 0; i < conf->n_regions && !https; i++) {
        struct edge_httpc_url u;
        https = conf->regions[i].url != NULL && edge_httpc_url_parse(conf->regions[i].url, &u) == EDGE_OK && u.tls;
    }
    if (!https) return EDGE_OK;
    int rv = edge_tls_ctx_client_new(conf->ca_file, &n->repl.peer_tls, errmsg, errmsg_len);
    if (rv == EDGE_OK && cfg->tls_cert_file != NULL) {
        rv = edge_tls_ctx_set_cert(n->repl.peer_tls, cfg->tls_cert_file, cfg->tls_key_file, errmsg, errmsg_len);
    }
    return rv;
}

/* The data directory holds every row: only its owner may enter it. */
static int mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if ((st.st_mode & 077) != 0 && st.st_uid == geteuid()) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "node: data directory %s was mode %03o, now 0700", dir,
                 (unsigned)(st.st_mode & 0777));
        if (chmod(tmp, 0700) != 0) return -1;
    }
    return 0;
}

/* One node per data directory: data_dir/LOCK held with flock(2) while the node runs
 * (the kernel drops it when the process dies, so a crash leaves nothing to clean up).
 * The file names the holder's pid for the message a second node gives. */
static int lock_data_dir(struct edge_node *n, char *errmsg, size_t errmsg_len)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/LOCK", n->data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(errmsg, errmsg_len, "cannot open %s: %s", path, strerror(errno));
        return EDGE_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t got = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\r\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(errmsg, errmsg_len, "data directory %s is in use by another edgelite node (pid %s)",
                     n->data_dir, pid[0] ? pid : "unknown");
            return EDGE_EBUSY;
        }
        snprintf(errmsg, errmsg_len, "cannot lock %s: %s", path, strerror(e));
        return EDGE_EIO;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        snprintf(errmsg, errmsg_len, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return EDGE_EIO;
    }
    n->lock_fd = fd;
    return EDGE_OK;
}

static void node_free(struct edge_node *n)
{
    if (n == NULL) return;
    for (int i = 0; i < n->n_loops; i++) {
        struct loop *l = &n->loops[i];
        if (l->listen_fd >= 0) close(l->listen_fd); /* a loop that failed before its server took it */
        edge_store_close(l->rconn);
        edge__api_sessions_loop_free(l);
        uv_loop_close(&l->loop);
        pthread_mutex_destroy(&l->inbox_mu);
    }
    edge_free(n->loops);
    for (size_t i = 0; i < n->n_streams; i++) edge__api_stream_free(n, n->streams[i]);
    edge_free(n->streams);
    edge_free(n->expired);
    for (int i = 0; i < n->n_pool; i++) edge__api_txconn_close(n->pool[i]);
    edge_jwt_keys_free(n->keys);
    edge_tls_ctx_free(n->tls);
    edge_writer_free(n->writer); /* stopped and closed already unless start failed */
    n->writer = NULL;
    edge_ckpt_stop(n->ckpt); /* after the writer's connection closed: its WAL hook points here */
    n->ckpt = NULL;
    n->repl.writer = NULL;
    edge__api_sessions_free(n);
    edge_rt_destroy(n->rt); /* before the feed it listens to */
    edge__api_cache_close(n);
    edge_repl_state_close(&n->repl);
    edge_tls_ctx_free(n->repl.peer_tls); /* after the links and pools that used it */
    edge_router_stats_free(n->stats);
    edge__api_cluster_nonces_close(n);
    edge__api_cluster_sigs_close(n);
    pthread_mutex_destroy(&n->streams_mu);
    pthread_mutex_destroy(&n->pool_mu);
    edge_free(n->data_dir);
    edge_free(n->region);
    edge_free(n->db_path);
    if (n->listen_keep >= 0) close(n->listen_keep);
    if (n->lock_fd >= 0) close(n->lock_fd); /* last: the database is closed by now */
    edge_free(n);
}

int edge_node_start(const struct edge_node_config *cfg, struct edge_node **out, char *errmsg, size_t errmsg_len)
{
    int rv = EDGE_ENOMEM;
    struct edge_node *n = edge_calloc(1, sizeof(*n));
    struct edge_store_conn *wconn = NULL;
    int listen_fd = -1;
    if (n == NULL) return EDGE_ENOMEM;
    n->lock_fd = -1;
    n->listen_keep = -1;
    n->cfg = *cfg;
    edge__api_cluster_nonces_init(n);
    edge__api_cluster_sigs_init(n);
    pthread_mutex_init(&n->streams_mu, NULL);
    pthread_mutex_init(&n->pool_mu, NULL);
    n->data_dir = edge_strdup(cfg->data_dir);
    n->region = edge_strdup(cfg->region);
    size_t plen = strlen(cfg->data_dir) + 32;
    n->db_path = edge_malloc(plen);
    edge_repl_state_init(&n->repl, n->region, n->db_path, cfg->conf, cfg->wan, cfg->log_keep);
    n->repl.wake = edge__api_wake;
    n->repl.wake_ud = n;
    {
        const struct edge_conf_router *rc = cfg->conf != NULL ? &cfg->conf->router : NULL;
        /* Without statistics the node still serves: the endpoints say they are off. */
        if (edge_router_stats_new(rc ? rc->stats_max_statements : 1000, rc ? (uint64_t)rc->slow_ms : 1000,
                                  &n->stats) != EDGE_OK) {
            n->stats = NULL;
        }
        n->bookmark_wait_ms = rc ? rc->bookmark_wait_ms : (int)cfg->bookmark_timeout_ms;
    }
    if (n->data_dir == NULL || n->region == NULL || n->db_path == NULL) goto out;
    snprintf(n->db_path, plen, "%s/edgelite.db", cfg->data_dir);
    n->start_wall_ms = wall_ms();
    n->start_mono_ms = mono_ms();
    if (sodium_init() < 0) {
        snprintf(errmsg, errmsg_len, "libsodium failed to initialise");
        rv = EDGE_EINTERNAL;
        goto out;
    }
    randombytes_buf(n->baton_key, sizeof(n->baton_key));
    /* Transactions run on libuv's pool and may wait for SQLite's write lock there; with
     * fewer pool threads than transaction connections, the holder of the lock could
     * find no thread to COMMIT on. Must be set before the pool's first use. */
    char pool_size[16];
    snprintf(pool_size, sizeof(pool_size), "%d", MAX_TXN_CONNS + 16);
    setenv("UV_THREADPOOL_SIZE", pool_size, 0);
    if (cfg->jwt_key_file != NULL) {
        rv = edge_jwt_keys_load(cfg->jwt_key_file, &n->keys, errmsg, errmsg_len);
        if (rv != EDGE_OK) goto out;
    }
    if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
        snprintf(errmsg, errmsg_len, "TLS needs both a certificate and a key (--tls-cert and --tls-key)");
        rv = EDGE_EINVAL;
        goto out;
    }
    if (cfg->tls_cert_file != NULL) {
        rv = edge_tls_ctx_server_new(cfg->tls_cert_file, cfg->tls_key_file, &n->tls, errmsg, errmsg_len);
        if (rv != EDGE_OK) goto out;
    }
    rv = peer_tls_open(n, cfg, errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    if (mkdir_p(cfg->data_dir) != 0) {
        snprintf(errmsg, errmsg_len, "cannot create data directory %s: %s", cfg->data_dir, strerror(errno));
        rv = EDGE_EIO;
        goto out;
    }
    rv = lock_data_dir(n, errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    rv = edge_store_global_init(errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    /* The socket first: a region being seeded answers on it (503 SEEDING) meanwhile. */
    if (cfg->use_listen_fd) {
        listen_fd = cfg->listen_fd;
        n->port = socket_port(listen_fd);
        rv = n->port > 0 ? EDGE_OK : EDGE_EINVAL;
    } else {
        rv = edge_http_listen_socket(cfg->host, cfg->port, &listen_fd, &n->port);
    }
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                 rv == EDGE_EBUSY ? "address already in use (another process listens on it)" : edge_strerror(rv));
        goto out;
    }
    char aside[4400];
    rv = seed_phase(n, cfg, listen_fd, aside, sizeof(aside), errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    rv = edge_store_open(n->db_path, EDGE_STORE_WRITE, cfg->synchronous_full, 5000, &wconn, errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    /* Without it the writer checkpoints inline, as SQLite does by default: slower, not wrong. */
    if (edge_ckpt_start(wconn, n->db_path, &n->ckpt) != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "node: no checkpoint thread; the writer checkpoints inline");
    }
    struct edge_writer_hooks hooks = {0};
    if (n->repl.cluster) {
        rv = edge_repl_state_open(&n->repl, edge_store_db(wconn), &hooks, errmsg, errmsg_len);
        if (rv != EDGE_OK) goto out;
        /* Re-seeded: this region's own entries that only the old copy held (best effort,
         * logged; the old copy stays next to the database either way). */
        if (aside[0] != '\0') (void)edge_repl_reapply_own(&n->repl, edge_store_db(wconn), aside);
    }
    /* before anything is served: the cache hears of every commit from the first */
    rv = edge__api_cache_open(n);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot start the hot-read cache: %s", edge_strerror(rv));
        goto out;
    }
    bool single_hooks = edge__api_cache_writer_hooks(n, &hooks);
    rv = edge__api_sessions_open(n, edge_store_db(wconn), errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    rv = edge_writer_start(wconn, 256, n->repl.cluster || single_hooks ? &hooks : NULL, &n->writer);
    wconn = NULL;
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot start the writer thread");
        goto out;
    }
    n->writer_queue = cfg->conf != NULL ? cfg->conf->writer_queue : EDGE_CONF_WRITER_QUEUE;
    edge_writer_set_max_queued(n->writer, (size_t)n->writer_queue);
    n->ws_output_bytes = cfg->conf != NULL ? cfg->conf->ws_output_bytes : EDGE_CONF_WS_OUTPUT_BYTES;
    n->repl.writer = n->writer;
    n->listen_keep = fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    n->loops = edge_calloc((size_t)threads, sizeof(*n->loops));
    if (n->loops == NULL) {
        rv = EDGE_ENOMEM;
        goto out;
    }
    rv = edge__api_realtime_start(n, threads);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot start the real-time engine: %s", edge_strerror(rv));
        goto out;
    }
    for (int i = 0; i < threads; i++) {
        n->n_loops = i + 1;
        n->loops[i].listen_fd = -1;
        /* The port is bound once; every loop accepts on its own descriptor of that socket. */
        int fd = i == threads - 1 ? listen_fd : fcntl(listen_fd, F_DUPFD_CLOEXEC, 0);
        bool inited = fd >= 0;
        if (!inited) {
            snprintf(errmsg, errmsg_len, "cannot share the listening socket: %s", strerror(errno));
            n->n_loops = i; /* loop i was never initialised */
            rv = EDGE_EIO;
        } else {
            if (i == threads - 1) listen_fd = -1; /* owned by the last loop's server now */
            n->loops[i].listen_fd = fd;
            rv = loop_init(n, &n->loops[i], i);
            if (rv != EDGE_OK) snprintf(errmsg, errmsg_len, "%s", n->loops[i].errmsg);
        }
        if (rv != EDGE_OK) {
            /* Close what was started so far without running threads. */
            for (int j = 0; j < (inited ? i + 1 : i); j++) {
                struct loop *l = &n->loops[j];
                if (l->http) edge_http_server_stop(l->http, on_server_stopped, l);
                if (j == 0 && l->sweep_timer.data != NULL) uv_close((uv_handle_t *)&l->sweep_timer, NULL);
                if (j == 0 && l->compact_timer.data != NULL) uv_close((uv_handle_t *)&l->compact_timer, NULL);
                if (j == 0 && l->tomb_timer.data != NULL) uv_close((uv_handle_t *)&l->tomb_timer, NULL);
                uv_close((uv_handle_t *)&l->inbox_async, NULL);
                uv_close((uv_handle_t *)&l->stop_async, NULL);
                uv_close((uv_handle_t *)&l->drain_async, NULL);
                uv_close((uv_handle_t *)&l->drain_timer, NULL);
                if (l->snap_check.data != NULL) uv_close((uv_handle_t *)&l->snap_check, NULL);
                edge__api_wait_stop(l);
                edge__api_sessions_loop_stop(l);
                if (l->wake_ready) uv_close((uv_handle_t *)&l->wake_async, NULL);
                l->wake_ready = false;
                uv_run(&l->loop, UV_RUN_DEFAULT);
            }
            goto out;
        }
    }
    for (int i = 0; i < threads; i++) {
        uv_thread_create(&n->loops[i].thread, loop_main, &n->loops[i]);
    }
    if (n->repl.cluster) {
        rv = edge_repl_peers_start(&n->repl, errmsg, errmsg_len);
        if (rv != EDGE_OK) {
            struct edge_node *tmp = n;
            n = NULL;
            edge_node_stop(tmp);
            goto out;
        }
    }
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "node: region=%s listening on %s:%d, %d loop threads, data %s",
             n->region, cfg->host, n->port, threads, n->db_path);
    *out = n;
    n = NULL;
    rv = EDGE_OK;
out:
    if (listen_fd >= 0) close(listen_fd);
    if (wconn != NULL && n != NULL) {
        edge_capture_destroy(n->repl.wcap);
        n->repl.wcap = NULL;
    }
    edge_store_close(wconn);
    if (n != NULL) {
        node_free(n);
    }
    return rv;
}

void edge_node_stop(struct edge_node *n)
{
    for (int i = 0; i < n->n_loops; i++) {
        uv_async_send(&n->loops[i].stop_async);
        /* A read still running inline on a loop would hold up the stop until its time
         * budget ends (or for ever without one). */
        sqlite3_interrupt(edge_store_db(n->loops[i].rconn));
    }
    edge_repl_peers_stop(&n->repl);
    edge__api_sessions_quiesce(n);
    /* Queued writes finish and are delivered to the (still running) loops, whose
     * connections are gone by now; then the loops may end. */
    /* Closed, not freed: a loop may still submit (a timer that fires before the loop
     * sees its stop); it gets EDGE_ECLOSED. Freed in node_free once the loops ended. */
    /* Its run would make the writer's fold of the WAL (in close) SQLITE_BUSY; the hook
     * stays valid, freed after the writer in node_free. */
    edge_ckpt_quiesce(n->ckpt);
    edge_writer_close(n->writer);
    for (int i = 0; i < n->n_loops; i++) {
        struct loop *l = &n->loops[i];
        pthread_mutex_lock(&l->inbox_mu);
        l->final = true;
        pthread_mutex_unlock(&l->inbox_mu);
        uv_async_send(&l->inbox_async);
    }
    for (int i = 0; i < n->n_loops; i++) {
        uv_thread_join(&n->loops[i].thread);
    }
    node_free(n);
}

