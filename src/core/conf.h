/* SPDX-License-Identifier: MIT */
/* The cluster configuration (deployment/edge-config.yaml) and the region catalogue
 * (deployment/regions.json). Parsing is strict: unknown keys, wrong types and bad
 * values are errors that name the file, the line and the key. */
#ifndef EDGE_CORE_CONF_H
#define EDGE_CORE_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "edgelite/errors.h"

enum edge_consistency {
    EDGE_CONS_EVENTUAL = 0,
    EDGE_CONS_STRONG,
    EDGE_CONS_ASYNC,
};

struct edge_conf_region {
    char *id;       /* "us-west-2" */
    char *listen;   /* "127.0.0.1:8081" or NULL */
    char *url;      /* "http://127.0.0.1:8081" or NULL */
    char *data_dir; /* or NULL */
    int priority;   /* lower = preferred primary; default 100 */
    char *tls_cert; /* regions[].tls_cert: PEM certificate chain, serves https/wss; NULL = plain (path
                     * resolved against the config file's directory) */
    char *tls_key;  /* regions[].tls_key: its private key (PEM); set with tls_cert */
    /* regions[].capacity: what the region takes on. */
    struct edge_conf_capacity {
        int max_sessions; /* sessions the region serves at once, 0 = unlimited (default) */
        double weight;    /* its share of balanced load next to regions as near (> 0, default 1) */
    } capacity;
};

/* router: (src/core/conf_router.c, docs/router.md) */
struct edge_conf_router {
    int bookmark_wait_ms;   /* a read waits this long for its bookmark before going elsewhere; default 1000 */
    int slow_ms;            /* statements slower than this are logged; default 1000 */
    int rtt_slack_ms;       /* regions within this of the nearest share the load; default 10 */
    int probe_interval_ms;  /* the front door probes each region this often; default 500 */
    int request_timeout_ms; /* a request's deadline through the front door, fail-overs included; default 5000 */
    int connect_timeout_ms; /* front door WebSocket to a region: deadline of each step before its 101; default 2000 */
    int first_probe_delay_ms; /* front door: its first probes this long after it starts (regions up until then); 0 */
    char **fallback;        /* region ids tried in this order after the chosen one; none: by RTT */
    size_t n_fallback;
    int stats_max_statements; /* stats.max_statements: distinct statements kept per node; default 1000 */
    int stats_metrics_top;    /* stats.metrics_top: statements on /metrics; default 10 */
    int cache_enabled;        /* cache.enabled; default true */
    int cache_admit_after;    /* cache.admit_after: uses within the window before a result is kept; default 2 */
    int cache_window_ms;      /* cache.window_ms; default 10000 */
    int cache_max_bytes;      /* cache.max_bytes: the cache's size (LRU); default 16 MiB */
};

/* The sessions section (conf_sessions.c, docs/sessions.md). */
enum edge_sessions_partition { EDGE_SESSIONS_PARTITION_UNAVAILABLE = 0, EDGE_SESSIONS_PARTITION_AVAILABLE };
struct edge_conf_sessions {
    char *key_file;        /* sessions.key_file; NULL: a single node keeps a generated key in its data dir */
    int ttl_s;             /* default sliding TTL of a session; default 1800 */
    int max_lifetime_s;    /* absolute lifetime from creation, whatever the reads; default 86400 */
    int max_bytes;         /* largest JSON data of a session (bytes, before compression); default 65536 */
    int migrate_after;     /* consecutive accesses from one other region that move the home there; 0 = never; default 3 */
    double migrate_share;  /* share (0..1] of the last migrate_window accesses from one other region that moves the
                              home there; 0 = the share rule is off (the default) */
    int migrate_window;    /* how many of a session's most recent accesses the share is taken over; default 20 */
    int migrate_min_accesses; /* accesses counted before the share rule may move a session; default 5 */
    int partition_mode;    /* enum edge_sessions_partition; default unavailable */
    int gc_batch;          /* expired sessions deleted per GC step; default 256 */
    int gc_interval_ms;    /* time between GC steps; default 50 */
    int touch_interval_ms; /* sliding-TTL touches are batched this long; default 100 */
    int compression_level; /* zstd level -7..19 (negative: the fast levels); default -1 */
};
#define EDGE_CONF_SESSIONS_DEFAULTS                                                                                \
    {.key_file = NULL, .ttl_s = 1800, .max_lifetime_s = 86400, .max_bytes = 65536, .migrate_after = 3,             \
     .migrate_share = 0, .migrate_window = 20, .migrate_min_accesses = 5,                                         \
     .partition_mode = EDGE_SESSIONS_PARTITION_UNAVAILABLE, .gc_batch = 256, .gc_interval_ms = 50,                 \
     .touch_interval_ms = 100, .compression_level = -1}
/* replication.crdt_columns (src/core/conf_crdt.c, docs/crdt.md) */
#define EDGE_CONF_CRDT_COUNTER 1 /* pn-counter: INTEGER, writes merge as their deltas */
#define EDGE_CONF_CRDT_ORSET 2   /* or-set: TEXT holding a JSON array, merged element-wise, add-wins */
struct edge_conf_crdt_column {
    char *table;
    char *column;
    int kind; /* EDGE_CONF_CRDT_* */
};
struct edge_conf_crdt {
    struct edge_conf_crdt_column *cols;
    size_t n_cols;
};
/* The EDGE_CONF_CRDT_* kind of table.column, 0 for a plain column (cc may be NULL). */
int edge_conf_crdt_kind(const struct edge_conf_crdt *cc, const char *table, const char *column);
/* realtime: (src/core/conf_realtime.c, docs/realtime.md) */
struct edge_conf_realtime {
    int max_connections;   /* realtime WebSocket/SSE connections per node; default 10000 */
    int max_subscriptions; /* subscriptions per connection; default 64 */
    int queue_bytes;       /* unsent output per subscriber before SLOW_CONSUMER; default 1 MiB */
    int backlog_batch;     /* log entries read per loop turn while a subscriber catches up; default 512 */
};

struct edge_conf_table {
    char *name;
    enum edge_consistency level;
};

struct edge_conf {
    char *cluster_name;  /* default "edgelite" */
    char *cluster_secret; /* from secret or secret_env; NULL if none */
    char *ca_file;        /* cluster.ca_file: CAs that https peers are verified against; NULL = the system's */
    int cluster_sig_replay_max; /* cluster.sig_replay_max: nonces of signed requests remembered; default 65536 */
    struct edge_conf_region *regions;
    size_t n_regions;
    enum edge_consistency consistency; /* replication.consistency_level, default eventual */
    char *conflict_resolution;         /* default "version_vector" */
    int sync_interval_ms;              /* default 1000 */
    int max_retries;                   /* default 3 */
    int max_clock_skew_ms;             /* entries stamped further ahead are logged and counted; default 500 */
    struct edge_conf_table *tables;
    size_t n_tables;
    char *jwt_public_key_file; /* auth.jwt_public_key_file, NULL if none */
    int public_metrics;        /* auth.public_metrics: /metrics answers without a token; default 0 */
    int conflicts_keep;        /* replication.conflicts_keep: newest _edge_conflicts rows kept; default 100000 */
    int64_t conflicts_max_age_ms; /* replication.conflicts_max_age ("7d"): older rows dropped; default 7 days */
    int tombstone_gc_interval_ms; /* replication.tombstone_gc_interval_ms: tombstone collection step; default 5000 */
    int64_t max_log_bytes;     /* replication.max_log_bytes: past it the log is compacted beyond an unreachable
                                  region's acknowledgement (it then needs a snapshot); 0 = no bound; default 1 GiB */
    int writer_queue;          /* limits.writer_queue: write jobs queued before 503 WRITER_BUSY; default 10000 */
    int ws_output_bytes;       /* limits.ws_output_bytes: unsent WebSocket output before a 1009 close; default 64 MiB */
    struct edge_conf_router router;
    struct edge_conf_sessions sessions; /* sessions.* (conf_sessions.c) */
    struct edge_conf_crdt crdt; /* replication.crdt_columns */
    struct edge_conf_realtime realtime;
};

#define EDGE_CONF_CONFLICTS_KEEP 100000
#define EDGE_CONF_TOMBSTONE_GC_INTERVAL_MS 5000
#define EDGE_CONF_MAX_LOG_BYTES (1LL << 30)
#define EDGE_CONF_CONFLICTS_MAX_AGE_MS (7LL * 24 * 3600 * 1000)
#define EDGE_CONF_WRITER_QUEUE 10000
/* The replay cache of signed requests between regions (api/cluster_sig.c): its default is
 * also its largest size (40 bytes an entry plus its hash chain head). */
#define EDGE_CONF_SIG_REPLAY_MAX 65536
#define EDGE_CONF_WS_OUTPUT_BYTES (64 * 1024 * 1024)

/* Parse a YAML config file. On success *out is caller-owned (edge_conf_free). On
 * failure returns EDGE_ECONFIG (or EDGE_EIO/EDGE_ENOMEM) and writes a message of the
 * form "FILE:LINE: key 'regions[1].priority': expected an integer" into errmsg. */
int edge_conf_load(const char *path, struct edge_conf **out, char *errmsg, size_t errmsg_len);
/* Same, from a string; `name` is used in messages in place of the file name. */
int edge_conf_parse(const char *name, const char *yaml, size_t len, struct edge_conf **out,
                    char *errmsg, size_t errmsg_len);
void edge_conf_free(struct edge_conf *c);
/* The region entry with this id, or NULL. Borrowed. */
const struct edge_conf_region *edge_conf_region_find(const struct edge_conf *c, const char *id);
/* Consistency of a table: its entry in replication.tables, else the default. */
enum edge_consistency edge_conf_table_consistency(const struct edge_conf *c, const char *table);
/* "strong"/"eventual"/"async" <-> enum. parse returns EDGE_OK or EDGE_EINVAL. */
const char *edge_consistency_name(enum edge_consistency c);
int edge_consistency_parse(const char *s, enum edge_consistency *out);

/* The region catalogue: coordinates, costs and the symmetric RTT matrix. */
struct edge_region_info {
    char *id;
    char *name;
    double lat, lon;
    double cost_per_gb;
};
struct edge_regions {
    struct edge_region_info *regions;
    size_t n_regions;
    double *rtt_ms; /* n_regions * n_regions, symmetric; 0 on the diagonal; -1 unknown */
};
/* Parse regions.json (see deployment/regions.json). Errors as for edge_conf_load. */
int edge_regions_load(const char *path, struct edge_regions **out, char *errmsg, size_t errmsg_len);
void edge_regions_free(struct edge_regions *r);
/* Round-trip time between two region ids in ms, or -1 if either is unknown. */
double edge_regions_rtt_ms(const struct edge_regions *r, const char *a, const char *b);

#endif
