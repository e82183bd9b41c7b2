/* SPDX-License-Identifier: MIT */
/* WAL checkpoints off the writer thread (see ckpt.h). */
#include "store/ckpt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

/* How long the writer waits at the hard bound for the thread's run to end: a run of the
 * whole bound (32,768 pages) takes 100-200 ms; past this the writer goes on without. */
#define CKPT_WAIT_MS 2000

struct edge_ckpt {
    sqlite3 *db; /* the checkpointer's own connection */
    pthread_t thread;
    bool joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the thread waits here for work */
    pthread_cond_t done_cv; /* the writer waits here for the thread's run to end (CLOCK_MONOTONIC) */
    bool pending;      /* under mu: the writer asked for a checkpoint */
    bool stopping;     /* under mu */
    bool running;      /* under mu: the thread is inside a checkpoint */
    bool writer_turn;  /* under mu: the writer checkpoints next; the thread starts no run */
    int pages, hard;   /* threshold and hard bound in pages */
    atomic_uint_fast64_t bg_ok, bg_busy, bg_err, wr_ok, wr_busy, wr_err, hard_hits;
    atomic_uint_fast64_t background_us, last_wal_pages, last_left;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Count one checkpoint's outcome: ok only when it copied pages back. */
static void count(struct edge_ckpt *ck, int rc, int log, int done, atomic_uint_fast64_t *ok,
                  atomic_uint_fast64_t *busy, atomic_uint_fast64_t *err)
{
    if (rc == SQLITE_OK) {
        atomic_store(&ck->last_left, (uint64_t)(log > done ? log - done : 0));
        atomic_fetch_add(done > 0 ? ok : busy, 1);
    } else if (rc == SQLITE_BUSY) {
        atomic_fetch_add(busy, 1);
    } else {
        atomic_fetch_add(err, 1);
    }
}

/* Writer thread, at the hard bound. A PASSIVE checkpoint returns SQLITE_BUSY at once
 * while the thread holds SQLite's checkpoint lock, so the writer waits (bounded) for that
 * run to end and keeps the thread from starting another before checkpointing itself. */
static void hard_checkpoint(struct edge_ckpt *ck, sqlite3 *db, const char *dbname)
{
    atomic_fetch_add(&ck->hard_hits, 1);
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, dbname, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc == SQLITE_BUSY) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += CKPT_WAIT_MS / 1000;
        dl.tv_nsec += (long)(CKPT_WAIT_MS % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&ck->mu);
        ck->writer_turn = true;
        while (ck->running) {
            if (pthread_cond_timedwait(&ck->done_cv, &ck->mu, &dl) != 0) break;
        }
        pthread_mutex_unlock(&ck->mu);
        rc = sqlite3_wal_checkpoint_v2(db, dbname, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        pthread_mutex_lock(&ck->mu);
        ck->writer_turn = false;
        pthread_cond_signal(&ck->cv);
        pthread_mutex_unlock(&ck->mu);
    }
    count(ck, rc, log, done, &ck->wr_ok, &ck->wr_busy, &ck->wr_err);
    if (rc != SQLITE_OK) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_STORE, "checkpoint at the WAL's hard bound failed: %s", sqlite3_errmsg(db));
    }
}

/* Writer thread, after each commit that wrote to the WAL (pages: its size now). */
static int wal_hook(void *ud, sqlite3 *db, const char *dbname, int pages)
{
    struct edge_ckpt *ck = ud;
    atomic_store(&ck->last_wal_pages, (uint64_t)pages);
    if (pages >= ck->hard) {
        /* The thread did not keep the WAL down: bound it here, as SQLite would have. */
        hard_checkpoint(ck, db, dbname);
        return SQLITE_OK;
    }
    /* Every commit past the threshold asks (as SQLite's own rule checkpoints at each of
     * them); asks that come while one runs make one more run, which copies back what
     * those commits appended. Once a run has copied everything, the next commit restarts
     * the WAL from its beginning and the asking stops. */
    if (pages >= ck->pages) {
        pthread_mutex_lock(&ck->mu);
        ck->pending = true;
        pthread_cond_signal(&ck->cv);
        pthread_mutex_unlock(&ck->mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    struct edge_ckpt *ck = arg;
    pthread_setname_np(pthread_self(), "edge-ckpt");
    pthread_mutex_lock(&ck->mu);
    for (;;) {
        while ((!ck->pending || ck->writer_turn) && !ck->stopping) pthread_cond_wait(&ck->cv, &ck->mu);
        if (ck->stopping) break;
        ck->pending = false;
        ck->running = true;
        pthread_mutex_unlock(&ck->mu);
        uint64_t t0 = mono_us();
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        uint64_t us = mono_us() - t0;
        count(ck, rc, log, done, &ck->bg_ok, &ck->bg_busy, &ck->bg_err);
        atomic_fetch_add(&ck->background_us, us);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_STORE, "checkpoint failed: %s", sqlite3_errmsg(ck->db));
        } else {
            EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_STORE, "checkpoint: %d of %d WAL pages copied back in %llu us", done,
                     log, (unsigned long long)us);
        }
        pthread_mutex_lock(&ck->mu);
        ck->running = false;
        pthread_cond_broadcast(&ck->done_cv);
    }
    pthread_mutex_unlock(&ck->mu);
    return NULL;
}

static void ckpt_free(struct edge_ckpt *ck)
{
    if (ck->db != NULL) sqlite3_close_v2(ck->db);
    pthread_mutex_destroy(&ck->mu);
    pthread_cond_destroy(&ck->cv);
    pthread_cond_destroy(&ck->done_cv);
    edge_free(ck);
}

/* Tests only: EDGE_TEST_CKPT_PAGES=N (16..8192) lowers the threshold (the hard bound stays
 * EDGE_CKPT_HARD_FACTOR times it), so a test reaches the bound with a few MiB. */
static int threshold(void)
{
    const char *v = getenv("EDGE_TEST_CKPT_PAGES");
    if (v == NULL) return EDGE_CKPT_PAGES;
    long n = strtol(v, NULL, 10);
    return n >= 16 && n <= EDGE_CKPT_PAGES ? (int)n : EDGE_CKPT_PAGES;
}

int edge_ckpt_start(struct edge_store_conn *wconn, const char *path, struct edge_ckpt **out)
{
    *out = NULL;
    if (wconn == NULL || path == NULL) return EDGE_EINVAL;
    struct edge_ckpt *ck = edge_calloc(1, sizeof(*ck));
    if (ck == NULL) return EDGE_ENOMEM;
    ck->joined = true;
    ck->pages = threshold();
    ck->hard = ck->pages * EDGE_CKPT_HARD_FACTOR;
    pthread_mutex_init(&ck->mu, NULL);
    pthread_cond_init(&ck->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ck->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    int rv = EDGE_ESTORE;
    /* Only checkpoints run here: no busy timeout (PASSIVE never waits), no other set-up. */
    if (sqlite3_open_v2(path, &ck->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) goto out;
    /* A connection learns that the database is in WAL mode when it first reads it; until
     * then a checkpoint does nothing (and says -1 pages). */
    if (sqlite3_exec(ck->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) goto out;
    rv = EDGE_EINTERNAL;
    if (pthread_create(&ck->thread, NULL, ckpt_main, ck) != 0) goto out;
    ck->joined = false;
    /* Replaces the automatic checkpoint (itself a WAL hook) of the writer's connection. */
    sqlite3_wal_hook(edge_store_db(wconn), wal_hook, ck);
    *out = ck;
    return EDGE_OK;
out:
    ckpt_free(ck);
    return rv;
}

void edge_ckpt_quiesce(struct edge_ckpt *ck)
{
    if (ck == NULL || ck->joined) return;
    pthread_mutex_lock(&ck->mu);
    ck->stopping = true;
    pthread_cond_signal(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
    pthread_join(ck->thread, NULL);
    ck->joined = true;
}

void edge_ckpt_stop(struct edge_ckpt *ck)
{
    if (ck == NULL) return;
    edge_ckpt_quiesce(ck);
    ckpt_free(ck);
}

void edge_ckpt_stats(struct edge_ckpt *ck, struct edge_ckpt_stats *out)
{
    *out = (struct edge_ckpt_stats){0};
    if (ck == NULL) return;
    out->bg_ok = atomic_load(&ck->bg_ok);
    out->bg_busy = atomic_load(&ck->bg_busy);
    out->bg_err = atomic_load(&ck->bg_err);
    out->wr_ok = atomic_load(&ck->wr_ok);
    out->wr_busy = atomic_load(&ck->wr_busy);
    out->wr_err = atomic_load(&ck->wr_err);
    out->hard_hits = atomic_load(&ck->hard_hits);
    out->hard_pages = (uint64_t)ck->hard;
    out->background_us = atomic_load(&ck->background_us);
    out->last_wal_pages = atomic_load(&ck->last_wal_pages);
    out->last_left = atomic_load(&ck->last_left);
}
