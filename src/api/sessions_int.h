/* SPDX-License-Identifier: MIT */
/* Internals shared by sessions_http.c (requests, reads, analytics, life cycle) and
 * sessions_own.c (writes at the home, forwarding, migration, touches, GC); the design is
 * in sessions_http.c's header comment. Not a public interface. */
#ifndef EDGE_API_SESSIONS_INT_H
#define EDGE_API_SESSIONS_INT_H

#include "api/node_int.h"
#include "net/httpc.h"
#include "net/httpc_async.h"
#include "sessions/sessions.h"

#define SESS_MAX_ATTEMPTS 5
#define SESS_WAIT_TICK_MS 3
#define SESS_WAIT_MAX_MS 3000
#define SESS_FWD_TIMEOUT_MS 5000
#define SESS_TRACK_BUCKETS 4096
#define SESS_TRACK_MAX 200000
#define SESS_TOUCH_MIN_STEP_MS 1000
#define SESS_REFUSE_REASONS 3
#define SESS_CACHE_SLOTS 1024    /* the read cache of each loop: slots (a power of two) */
#define SESS_CACHE_MAX_PLAIN 8192 /* ... and the largest plaintext it keeps */
#define SESS_GC_BUDGET_NS (10u * 1000u * 1000u) /* a GC step stops after 10 ms of deleting */
#define SESS_PLUG_MAX 64 /* client writes a loop gathers before it queues them without waiting for the iteration's end */


#define SESS_CODE_UNKNOWN 255 /* a region not in the configuration, in a track_ent's window */

/* The home's count of one session's accesses (sessions_track.c). */
struct track_ent {
    struct track_ent *next;
    char region[EDGE_SESS_REGION_MAX + 1]; /* consecutive rule: the region counted, "" after a home access */
    uint32_t count;
    uint16_t wlen, wpos; /* share rule: accesses in the window, next slot */
    uint8_t *win;        /* share rule: region codes (index in the configuration), after id; NULL when off */
    char id[];
};

struct edge__sess {
    bool enabled;
    pthread_rwlock_t submit_lock; /* writer jobs are submitted under it, read-locked */
    bool closed;                  /* set (write-locked) before the writer stops: no more jobs */
    char why_disabled[256];
    struct edge_conf_sessions conf;
    struct edge_sess_keys keys;
    /* analytics */
    _Atomic uint64_t reads, hits, misses, stale_reads, forwards, forward_errors, writes, creates, deletes;
    _Atomic uint64_t migrations_in, migrations_out, refused[SESS_REFUSE_REASONS];
    _Atomic uint64_t expirations, gc_steps, gc_max_us, gc_last_us, gc_max_wall_us, touches, reports_sent, report_errors;
    _Atomic uint64_t reports_received; /* accesses other regions reported to this home */
    _Atomic uint64_t reports_answered; /* reports of this region that a home answered (its decisions made) */
    _Atomic uint64_t partition_writes; /* writes taken here while their home was unreachable (mode available) */
    _Atomic uint64_t raw_bytes_written, sealed_bytes_written, decrypt_errors;
    /* the loops' read caches (sessions_cache.c) */
    _Atomic uint64_t cache_hits, cache_misses, cache_evictions;
    _Atomic int64_t cache_entries, cache_bytes;
    /* migration counting (home side, sessions_track.c) */
    uint8_t self_code; /* this region's code in the access windows */
    pthread_mutex_t track_mu;
    struct track_ent *track[SESS_TRACK_BUCKETS];
    _Atomic size_t n_track;
    /* totals cache for stats and metrics */
    pthread_mutex_t totals_mu;
    uint64_t totals_at_ms;
    int64_t live, sealed, raw, rows;
};

struct idlist {
    char **ids;
    size_t n, cap;
};

struct sess_peer {
    struct edge_httpca *pool;
    struct idlist report; /* accesses to report to this region (when it is their home) */
    bool up;              /* its peer link was connected at up_checked_ms */
    bool offset_known;    /* its wall clock minus ours, from the link's PING/PONG */
    double offset_ms;
    uint64_t up_checked_ms;
};

/* One decoded record of the loop's read cache (sessions_cache.c): the sealed blob it was
 * opened from, and its plaintext. One allocation: the struct, then id, blob, plain. */
struct sess_centry {
    uint32_t key_id;
    size_t blob_len, plain_len;
    char *id;
    uint8_t *blob;
    char *plain;
};

struct edge__sess_loop {
    struct loop *l;
    struct sess_centry **cache; /* SESS_CACHE_SLOTS, direct-mapped by id; NULL until the first GET */
    uv_timer_t tick;
    bool tick_armed;
    struct idlist touch; /* sessions homed here whose TTL slid */
    struct sess_peer *peers; /* per region of the configuration (index as conf->regions) */
    size_t n_peers;
    uv_timer_t gc_timer; /* loop 0 */
    bool gc_busy;
    /* Client writes of this loop iteration, queued to the writer together when it ends
     * (edge__api_sessions_flush, from plug_check after I/O and plug_prep before blocking). */
    struct edge_writer_job *plug_head, *plug_tail;
    size_t n_plug;
    uv_check_t plug_check;
    uv_prepare_t plug_prep;
};


enum job_kind { JOB_WRITE, JOB_TOUCH, JOB_GC, JOB_MIGRATE };

struct sreq;

struct sreq;

struct sjob {
    struct edge_writer_job wjob; /* first: the writer hands it back as this */
    struct edge_task task;
    struct loop *l;
    enum job_kind kind;
    int store_rv;
    int status; /* the writer's commit status */
    struct edge_sess_write w;
    struct sreq *req;       /* JOB_WRITE */
    struct idlist ids;      /* JOB_TOUCH, JOB_MIGRATE */
    char target[EDGE_SESS_REGION_MAX + 1]; /* JOB_MIGRATE */
    int64_t *epochs;        /* JOB_MIGRATE: the epoch each decision saw */
    bool *moved;            /* JOB_MIGRATE: out */
    struct edge_http_conn *conn; /* JOB_MIGRATE: the access report to answer */
    uint64_t start_ns;
    json_t *refused;        /* JOB_MIGRATE: refusals to report */
    int deleted;            /* JOB_GC */
    uint64_t run_us; /* wall time of run */
    uint64_t cpu_us; /* the writer thread's CPU time in run */
};

struct sjob_blob {
    struct sjob j;
    struct edge_buf blob;
};

/* The home's clock: this node's wall clock (the one its HLC follows). Not the HLC itself,
 * which a peer's clock running ahead would drag forward and so expire sessions early. */
static inline int64_t edge__sess_now(struct edge_node *n)
{
    (void)n;
    return (int64_t)wall_ms();
}

static inline const struct edge_conf_sessions *edge__sess_conf(struct edge_node *n) { return &n->sess->conf; }
static inline bool edge__sess_available(struct edge_node *n)
{
    return n->sess->conf.partition_mode == EDGE_SESSIONS_PARTITION_AVAILABLE;
}


/* sessions_http.c */
int edge__sess_idlist_add(struct idlist *l, const char *id);
void edge__sess_idlist_free(struct idlist *l);
int edge__sess_region_index(struct edge_node *n, const char *id); /* in the configuration, -1 if absent */
void edge__sess_respond(struct edge_node *n, struct edge_http_conn *c, uint64_t start_ns, int status, const char *extra,
                        const char *body, size_t len);
void edge__sess_error(struct edge_node *n, struct edge_http_conn *c, uint64_t start_ns, int status, const char *code,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
int64_t edge__sess_home_now(struct loop *l, const char *home);
bool edge__sess_peer_up(struct loop *l, const char *region);
/* Sessions are on here (a key ring is loaded); else answered 503 and false. */
bool edge__sess_ready(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req);
/* Migration refusal reasons, as counted (edge__sess.refused) and labelled. */
extern const char *const edge__sess_refuse_names[SESS_REFUSE_REASONS];

/* sessions_own.c */
void edge__sess_job_free(struct sjob *j);
/* client: a request's write, gathered and queued with the others of this loop iteration
 * (EDGE_EAGAIN when the writer's queue is full); else queued at once, after those. */
int edge__sess_job_submit(struct sjob *j, bool client);
/* The keep-alive connections of this loop to region idx (NULL when the url is unusable
 * or the loop is stopping). */
struct edge_httpca *edge__sess_peer_pool(struct loop *l, int idx);
void edge__sess_on_gc(uv_timer_t *t);
/* PUT, PATCH, DELETE of rest, or POST (rest NULL): run at the home or forwarded there. */
void edge__sess_write_start(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *rest,
                            int64_t if_match, const char *imh);

/* sessions_track.c: where a session is accessed from, and when it moves */
/* A handover or a refusal: the session's counts start again. Cheap when nothing is counted. */
void edge__sess_track_reset(struct edge__sess *s, const char *id);
/* An access at the home: restarts the consecutive count, and is one access of the home in the window. */
void edge__sess_track_home(struct edge__sess *s, const char *id);
/* An access reported by region from (its code from edge__sess_track_code): true when a rule says move there. */
bool edge__sess_track_remote(struct edge__sess *s, const char *id, const char *from, uint8_t from_code);
uint8_t edge__sess_track_code(int region_idx);
void edge__sess_track_clear(struct edge__sess *s);

/* sessions_cache.c: each loop's cache of decoded records, for GET */
/* The plaintext of the record (id, key_id, blob) into plain, from the cache or opened
 * (edge_sess_open) and then kept: EDGE_OK, or what edge_sess_open returned. */
int edge__sess_cache_open(struct loop *l, const char *id, uint32_t key_id, const void *blob, size_t len,
                          struct edge_buf *plain);
/* Wipe and free the loop's cache (loop_free). */
void edge__sess_cache_free(struct loop *l);

/* sessions_access.c (also edge__api_sessions_access_handle, node_int.h) */
void edge__sess_tick_arm(struct loop *l);

#endif
