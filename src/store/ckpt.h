/* SPDX-License-Identifier: MIT */
/* WAL checkpoints off the writer thread. SQLite's automatic checkpoint runs inside the
 * COMMIT that pushes the WAL past its threshold, on the committing thread: on the writer
 * thread that is one write (or one batch of peer entries) that takes the whole
 * checkpoint's time, 100-200 ms measured under load (it copies up to 32 MiB of pages
 * into the database and syncs it), and every write queued behind it waits as long.
 *
 * The checkpointer replaces the writer connection's automatic checkpoint with a WAL hook
 * that only signals a thread of its own, which checkpoints (PASSIVE: it never waits for
 * readers or writers, and writers never wait for it) on its own connection. Bound: when
 * the WAL still grows past EDGE_CKPT_HARD_FACTOR times the threshold (the thread cannot
 * keep up, or cannot run), the writer checkpoints inline; if the thread is mid-run (its
 * checkpoint lock makes the writer's return SQLITE_BUSY) the writer first waits, bounded,
 * for that run to end. So the WAL is no larger than with SQLite's own rule plus that
 * margin, except while a reader holds a snapshot older than the WAL's end: no checkpoint
 * can copy past it, and the WAL grows with every commit until that reader ends (the pages
 * left behind are the stats' last_left; docs/internals/store.md). */
#ifndef EDGE_STORE_CKPT_H
#define EDGE_STORE_CKPT_H

#include <stdint.h>

#include "store/store.h"

/* The writer connection's threshold, as its PRAGMA wal_autocheckpoint was (store.c). */
#define EDGE_CKPT_PAGES 8192
#define EDGE_CKPT_HARD_FACTOR 4

struct edge_ckpt;

/* Checkpoints count as ok when they copied pages back, busy when SQLite said SQLITE_BUSY
 * or nothing could be copied, err otherwise. */
struct edge_ckpt_stats {
    uint64_t bg_ok, bg_busy, bg_err; /* checkpoints run by the checkpointer thread */
    uint64_t wr_ok, wr_busy, wr_err; /* checkpoints the writer ran itself at the hard bound */
    uint64_t hard_hits;     /* commits that took the WAL past the hard bound */
    uint64_t hard_pages;    /* the hard bound in pages */
    uint64_t background_us; /* time spent in the background ones */
    uint64_t last_wal_pages; /* the WAL's size in pages at the last commit */
    uint64_t last_left;      /* WAL pages the last checkpoint could not copy back (a reader's snapshot) */
};

/* Take over the checkpoints of wconn (the writer's connection, on its thread from now on)
 * for the database at path: opens a connection of its own and starts the thread. On
 * failure wconn keeps SQLite's automatic checkpoint and *out is NULL. Stop it only after
 * wconn is closed (the hook refers to it). */
int edge_ckpt_start(struct edge_store_conn *wconn, const char *path, struct edge_ckpt **out);
/* Stop and join the thread, keeping the hook valid (the writer then checkpoints only at
 * the hard bound, without waiting): before the writer's last checkpoint, which the
 * thread's run would make SQLITE_BUSY. Idempotent; NULL is a no-op. */
void edge_ckpt_quiesce(struct edge_ckpt *ck);
/* Quiesce, then close its connection and free it; NULL is a no-op. */
void edge_ckpt_stop(struct edge_ckpt *ck);
/* Counters (any thread; all zero for NULL). */
void edge_ckpt_stats(struct edge_ckpt *ck, struct edge_ckpt_stats *out);

#endif
