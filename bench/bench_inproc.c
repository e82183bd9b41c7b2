/* SPDX-License-Identifier: MIT */
/* In-process point reads: the C API (edge_db_query, cached statement, a callback that
 * reads the text) against a bare SQLite loop (prepare once; bind / step / read column
 * / reset) over the same file, kv(id INTEGER PRIMARY KEY, v TEXT) with 100,000 rows.
 * Target: C API >= 0.9x bare.
 *
 * Method: both connections are open side by side on the same file with the same page
 * cache size (large enough for the table, so the figure is the API's cost and not
 * pread's). Each variant runs 3 rounds; in a round every side reads for ~1.6 s in
 * alternating 50 ms slices (A B A B ...), so the other load on this shared VM, which
 * swings tens of percent within seconds (PERF-NOTES.md), falls on all sides alike.
 * Reported: the median rate per side and the median of the per-round ratios. Two
 * variants: one read per implicit transaction, and 100 reads per explicit read
 * transaction (the grouping PERF-NOTES.md recommends). The C API side steps each
 * statement to SQLITE_DONE, as any caller that does not know the row count must; the
 * bare loop resets after the first row. The batched variant, where that last step
 * weighs most, also measures a C API callback returning EDGE_DB_STOP after the row
 * (the same SQLite work as the bare loop). Ids come from the same seeded generator
 * for every side. Runtime ~25 s; the first argument, if any, sets the seconds per
 * side and round (0.1 .. 10).
 *
 * Output: human lines, then machine lines. The first RESULT line carries ratio= (the
 * headline: one read per transaction), as bench/run.sh reads the first line. */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edgelite/db.h"

#define ROWS 100000
#define ROUNDS 3
#define CHUNK 1000      /* reads between clock checks; a multiple of TXN_READS */
#define TXN_READS 100   /* reads per explicit read transaction */
#define MAX_CHUNKS 100000 /* hard bound on a measurement: 1e8 reads */
#define SLICE_S 0.05      /* sides alternate every 50 ms within a round */
#define MAX_SLICES 1000   /* hard bound on the slices of a round */
#define CACHE_PRAGMA "PRAGMA cache_size=-65536" /* 64 MiB, for both connections */

static const char get_sql[] = "SELECT v FROM kv WHERE id = ?";

struct bench {
    sqlite3 *bare;
    sqlite3_stmt *bare_get;
    sqlite3_stmt *bare_begin;
    sqlite3_stmt *bare_commit;
    struct edge_db *capi;
    double seconds;  /* per side and round */
    uint64_t sink;   /* bytes seen, so no read can be optimised away */
    uint64_t rng;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t next_id(struct bench *b)
{
    /* xorshift64*: cheap next to a read, and identical for both sides. */
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return (int64_t)((b->rng * 2685821657736338717ull) % ROWS) + 1;
}

/* ---- the bare loop ---------------------------------------------------------------- */

static int bare_step_reset(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int bare_read(struct bench *b)
{
    sqlite3_stmt *s = b->bare_get;
    sqlite3_bind_int64(s, 1, next_id(b));
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return -1;
    }
    const unsigned char *t = sqlite3_column_text(s, 0);
    int n = sqlite3_column_bytes(s, 0);
    b->sink += (uint64_t)n + (t ? t[0] : 0);
    sqlite3_reset(s);
    return 0;
}

/* ---- the C API ---------------------------------------------------------------------- */

static int read_cb(void *ud, int ncols, const struct edge_value *vals)
{
    uint64_t *sink = ud;
    if (ncols != 1 || vals[0].type != EDGE_DB_TEXT) {
        return EDGE_ECORRUPT;
    }
    *sink += vals[0].len + ((const unsigned char *)vals[0].p)[0];
    return EDGE_OK;
}

/* The same, for a caller that knows a primary-key read has one row: it skips the
 * final step to SQLITE_DONE, as the bare loop does. */
static int read_first_cb(void *ud, int ncols, const struct edge_value *vals)
{
    int rv = read_cb(ud, ncols, vals);
    return rv == EDGE_OK ? EDGE_DB_STOP : rv;
}

static int capi_read(struct bench *b, edge_db_row_cb cb)
{
    struct edge_value arg = EDGE_DB_I64(next_id(b));
    return edge_db_query(b->capi, get_sql, sizeof(get_sql) - 1, &arg, 1, cb, &b->sink, NULL) == EDGE_OK ? 0 : -1;
}

static int capi_txctl(struct bench *b, const char *sql)
{
    return edge_db_query(b->capi, sql, strlen(sql), NULL, 0, NULL, NULL, NULL) == EDGE_OK ? 0 : -1;
}

/* ---- measurement -------------------------------------------------------------------- */

enum side { BARE, CAPI, CAPI_STOP, N_SIDES };
static const char *const side_name[N_SIDES] = {"bare", "C API", "C API+STOP"};

static int read_one(struct bench *b, enum side side)
{
    switch (side) {
    case BARE: return bare_read(b);
    case CAPI: return capi_read(b, read_cb);
    default: return capi_read(b, read_first_cb);
    }
}

/* Reads for at least `seconds` through one side, adding to *reads and *elapsed_s.
 * With txn, every TXN_READS reads share one read transaction. */
static int measure(struct bench *b, enum side side, int txn, double seconds, uint64_t *reads, double *elapsed_s)
{
    int capi = side != BARE;
    double t0 = now_s();
    double t = t0;
    for (int c = 0; c < MAX_CHUNKS && t - t0 < seconds; c++) {
        for (int k = 0; k < CHUNK; k += TXN_READS) {
            if (txn && (capi ? capi_txctl(b, "BEGIN") : bare_step_reset(b->bare_begin)) != 0) {
                return -1;
            }
            for (int j = 0; j < TXN_READS; j++) {
                if (read_one(b, side) != 0) {
                    return -1;
                }
            }
            if (txn && (capi ? capi_txctl(b, "COMMIT") : bare_step_reset(b->bare_commit)) != 0) {
                return -1;
            }
        }
        *reads += CHUNK;
        t = now_s();
    }
    *elapsed_s += t - t0;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median3(double v[ROUNDS])
{
    double s[ROUNDS];
    memcpy(s, v, sizeof(s));
    qsort(s, ROUNDS, sizeof(s[0]), cmp_double);
    return s[ROUNDS / 2];
}

struct variant_result {
    int n_sides;                  /* BARE, CAPI[, CAPI_STOP] */
    double rate[N_SIDES][ROUNDS]; /* reads/s per round */
    double ratio[N_SIDES][ROUNDS]; /* rate / bare rate of the same round */
    double med[N_SIDES];          /* median rate */
    double med_ratio[N_SIDES];    /* median of the per-round ratios */
};

/* One round gives each side `seconds` of reads in alternating slices of SLICE_S, so
 * the load of other processes on this shared VM falls on all sides alike; the ratio of
 * a round compares reads done in the same stretch of time. */
static int run_variant(struct bench *b, int txn, struct variant_result *r)
{
    /* Warm the page caches and statement caches outside the timed rounds. */
    for (int s = 0; s < r->n_sides; s++) {
        uint64_t n = 0;
        double t = 0;
        if (measure(b, (enum side)s, txn, 0.2, &n, &t) != 0) {
            return -1;
        }
    }
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t rng[N_SIDES], reads[N_SIDES] = {0};
        double elapsed[N_SIDES] = {0};
        for (int s = 0; s < r->n_sides; s++) {
            rng[s] = 0x9e3779b97f4a7c15ull + (uint64_t)round; /* same ids for every side */
        }
        for (int slice = 0; slice < MAX_SLICES && elapsed[BARE] < b->seconds; slice++) {
            for (int s = 0; s < r->n_sides; s++) {
                b->rng = rng[s];
                if (measure(b, (enum side)s, txn, SLICE_S, &reads[s], &elapsed[s]) != 0) {
                    return -1;
                }
                rng[s] = b->rng;
            }
        }
        for (int s = 0; s < r->n_sides; s++) {
            r->rate[s][round] = (double)reads[s] / elapsed[s];
        }
        for (int s = 0; s < r->n_sides; s++) {
            r->ratio[s][round] = r->rate[s][round] / r->rate[BARE][round];
        }
    }
    for (int s = 0; s < r->n_sides; s++) {
        r->med[s] = median3(r->rate[s]);
        r->med_ratio[s] = median3(r->ratio[s]);
    }
    return 0;
}

static void print_variant(const char *label, const struct variant_result *r)
{
    printf("%s\n", label);
    for (int s = 0; s < r->n_sides; s++) {
        printf("  %-11s %10.0f reads/s  %.3fx bare   rounds (reads/s, x bare):", side_name[s], r->med[s],
               r->med_ratio[s]);
        for (int i = 0; i < ROUNDS; i++) {
            printf(" %.0f %.3f", r->rate[s][i], r->ratio[s][i]);
        }
        printf("\n");
    }
}

/* ---- set-up ------------------------------------------------------------------------- */

static int populate(const char *path)
{
    struct edge_db *w = NULL;
    char err[EDGE_ERRMSG_SIZE];
    char v[96];
    static const char ins[] = "INSERT INTO kv(id, v) VALUES (?, ?)";
    int rv = edge_db_open(path, 0, &w, err, sizeof(err));
    if (rv != EDGE_OK) {
        fprintf(stderr, "bench_inproc: open %s: %s\n", path, err);
        return -1;
    }
    rv = edge_db_exec(w, "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT); BEGIN");
    for (int i = 1; rv == EDGE_OK && i <= ROWS; i++) {
        int n = snprintf(v, sizeof(v), "value-%06d-abcdefghijklmnopqrstuvwxyz0123456789", i);
        struct edge_value a[2] = {EDGE_DB_I64(i), EDGE_DB_TEXTN(v, (size_t)n)};
        rv = edge_db_query(w, ins, sizeof(ins) - 1, a, 2, NULL, NULL, NULL);
    }
    if (rv == EDGE_OK) {
        rv = edge_db_exec(w, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE)");
    }
    if (rv != EDGE_OK) {
        fprintf(stderr, "bench_inproc: populate: %s\n", edge_db_errmsg(w));
    }
    edge_db_close(w);
    return rv == EDGE_OK ? 0 : -1;
}

static int open_both(struct bench *b, const char *path)
{
    char err[EDGE_ERRMSG_SIZE];
    if (sqlite3_open_v2(path, &b->bare, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(b->bare, CACHE_PRAGMA, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(b->bare, get_sql, -1, &b->bare_get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(b->bare, "BEGIN", -1, &b->bare_begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(b->bare, "COMMIT", -1, &b->bare_commit, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_inproc: bare open: %s\n", b->bare ? sqlite3_errmsg(b->bare) : "out of memory");
        return -1;
    }
    if (edge_db_open(path, EDGE_DB_READONLY, &b->capi, err, sizeof(err)) != EDGE_OK) {
        fprintf(stderr, "bench_inproc: edge_db_open: %s\n", err);
        return -1;
    }
    if (edge_db_exec(b->capi, CACHE_PRAGMA) != EDGE_OK) {
        fprintf(stderr, "bench_inproc: %s\n", edge_db_errmsg(b->capi));
        return -1;
    }
    return 0;
}

static void remove_files(const char *dir, const char *path)
{
    char p[256];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    struct bench b = {.seconds = 1.6};
    struct variant_result autoc = {.n_sides = 2}, txn = {.n_sides = 3};
    char dir[] = "/tmp/edgelite-inproc.XXXXXX";
    char path[128];
    int status = 1;

    if (argc > 1) {
        b.seconds = strtod(argv[1], NULL);
        if (!(b.seconds >= 0.1 && b.seconds <= 10)) {
            fprintf(stderr, "usage: bench_inproc [seconds per side and round, 0.1..10]\n");
            return 2;
        }
    }
    if (edge_db_global_init() != EDGE_OK) { /* memory statistics off, for both sides */
        fprintf(stderr, "bench_inproc: SQLite set-up failed\n");
        return 1;
    }
    if (mkdtemp(dir) == NULL) {
        perror("bench_inproc: mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/kv.db", dir);
    double t0 = now_s();
    if (populate(path) != 0 || open_both(&b, path) != 0) {
        goto out;
    }
    printf("bench_inproc: %d rows, \"%s\", random ids; %d rounds of %.1f s per side in 50 ms slices, medians "
           "(populated in %.2f s; SQLite %s)\n",
           ROWS, get_sql, ROUNDS, b.seconds, now_s() - t0, sqlite3_libversion());
    if (run_variant(&b, 0, &autoc) != 0 || run_variant(&b, 1, &txn) != 0) {
        fprintf(stderr, "bench_inproc: a read failed: %s / %s\n", sqlite3_errmsg(b.bare), edge_db_errmsg(b.capi));
        goto out;
    }
    print_variant("point read, one per implicit transaction:", &autoc);
    print_variant("point read, 100 per read transaction:", &txn);
    printf("RESULT name=inproc_capi ops=%.0f bare_ops=%.0f ratio=%.3f rounds=%d seconds=%.1f\n", autoc.med[CAPI],
           autoc.med[BARE], autoc.med_ratio[CAPI], ROUNDS, b.seconds);
    printf("RESULT name=inproc_bare ops=%.0f\n", autoc.med[BARE]);
    printf("RESULT name=inproc_capi_txn100 ops=%.0f bare_ops=%.0f ratio=%.3f rounds=%d seconds=%.1f\n",
           txn.med[CAPI], txn.med[BARE], txn.med_ratio[CAPI], ROUNDS, b.seconds);
    printf("RESULT name=inproc_capi_stop_txn100 ops=%.0f bare_ops=%.0f ratio=%.3f rounds=%d seconds=%.1f\n",
           txn.med[CAPI_STOP], txn.med[BARE], txn.med_ratio[CAPI_STOP], ROUNDS, b.seconds);
    printf("RESULT name=inproc_bare_txn100 ops=%.0f\n", txn.med[BARE]);
    printf("(checksum %" PRIu64 ", total %.1f s)\n", b.sink, now_s() - t0);
    status = 0;
out:
    sqlite3_finalize(b.bare_get);
    sqlite3_finalize(b.bare_begin);
    sqlite3_finalize(b.bare_commit);
    sqlite3_close(b.bare);
    edge_db_close(b.capi);
    remove_files(dir, path);
    return status;
}
