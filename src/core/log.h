/* SPDX-License-Identifier: MIT */
/* Logging through a sink the embedder sets (SQLite's sqlite3_log, raft's tracer): the
 * library itself never writes to stderr. EDGE_LOG checks level and module mask
 * before formatting anything. */
#ifndef EDGE_CORE_LOG_H
#define EDGE_CORE_LOG_H

#include <stdatomic.h>

enum edge_log_level { EDGE_LOG_DEBUG, EDGE_LOG_INFO, EDGE_LOG_WARN, EDGE_LOG_ERROR, EDGE_LOG_FATAL };

enum edge_log_mod {
    EDGE_MOD_CORE = 1 << 0,
    EDGE_MOD_STORE = 1 << 1,
    EDGE_MOD_NET = 1 << 2,
    EDGE_MOD_HTTP = 1 << 3,
    EDGE_MOD_API = 1 << 4,
    EDGE_MOD_REPL = 1 << 5,
    EDGE_MOD_CRDT = 1 << 6,
    EDGE_MOD_CLI = 1 << 7,
    EDGE_MOD_ALL = 0xff
};

typedef void (*edge_log_sink_cb)(void *ud, int level, const char *mod, const char *msg);

/* Set the sink (borrowed) and its user data. NULL drops every message. */
void edge_log_set_sink(edge_log_sink_cb fn, void *ud);
/* Minimum level that is formatted at all; modules traced at DEBUG (EDGE_TRACE=net,api). */
void edge_log_set_level(int level);
void edge_log_set_trace(unsigned mods);
/* Parse "debug"/"info"/"warn"/"error"; EDGE_OK or EDGE_EINVAL. */
int edge_log_level_parse(const char *s, int *out_level);
/* Parse a comma list of module names ("net,api" or "all"). */
unsigned edge_log_trace_parse(const char *s);

extern atomic_int edge__log_level;
extern atomic_uint edge__log_trace;

void edge__log(int level, int mod, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define EDGE_LOG(lvl, mod, ...)                                                        \
    do {                                                                               \
        if ((lvl) >= atomic_load_explicit(&edge__log_level, memory_order_relaxed) ||  \
            ((lvl) == EDGE_LOG_DEBUG &&                                                \
             (atomic_load_explicit(&edge__log_trace, memory_order_relaxed) & (mod)))) \
            edge__log((lvl), (mod), __VA_ARGS__);                                      \
    } while (0)

/* A sink for the daemon: one line per message on stderr with a UTC timestamp. */
void edge_log_stderr_sink(void *ud, int level, const char *mod, const char *msg);

#endif
