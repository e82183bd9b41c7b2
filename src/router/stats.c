/* SPDX-License-Identifier: MIT */
/* Statement statistics, pg_stat_statements-like: per (normalized statement, region),
 * calls, errors, rows, cache hits, total time and a bounded latency histogram.
 *
 * DESIGN: one table behind one mutex, shared by every loop and the writer thread; a
 * record is a hash lookup and a few additions (the normalization happens before the
 * lock). The table is bounded: when a new statement finds it full, the least-called 5%
 * (at least one entry; among equals the least recently used) are dropped at once, so
 * eviction costs O(n log n) once per n/20 new statements, not per insert. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"
#include "router/router.h"

/* ---------------------------------------------------------------------------------- */
/* Histogram                                                                          */
/* ---------------------------------------------------------------------------------- */

/* Bucket i holds latencies up to 1.25^i us (bucket 0: up to 1 us; the last: the rest). */
static double bucket_upper_us(int i)
{
    return pow(1.25, (double)i);
}

void edge_router_hist_add(struct edge_router_hist *h, uint64_t ns)
{
    double us = (double)ns / 1000.0;
    int i = us <= 1.0 ? 0 : (int)ceil(log(us) / log(1.25));
    if (i < 0) i = 0;
    /* log() may land a hair under the true bucket: step to the first bound at or above us */
    while (i < EDGE_ROUTER_HIST_N - 1 && bucket_upper_us(i) < us) i++;
    while (i > 0 && bucket_upper_us(i - 1) >= us) i--;
    if (i >= EDGE_ROUTER_HIST_N) i = EDGE_ROUTER_HIST_N - 1;
    h->b[i]++;
    h->n++;
}

double edge_router_hist_quantile(const struct edge_router_hist *h, double q)
{
    if (h->n == 0) return 0.0;
    /* the smallest bucket whose cumulative count reaches ceil(q * n) */
    uint64_t want = (uint64_t)ceil(q * (double)h->n);
    if (want == 0) want = 1;
    uint64_t acc = 0;
    for (int i = 0; i < EDGE_ROUTER_HIST_N; i++) {
        acc += h->b[i];
        if (acc >= want) return bucket_upper_us(i) / 1000.0;
    }
    return bucket_upper_us(EDGE_ROUTER_HIST_N - 1) / 1000.0;
}

/* ---------------------------------------------------------------------------------- */
/* The table                                                                          */
/* ---------------------------------------------------------------------------------- */

struct entry {
    char *query;
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t hash;
    uint64_t calls, errors, rows, cache_hits;
    uint64_t total_ns;
    uint64_t last_use; /* the table's tick at the last call */
    struct edge_router_hist hist;
    struct entry *next; /* hash chain */
};

struct edge_router_stats {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t n_buckets;
    size_t n, max;
    uint64_t tick;
    uint64_t evicted;
    uint64_t slow_ms;
    uint64_t slow; /* statements logged as slow */
};

static uint64_t fnv(const char *s, const char *r)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (; *r; r++) h = (h ^ (unsigned char)*r) * 1099511628211ull;
    return h;
}

int edge_router_stats_new(int max_statements, uint64_t slow_ms, struct edge_router_stats **out)
{
    struct edge_router_stats *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) return EDGE_ENOMEM;
    s->max = max_statements > 0 ? (size_t)max_statements : 1000;
    s->n_buckets = 64;
    while (s->n_buckets < s->max * 2 && s->n_buckets < ((size_t)1 << 21)) s->n_buckets *= 2;
    s->buckets = edge_calloc(s->n_buckets, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        edge_free(s);
        return EDGE_ENOMEM;
    }
    s->slow_ms = slow_ms;
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return EDGE_OK;
}

static void clear(struct edge_router_stats *s)
{
    for (size_t i = 0; i < s->n_buckets; i++) {
        struct entry *e = s->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            edge_free(e->query);
            edge_free(e);
            e = next;
        }
        s->buckets[i] = NULL;
    }
    s->n = 0;
}

void edge_router_stats_free(struct edge_router_stats *s)
{
    if (s == NULL) return;
    clear(s);
    edge_free(s->buckets);
    pthread_mutex_destroy(&s->mu);
    edge_free(s);
}

void edge_router_stats_reset(struct edge_router_stats *s)
{
    pthread_mutex_lock(&s->mu);
    clear(s);
    s->evicted = 0;
    pthread_mutex_unlock(&s->mu);
}

/* Every entry, for sorting (caller frees the array; entries stay in the table). */
static struct entry **all_entries(struct edge_router_stats *s)
{
    struct entry **v = edge_calloc(s->n + 1, sizeof(*v));
    if (v == NULL) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->n_buckets; i++) {
        for (struct entry *e = s->buckets[i]; e != NULL; e = e->next) v[k++] = e;
    }
    return v;
}

static int by_fewest_calls(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    if (x->calls != y->calls) return x->calls < y->calls ? -1 : 1;
    if (x->last_use != y->last_use) return x->last_use < y->last_use ? -1 : 1;
    return 0;
}

static void unlink_entry(struct edge_router_stats *s, struct entry *e)
{
    struct entry **pp = &s->buckets[e->hash & (s->n_buckets - 1)];
    while (*pp != NULL && *pp != e) pp = &(*pp)->next;
    if (*pp == e) *pp = e->next;
    edge_free(e->query);
    edge_free(e);
    s->n--;
}

/* Make room: drop the least-called 5% (at least one). */
static void evict(struct edge_router_stats *s)
{
    struct entry **v = all_entries(s);
    size_t drop = s->n / 20;
    if (drop == 0) drop = 1;
    if (v == NULL) return;
    size_t n = s->n;
    qsort(v, n, sizeof(*v), by_fewest_calls);
    for (size_t i = 0; i < drop && i < n; i++) unlink_entry(s, v[i]);
    s->evicted += drop;
    edge_free(v);
}

void edge_router_stats_record_norm(struct edge_router_stats *s, const char *norm, const char *region, uint64_t ns,
                                   uint64_t rows, bool error, bool cache_hit)
{
    if (s == NULL || norm == NULL) return;
    if (region == NULL) region = "";
    uint64_t h = fnv(norm, region);
    bool slow = s->slow_ms > 0 && ns / 1000000u >= s->slow_ms;
    pthread_mutex_lock(&s->mu);
    s->tick++;
    struct entry *e = s->buckets[h & (s->n_buckets - 1)];
    while (e != NULL && !(e->hash == h && strcmp(e->query, norm) == 0 && strcmp(e->region, region) == 0)) e = e->next;
    if (e == NULL) {
        if (s->n >= s->max) evict(s);
        e = edge_calloc(1, sizeof(*e));
        if (e != NULL) e->query = edge_strdup(norm);
        if (e == NULL || e->query == NULL) {
            edge_free(e);
            pthread_mutex_unlock(&s->mu);
            return; /* out of memory: this call goes uncounted */
        }
        snprintf(e->region, sizeof(e->region), "%s", region);
        e->hash = h;
        e->next = s->buckets[h & (s->n_buckets - 1)];
        s->buckets[h & (s->n_buckets - 1)] = e;
        s->n++;
    }
    e->calls++;
    e->errors += error ? 1 : 0;
    e->rows += rows;
    e->cache_hits += cache_hit ? 1 : 0;
    e->total_ns += ns;
    e->last_use = s->tick;
    edge_router_hist_add(&e->hist, ns);
    if (slow) s->slow++;
    pthread_mutex_unlock(&s->mu);
    if (slow) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "slow statement (%.1f ms >= router.slow_ms %llu) in %s: %s",
                 (double)ns / 1e6, (unsigned long long)s->slow_ms, region[0] ? region : "-", norm);
    }
}

void edge_router_stats_record(struct edge_router_stats *s, const char *sql, size_t len, const char *region,
                              uint64_t ns, uint64_t rows, bool error, bool cache_hit)
{
    if (s == NULL || sql == NULL) return;
    char norm[EDGE_ROUTER_NORM_MAX];
    edge_router_normalize(sql, len, norm, sizeof(norm));
    edge_router_stats_record_norm(s, norm, region, ns, rows, error, cache_hit);
}

uint64_t edge_router_stats_slow(struct edge_router_stats *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->slow;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---------------------------------------------------------------------------------- */
/* Reports                                                                            */
/* ---------------------------------------------------------------------------------- */

enum sort_key { S_TOTAL, S_CALLS, S_ERRORS, S_ROWS, S_MEAN, S_P99, S_HITS };

static double key_of(const struct entry *e, enum sort_key k)
{
    switch (k) {
    case S_CALLS: return (double)e->calls;
    case S_ERRORS: return (double)e->errors;
    case S_ROWS: return (double)e->rows;
    case S_MEAN: return e->calls ? (double)e->total_ns / (double)e->calls : 0;
    case S_P99: return edge_router_hist_quantile(&e->hist, 0.99);
    case S_HITS: return (double)e->cache_hits;
    case S_TOTAL: break;
    }
    return (double)e->total_ns;
}

static enum sort_key g_sort; /* under s->mu: qsort has no user pointer */

static int by_key_desc(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    double kx = key_of(x, g_sort), ky = key_of(y, g_sort);
    if (kx != ky) return kx > ky ? -1 : 1;
    int c = strcmp(x->query, y->query);
    return c != 0 ? c : strcmp(x->region, y->region);
}

static int parse_sort(const char *sort, enum sort_key *k)
{
    static const struct {
        const char *name;
        enum sort_key k;
    } names[] = {{"total_time", S_TOTAL}, {"calls", S_CALLS}, {"errors", S_ERRORS}, {"rows", S_ROWS},
                 {"mean_time", S_MEAN},   {"p99", S_P99},     {"cache_hits", S_HITS}};
    if (sort == NULL || sort[0] == '\0') {
        *k = S_TOTAL;
        return EDGE_OK;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(sort, names[i].name) == 0) {
            *k = names[i].k;
            return EDGE_OK;
        }
    }
    return EDGE_EINVAL;
}

static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

/* The entries sorted by k (caller frees); *n their count. Under s->mu. */
static struct entry **sorted(struct edge_router_stats *s, enum sort_key k, size_t *n)
{
    struct entry **v = all_entries(s);
    *n = v ? s->n : 0;
    if (v == NULL) return NULL;
    pthread_mutex_lock(&sort_mu);
    g_sort = k;
    qsort(v, *n, sizeof(*v), by_key_desc);
    pthread_mutex_unlock(&sort_mu);
    return v;
}

int edge_router_stats_json(struct edge_router_stats *s, const char *sort, int limit, struct edge_buf *out)
{
    enum sort_key k;
    if (parse_sort(sort, &k) != EDGE_OK) return EDGE_EINVAL;
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    struct entry **v = sorted(s, k, &n);
    int rv = v == NULL && s->n > 0 ? EDGE_ENOMEM : EDGE_OK;
    if (rv == EDGE_OK) rv = edge_buf_puts(out, "{\"statements\":[");
    for (size_t i = 0; rv == EDGE_OK && i < n && (limit <= 0 || i < (size_t)limit); i++) {
        const struct entry *e = v[i];
        if (i > 0) rv = edge_buf_putc(out, ',');
        if (rv == EDGE_OK) rv = edge_buf_puts(out, "{\"query\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, e->query);
        if (rv == EDGE_OK) rv = edge_buf_puts(out, ",\"region\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, e->region);
        if (rv == EDGE_OK) {
            rv = edge_buf_printf(out,
                                 ",\"calls\":%llu,\"errors\":%llu,\"rows\":%llu,\"cache_hits\":%llu,"
                                 "\"total_time_ms\":%.3f,\"mean_time_ms\":%.3f,\"p50_ms\":%.3f,\"p95_ms\":%.3f,"
                                 "\"p99_ms\":%.3f}",
                                 (unsigned long long)e->calls, (unsigned long long)e->errors,
                                 (unsigned long long)e->rows, (unsigned long long)e->cache_hits,
                                 (double)e->total_ns / 1e6,
                                 e->calls ? (double)e->total_ns / 1e6 / (double)e->calls : 0.0,
                                 edge_router_hist_quantile(&e->hist, 0.50), edge_router_hist_quantile(&e->hist, 0.95),
                                 edge_router_hist_quantile(&e->hist, 0.99));
        }
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(out, "],\"count\":%zu,\"max\":%zu,\"evicted\":%llu,\"slow\":%llu}", s->n, s->max,
                             (unsigned long long)s->evicted, (unsigned long long)s->slow);
    }
    pthread_mutex_unlock(&s->mu);
    edge_free(v);
    return rv;
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static int put_label(struct edge_buf *out, const char *v)
{
    int rv = EDGE_OK;
    for (const char *p = v; *p && rv == EDGE_OK; p++) {
        if (*p == '\\' || *p == '"') {
            rv = edge_buf_putc(out, '\\');
            if (rv == EDGE_OK) rv = edge_buf_putc(out, *p);
        } else if (*p == '\n') {
            rv = edge_buf_puts(out, "\\n");
        } else {
            rv = edge_buf_putc(out, *p);
        }
    }
    return rv;
}

int edge_router_stats_prometheus(struct edge_router_stats *s, const char *prefix, int top, struct edge_buf *out)
{
    static const char *const series[] = {"calls_total", "errors_total", "rows_total", "cache_hits_total",
                                         "time_seconds_total", "p99_seconds"};
    if (top <= 0) return EDGE_OK;
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    struct entry **v = sorted(s, S_TOTAL, &n);
    int rv = EDGE_OK;
    if (n > (size_t)top) n = (size_t)top;
    for (size_t k = 0; v != NULL && k < sizeof(series) / sizeof(series[0]) && rv == EDGE_OK; k++) {
        rv = edge_buf_printf(out, "# TYPE %s_statement_%s %s\n", prefix, series[k],
                             k == 5 ? "gauge" : "counter");
        for (size_t i = 0; i < n && rv == EDGE_OK; i++) {
            const struct entry *e = v[i];
            rv = edge_buf_printf(out, "%s_statement_%s{query=\"", prefix, series[k]);
            if (rv == EDGE_OK) rv = put_label(out, e->query);
            if (rv == EDGE_OK) rv = edge_buf_puts(out, "\",region=\"");
            if (rv == EDGE_OK) rv = put_label(out, e->region);
            double val = k == 0   ? (double)e->calls
                         : k == 1 ? (double)e->errors
                         : k == 2 ? (double)e->rows
                         : k == 3 ? (double)e->cache_hits
                         : k == 4 ? (double)e->total_ns / 1e9
                                  : edge_router_hist_quantile(&e->hist, 0.99) / 1000.0;
            if (rv == EDGE_OK) rv = edge_buf_printf(out, "\"} %.9g\n", val);
        }
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(out, "# TYPE %s_statements_evicted_total counter\n%s_statements_evicted_total %llu\n",
                             prefix, prefix, (unsigned long long)s->evicted);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(out, "# TYPE %s_statements_slow_total counter\n%s_statements_slow_total %llu\n", prefix,
                             prefix, (unsigned long long)s->slow);
    }
    pthread_mutex_unlock(&s->mu);
    edge_free(v);
    return rv;
}
