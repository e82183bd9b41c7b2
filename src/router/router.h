/* SPDX-License-Identifier: MIT */
/* The query router (docs/router.md): what SQLite says a statement does (classify), where
 * it should run given the replication state (plan), what each normalized statement cost
 * (stats), shared by the node (src/api) and the front door (edgelite router).
 *
 * DESIGN: the planner is a pure function of its inputs (the classification, the local
 * and the peers' version vectors and RTTs, the consistency asked for, the bookmark), so
 * every rule is unit-tested without a cluster; the node and the front door fill the
 * inputs from their own state. Classification never looks at the SQL text: SQLite
 * prepares the statement and tells, through sqlite3_stmt_readonly and the authorizer,
 * which tables are read and written and which functions are called. */
#ifndef EDGE_ROUTER_ROUTER_H
#define EDGE_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/vclock.h"
#include "store/store.h"

#define EDGE_ROUTER_MAX_TABLES 16
#define EDGE_ROUTER_NAME_MAX 64
#define EDGE_ROUTER_MAX_REGIONS 32

/* ---------------------------------------------------------------------------------- */
/* Classification (classify.c)                                                        */
/* ---------------------------------------------------------------------------------- */

struct edge_router_class {
    int n_stmts;        /* statements classified */
    bool unknown;       /* one could not be prepared here (unknown table, bad SQL, refused) */
    bool writes;        /* one is not read-only (sqlite3_stmt_readonly) */
    bool txctl;         /* BEGIN, COMMIT, SAVEPOINT, ... */
    bool ddl;           /* CREATE, ALTER, DROP */
    bool nondeterministic; /* calls random(), datetime(), changes(), ... (never cached) */
    char read[EDGE_ROUTER_MAX_TABLES][EDGE_ROUTER_NAME_MAX];
    int n_read;
    char write[EDGE_ROUTER_MAX_TABLES][EDGE_ROUTER_NAME_MAX];
    int n_write;
    bool overflow;      /* more tables than fit (or a name too long): counts as unknown */
    char first_nondet[EDGE_ROUTER_NAME_MAX]; /* the first non-deterministic function seen */
};

/* Classify the first statement of sql[0..len) on conn (prepared once, uncached, under
 * the sandbox, with an observer on the authorizer). Several calls accumulate into out
 * (a unit of several statements); zero out first. EDGE_OK even when SQLite refuses the
 * statement (out->unknown then). */
int edge_router_classify(struct edge_store_conn *conn, const char *sql, size_t len, struct edge_router_class *out);
/* Is a function of this name non-deterministic (its result may differ between two calls
 * with the same arguments and the same data)? Built-ins only; names compared ignoring case. */
bool edge_router_func_nondeterministic(const char *name);

/* ---------------------------------------------------------------------------------- */
/* Planning (plan.c)                                                                  */
/* ---------------------------------------------------------------------------------- */

enum edge_router_kind { EDGE_ROUTER_READ, EDGE_ROUTER_WRITE, EDGE_ROUTER_TXN };
enum edge_router_cons { EDGE_ROUTER_EVENTUAL = 0, EDGE_ROUTER_STRONG = 1, EDGE_ROUTER_ASYNC = 2 };

/* Another region as this node (or the front door) sees it. */
struct edge_router_peer {
    const char *id;
    bool up;                       /* link connected / last probe answered */
    double rtt_ms;                 /* measured (EWMA); <= 0 unknown */
    const struct edge_vclock *vv;  /* its version vector as last seen; NULL unknown */
};

struct edge_router_input {
    const char *self;        /* this region; NULL for the front door (no local copy) */
    bool cluster;            /* replicating (else everything is local) */
    const char *primary;     /* the primary region */
    enum edge_router_kind kind;
    bool ddl;
    bool in_txn;             /* the stream holds an open transaction */
    bool nondeterministic;
    bool unknown_tables;     /* a statement could not be classified */
    int consistency;         /* the level in force (enum edge_router_cons), header included */
    /* bookmark (X-Edge-Bookmark), origin NULL when none */
    const char *bm_origin;
    uint64_t bm_seq;
    bool waited;             /* the bookmark wait (router.bookmark_wait_ms) is over */
    int bookmark_wait_ms;
    const struct edge_vclock *local_vv;
    /* The primary's commit point: the highest entry of the primary known to exist, from
     * the peer link's state (0 and !primary_known when no link has reported it). */
    uint64_t primary_commit;
    bool primary_known;
    /* explain: a strong read here will first ask the primary for its point (read index) */
    bool read_index;
    const struct edge_router_peer *peers;
    int n_peers;
    const char *const *fallback; /* router.fallback */
    size_t n_fallback;
    bool can_forward;        /* this request can be sent on (an HTTP pipeline that closes its stream) */
    bool forwarded;          /* it was already sent on once (X-Edge-Forwarded) */
};

enum edge_router_action {
    EDGE_ROUTE_LOCAL,   /* run here */
    EDGE_ROUTE_WAIT,    /* park until the bookmark is covered, at most bookmark_wait_ms, then plan again */
    EDGE_ROUTE_FORWARD, /* send on to target */
    EDGE_ROUTE_REFUSE,  /* answer an error (code, reason) */
};

struct edge_router_plan {
    enum edge_router_action action;
    char target[EDGE_VCLOCK_REGION_MAX + 1]; /* the region that runs it */
    const char *reason;                      /* a stable word: "read-local", "bookmark-forward", ... */
    const char *code;                        /* REFUSE: the error code */
    char fallbacks[EDGE_ROUTER_MAX_REGIONS][EDGE_VCLOCK_REGION_MAX + 1];
    int n_fallbacks;
    bool cacheable;                          /* a read the hot-read cache may answer */
    const char *cache_why;                   /* when not cacheable: why ("nondeterministic", ...) */
};

/* Plan one unit. Pure: reads only *in. */
void edge_router_plan(const struct edge_router_input *in, struct edge_router_plan *out);
const char *edge_router_action_name(enum edge_router_action a);
const char *edge_router_cons_name(int c);

/* ---------------------------------------------------------------------------------- */
/* Statement statistics (normalize.c, stats.c)                                        */
/* ---------------------------------------------------------------------------------- */

#define EDGE_ROUTER_NORM_MAX 1024

/* The statement with its literals and parameters replaced by ?, comments dropped,
 * words lower-cased, spacing made canonical, tokenized as SQLite's tokenizer does (a
 * quoted identifier stays as written). At most EDGE_ROUTER_NORM_MAX - 1 bytes (longer
 * statements are cut, ending in "..."); returns the length written to out. */
size_t edge_router_normalize(const char *sql, size_t len, char *out, size_t outcap);

struct edge_router_stats;
/* A table of at most max_statements (normalized statement, region) entries. When full,
 * the least-called 5% (at least one; ties: least recently used) are dropped to make room,
 * as pg_stat_statements does; evictions are counted. */
int edge_router_stats_new(int max_statements, uint64_t slow_ms, struct edge_router_stats **out);
void edge_router_stats_free(struct edge_router_stats *s);
/* One execution. The text is normalized here; any thread. Logs it when slower than slow_ms. */
void edge_router_stats_record(struct edge_router_stats *s, const char *sql, size_t len, const char *region,
                              uint64_t ns, uint64_t rows, bool error, bool cache_hit);
/* Same with a text already normalized. */
void edge_router_stats_record_norm(struct edge_router_stats *s, const char *norm, const char *region, uint64_t ns,
                                   uint64_t rows, bool error, bool cache_hit);
void edge_router_stats_reset(struct edge_router_stats *s);
/* sort: total_time (default), calls, errors, rows, mean_time, p99, cache_hits; EDGE_EINVAL otherwise.
 * {"statements":[{"query","region","calls","errors","rows","cache_hits","total_time_ms","mean_time_ms",
 *  "p50_ms","p95_ms","p99_ms"}...],"evicted":N,"max":M} */
int edge_router_stats_json(struct edge_router_stats *s, const char *sort, int limit, struct edge_buf *out);
/* The top `top` statements by total time as Prometheus series (prefix_calls_total{query=,region=} ...). */
int edge_router_stats_prometheus(struct edge_router_stats *s, const char *prefix, int top, struct edge_buf *out);
uint64_t edge_router_stats_slow(struct edge_router_stats *s);

/* A bounded latency histogram: log-spaced buckets (ratio 1.25) from 1 us to ~10 min. */
#define EDGE_ROUTER_HIST_N 96
struct edge_router_hist {
    uint64_t b[EDGE_ROUTER_HIST_N];
    uint64_t n;
};
void edge_router_hist_add(struct edge_router_hist *h, uint64_t ns);
/* The q-quantile (0..1) in ms: the upper bound of the bucket holding it; 0 when empty. */
double edge_router_hist_quantile(const struct edge_router_hist *h, double q);

/* ---------------------------------------------------------------------------------- */
/* The hot-read cache (cache.c)                                                       */
/* ---------------------------------------------------------------------------------- */

/* Results of read statements by key (the statement and its arguments), kept after
 * admit_after uses within window_ms, at most max_bytes in all (least recently used out).
 *
 * Never stale: every table has a generation and an in-flight count. Each commit site
 * enters the tables it wrote BEFORE its COMMIT (edge_router_cache_enter: in flight, and a
 * bump) and leaves them once the commit is visible and the change feed has told
 * (edge_router_cache_leave: a bump, and out of flight); the feed bumps too
 * (edge_router_cache_bump). A fill records the generations of the tables it reads BEFORE
 * its read snapshot starts (edge_router_cache_gens) and is kept only if none of them is
 * in flight and their generations are unchanged once it ran (edge_router_cache_put). So:
 * an entry filled before a commit is refused from the moment that commit can be seen
 * (the bump before COMMIT); a fill whose read may have missed a commit is refused,
 * whether it ends while the commit is in flight (busy) or after (the leave's bump); a fill
 * that started after a commit left has the commit in its result. A hit checks the entry's
 * generations against the current ones. A schema change or a feed reset bumps the global
 * generation, which every entry carries; EDGE_ROUTER_CACHE_ALL enters it. */
#define EDGE_ROUTER_CACHE_GENS 4096
struct edge_router_cache;
struct edge_router_cache_gens {
    int n;
    uint32_t slot[EDGE_ROUTER_MAX_TABLES];
    uint64_t gen[EDGE_ROUTER_MAX_TABLES];
    uint64_t global;
};
int edge_router_cache_new(size_t max_bytes, int admit_after, uint64_t window_ms, struct edge_router_cache **out);
void edge_router_cache_free(struct edge_router_cache *c);
/* A commit wrote table name[0..len) (any thread). */
void edge_router_cache_bump(struct edge_router_cache *c, const char *name, size_t len);
/* Everything changed (schema change, snapshot, feed reset). */
void edge_router_cache_bump_all(struct edge_router_cache *c);
/* The invalidation slot of table name[0..len) (two tables may share one). */
#define EDGE_ROUTER_CACHE_ALL UINT32_MAX
uint32_t edge_router_cache_slot(const char *name, size_t len);
/* A commit writing slot (or EDGE_ROUTER_CACHE_ALL: anything) is about to COMMIT: the slot
 * is in flight and its generation moves (any thread, lock-free). */
void edge_router_cache_enter(struct edge_router_cache *c, uint32_t slot);
/* That commit is visible or rolled back, and the feed has told: the generation moves
 * again, and the slot is out of flight (one leave per enter). */
void edge_router_cache_leave(struct edge_router_cache *c, uint32_t slot);
/* Is a commit to any of g's tables in flight now? */
bool edge_router_cache_busy(struct edge_router_cache *c, const struct edge_router_cache_gens *g);
/* The value for key into out (appended) when present and current: true. Counts a hit or a miss. */
bool edge_router_cache_get(struct edge_router_cache *c, const char *key, size_t klen, struct edge_buf *out);
/* Is it current (without counting or copying)? */
bool edge_router_cache_has(struct edge_router_cache *c, const char *key, size_t klen);
/* A miss: count a use of key; true when it is now admitted (fill it). */
bool edge_router_cache_admit(struct edge_router_cache *c, const char *key, size_t klen, uint64_t now_ms);
/* The generations of these tables now (before the fill's snapshot). */
void edge_router_cache_gens(struct edge_router_cache *c, char (*tables)[EDGE_ROUTER_NAME_MAX], int n,
                            struct edge_router_cache_gens *g);
/* Keep the fill if g is still current and none of its tables is in flight; false when it
 * was dropped (changed, in flight, too big). */
bool edge_router_cache_put(struct edge_router_cache *c, const char *key, size_t klen,
                           const struct edge_router_cache_gens *g, const char *val, size_t vlen);
struct edge_router_cache_stats {
    uint64_t hits, misses, fills, dropped_fills, evictions, stale, entries, bytes, max_bytes;
};
void edge_router_cache_stats(struct edge_router_cache *c, struct edge_router_cache_stats *out);

#endif
