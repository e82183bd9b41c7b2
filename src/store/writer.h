/* SPDX-License-Identifier: MIT */
/* The writer thread: it owns the write connection and commits client writes in groups.
 *
 * Jobs queue up from any thread; the writer takes every queued job (up to a cap), runs
 * them inside one transaction, each in its own SAVEPOINT so that one failing job never
 * undoes another, commits once, and only then completes each job. A job that must run
 * outside a transaction (exclusive) gets the connection alone. Completion callbacks run
 * on the writer thread; they hand the result back to the job's origin (for the server:
 * a loop's queue plus uv_async_send). */
#ifndef EDGE_STORE_WRITER_H
#define EDGE_STORE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct edge_writer_job {
    /* Runs on the writer thread inside the group transaction (or alone if exclusive).
     * Returns EDGE_OK to keep its changes, anything else to roll its savepoint back. */
    int (*run)(struct edge_writer_job *job, struct edge_store_conn *conn);
    /* Writer thread, after the group committed (status EDGE_OK) or failed (status is
     * the error; the job's changes are gone). The job belongs to the caller again. */
    void (*complete)(struct edge_writer_job *job, int status);
    /* Optional: consecutive jobs of a group with the same run_batch run in one call,
     * in one SAVEPOINT (instead of run, each in its own), so that work they share (the
     * same object loaded and saved) is done once. Their run_status is what it returns:
     * EDGE_OK keeps the changes of all of them, anything else rolls all back. first is
     * the first of the n jobs, linked by next. */
    int (*run_batch)(struct edge_writer_job *first, int n, struct edge_store_conn *conn);
    /* With run_batch: when a batch of more than one job fails, its changes are rolled
     * back and each of its jobs runs again alone (run, in a savepoint of its own), so
     * only the jobs that fail by themselves fail. Without it the whole batch fails. */
    bool batch_fallback;
    bool exclusive;               /* run without the group transaction */
    int consistency;              /* for the group's log entry: 0 eventual, 1 strong, 2 async */
    int run_status;               /* what run returned */
    uint64_t seq;                 /* out: the log entry (this region's seq) that holds the job's changes, 0 if none */
    struct edge_writer_job *next; /* queue link, owned by the writer */
};

struct edge_writer_stats {
    uint64_t jobs;
    uint64_t groups;
    uint64_t commit_failures;
    uint64_t queued;  /* jobs waiting now */
    uint64_t refused; /* edge_writer_try_submit calls refused by the queue bound */
};

/* Replication hooks (all optional; writer thread). */
struct edge_writer_hooks {
    void *ud;
    size_t (*mark)(void *ud);                 /* before each job */
    void (*rewind)(void *ud, size_t mark);    /* a job's savepoint was rolled back */
    /* Before COMMIT of a group: record its log entry. Non-OK rolls the group back. */
    int (*before_commit)(void *ud, struct edge_store_conn *conn, int consistency, uint64_t *out_seq);
    void (*after_commit)(void *ud, uint64_t seq, int consistency);
    void (*after_rollback)(void *ud);
    void (*before_close)(void *ud, struct edge_store_conn *conn); /* at stop, before the connection closes */
};

struct edge_writer;

/* Start the writer thread on a connection (takes ownership of conn). max_group caps
 * the jobs per transaction. hooks is copied (may be NULL). */
int edge_writer_start(struct edge_store_conn *conn, int max_group, const struct edge_writer_hooks *hooks,
                      struct edge_writer **out);
/* Queue a job (the writer owns it until complete). Any thread. EDGE_ECLOSED after stop. */
int edge_writer_submit(struct edge_writer *w, struct edge_writer_job *job);
/* The same for a client's write: EDGE_EAGAIN (nothing queued) when max_queued jobs are
 * already waiting, so a burst the writer cannot keep up with is refused instead of
 * growing the queue without bound. Internal work (peer entries) uses edge_writer_submit:
 * refusing it would only make the peer resend. */
int edge_writer_try_submit(struct edge_writer *w, struct edge_writer_job *job);
/* Client writes gathered by a loop during one iteration and queued together: one wake-up
 * for all of them, and the writer takes them as one group instead of starting a
 * transaction for the first while the loop still reads the others. The caller counts them
 * against the bound as it gathers them (edge_writer_reserve), so this never refuses for
 * the bound. Jobs are linked by next, head first; the writer owns them from EDGE_OK on,
 * the caller keeps them on EDGE_ECLOSED (after stop). Any thread. */
int edge_writer_submit_list(struct edge_writer *w, struct edge_writer_job *head, struct edge_writer_job *tail,
                            size_t n);
/* Room for one more client write, with pending more already gathered by the caller and
 * not yet queued: EDGE_OK, or EDGE_EAGAIN (counted as a refusal) where
 * edge_writer_try_submit would refuse. Any thread. */
int edge_writer_reserve(struct edge_writer *w, size_t pending);
/* Bound for edge_writer_try_submit; 0 = none (the default). Any thread. */
void edge_writer_set_max_queued(struct edge_writer *w, size_t max_queued);
/* Finish queued jobs, stop the thread and close the connection, but keep the writer:
 * threads that still hold it (a loop finishing a request, a timer) get EDGE_ECLOSED from
 * a submit instead of touching freed memory. Idempotent. */
void edge_writer_close(struct edge_writer *w);
/* edge_writer_close if not yet done, then free the writer: nothing may use it after. */
void edge_writer_free(struct edge_writer *w);
/* edge_writer_free. */
void edge_writer_stop(struct edge_writer *w);
/* Counters (approximate, any thread). */
void edge_writer_stats(struct edge_writer *w, struct edge_writer_stats *out);

#endif
