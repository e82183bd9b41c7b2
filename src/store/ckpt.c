/* SPDX-License-Identifier: MIT */
/* WAL checkpoints off the writer thread (see ckpt.h). */
#include "store/ckpt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

struct edge_ckpt {
    sqlite3 *db; /* the checkpointer's own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending;  /* under mu: the writer asked for a checkpoint */
    bool stopping; /* under mu */
    atomic_uint_fast64_t background, inline_, background_us, last_wal_pages;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Writer thread, after each commit that wrote to the WAL (pages: its size now). */
static int wal_hook(void *ud, sqlite3 *db, const char *dbname, int pages)
{
    struct edge_ckpt *ck = ud;
    atomic_store(&ck->last_wal_pages, (uint64_t)pages);
    if (pages >= EDGE_CKPT_PAGES * EDGE_CKPT_HARD_FACTOR) {
        /* The thread did not keep the WAL down: bound it here, as SQLite would have. */
        sqlite3_wal_checkpoint_v2(db, dbname, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        atomic_fetch_add(&ck->inline_, 1);
        return SQLITE_OK;
    }
    /* Every commit past the threshold asks (as SQLite's own rule checkpoints at each of
     * them); asks that come while one runs make one more run, which copies back what
     * those commits appended. Once a run has copied everything, the next commit restarts
     * the WAL from its beginning and the asking stops. */
    if (pages >= EDGE_CKPT_PAGES) {
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
    pthread_mutex_lock(&ck->mu);
    for (;;) {
        while (!ck->pending && !ck->stopping) pthread_cond_wait(&ck->cv, &ck->mu);
        if (ck->stopping) break;
        ck->pending = false;
        pthread_mutex_unlock(&ck->mu);
        uint64_t t0 = mono_us();
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        uint64_t us = mono_us() - t0;
        atomic_fetch_add(&ck->background, 1);
        atomic_fetch_add(&ck->background_us, us);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_STORE, "checkpoint failed: %s", sqlite3_errmsg(ck->db));
        } else {
            EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_STORE, "checkpoint: %d of %d WAL pages copied back in %llu us", done,
                     log, (unsigned long long)us);
        }
        pthread_mutex_lock(&ck->mu);
    }
    pthread_mutex_unlock(&ck->mu);
    return NULL;
}

static void ckpt_free(struct edge_ckpt *ck)
{
    if (ck->db != NULL) sqlite3_close_v2(ck->db);
    pthread_mutex_destroy(&ck->mu);
    pthread_cond_destroy(&ck->cv);
    edge_free(ck);
}

int edge_ckpt_start(struct edge_store_conn *wconn, const char *path, struct edge_ckpt **out)
{
    *out = NULL;
    if (wconn == NULL || path == NULL) return EDGE_EINVAL;
    struct edge_ckpt *ck = edge_calloc(1, sizeof(*ck));
    if (ck == NULL) return EDGE_ENOMEM;
    pthread_mutex_init(&ck->mu, NULL);
    pthread_cond_init(&ck->cv, NULL);
    int rv = EDGE_ESTORE;
    /* Only checkpoints run here: no busy timeout (PASSIVE never waits), no other set-up. */
    if (sqlite3_open_v2(path, &ck->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) goto out;
    /* A connection learns that the database is in WAL mode when it first reads it; until
     * then a checkpoint does nothing (and says -1 pages). */
    if (sqlite3_exec(ck->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) goto out;
    rv = EDGE_EINTERNAL;
    if (pthread_create(&ck->thread, NULL, ckpt_main, ck) != 0) goto out;
    /* Replaces the automatic checkpoint (itself a WAL hook) of the writer's connection. */
    sqlite3_wal_hook(edge_store_db(wconn), wal_hook, ck);
    *out = ck;
    return EDGE_OK;
out:
    ckpt_free(ck);
    return rv;
}

void edge_ckpt_stop(struct edge_ckpt *ck)
{
    if (ck == NULL) return;
    pthread_mutex_lock(&ck->mu);
    ck->stopping = true;
    pthread_cond_signal(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
    pthread_join(ck->thread, NULL);
    ckpt_free(ck);
}

void edge_ckpt_stats(struct edge_ckpt *ck, struct edge_ckpt_stats *out)
{
    *out = (struct edge_ckpt_stats){0};
    if (ck == NULL) return;
    out->background = atomic_load(&ck->background);
    out->inline_ = atomic_load(&ck->inline_);
    out->background_us = atomic_load(&ck->background_us);
    out->last_wal_pages = atomic_load(&ck->last_wal_pages);
}
