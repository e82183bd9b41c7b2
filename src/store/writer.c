/* SPDX-License-Identifier: MIT */
#include "store/writer.h"

#include <pthread.h>
#include <stdatomic.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/sql.h"

struct edge_writer {
    struct edge_store_conn *conn;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct edge_writer_job *head, *tail;
    bool stopping;
    bool closed;        /* the thread has ended and the connection is closed */
    int max_group;
    size_t queued;      /* jobs in head..tail, under mu */
    size_t max_queued;  /* edge_writer_try_submit refuses beyond this; 0 = no bound */
    struct edge_writer_hooks hooks;
    atomic_uint_fast64_t jobs, groups, commit_failures, refused;
    atomic_uint_fast64_t queued_now; /* copy of queued for the stats, read without the lock */
};

static int exec(struct edge_store_conn *c, const char *sql)
{
    return edge_store_exec_kept(edge_store_db(c), sql); /* parsed once per connection */
}

/* strong (1) > eventual (0) > async (2) */
static int rank(int consistency)
{
    return consistency == 1 ? 2 : consistency == 0 ? 1 : 0;
}

/* A batch (j..end, excluded) that failed as a whole and asked for batch_fallback, its
 * changes already rolled back: each of its jobs runs again alone, through run, in a
 * savepoint of its own, so that only the jobs that fail by themselves fail (a store error
 * in one request of a batch must not fail the others). Returns the job that rolled the
 * whole transaction back, if one did (run_group then takes it out), else NULL. */
static struct edge_writer_job *run_alone(struct edge_writer *w, struct edge_writer_job *j,
                                         struct edge_writer_job *end)
{
    for (struct edge_writer_job *k = j; k != end; k = k->next) {
        edge_store_set_budget(w->conn, 0);
        exec(w->conn, "SAVEPOINT edge_one");
        size_t mark = w->hooks.mark ? w->hooks.mark(w->hooks.ud) : 0;
        k->run_status = k->run(k, w->conn);
        if (sqlite3_get_autocommit(edge_store_db(w->conn))) return k;
        if (k->run_status != EDGE_OK) {
            exec(w->conn, "ROLLBACK TO edge_one");
            if (w->hooks.rewind) w->hooks.rewind(w->hooks.ud, mark);
        }
        exec(w->conn, "RELEASE edge_one");
    }
    return NULL;
}

/* Run one group: BEGIN IMMEDIATE, a savepoint per job, COMMIT.
 * A job that makes SQLite roll the whole transaction back (an OR ROLLBACK conflict
 * clause, RAISE(ROLLBACK) in a trigger) would take every other job of the group with
 * it: such a job is taken out and fails alone (EDGE_ECONFLICT), and the rest of the
 * group runs again. Jobs therefore must be safe to run more than once (their changes
 * were rolled back; their output is rebuilt). */
static void run_group(struct edge_writer *w, struct edge_writer_job *group)
{
    int rc = SQLITE_OK;
    int consistency = 2;
    uint64_t seq = 0;
    struct edge_writer_job *ejected = NULL;
    for (int attempt = 0; group != NULL; attempt++) {
        rc = SQLITE_OK;
        consistency = 2;
        seq = 0;
        struct edge_writer_job *culprit = NULL;
        /* The write lock may be held by an interactive transaction; wait for it like any
         * SQLite writer would (busy timeout), then fail the group. */
        rc = exec(w->conn, "BEGIN IMMEDIATE");
        if (rc == SQLITE_OK) {
            for (struct edge_writer_job *j = group, *end; j != NULL; j = end) {
                edge_store_set_budget(w->conn, 0); /* no deadline left over from an earlier job */
                exec(w->conn, "SAVEPOINT edge_job");
                size_t mark = w->hooks.mark ? w->hooks.mark(w->hooks.ud) : 0;
                /* j..end (excluded): one job, or a run of jobs that share run_batch */
                int n = 1, st;
                for (end = j->next; j->run_batch != NULL && end != NULL && end->run_batch == j->run_batch;
                     end = end->next) {
                    n++;
                }
                st = j->run_batch != NULL ? j->run_batch(j, n, w->conn) : j->run(j, w->conn);
                if (sqlite3_get_autocommit(edge_store_db(w->conn))) {
                    culprit = j;
                    rc = SQLITE_ABORT;
                    break;
                }
                for (struct edge_writer_job *k = j; k != end; k = k->next) k->run_status = st;
                if (st != EDGE_OK) {
                    exec(w->conn, "ROLLBACK TO edge_job");
                    if (w->hooks.rewind) w->hooks.rewind(w->hooks.ud, mark);
                    if (n > 1 && j->batch_fallback) culprit = run_alone(w, j, end);
                    if (culprit != NULL) {
                        rc = SQLITE_ABORT;
                        break;
                    }
                }
                for (struct edge_writer_job *k = j; k != end; k = k->next) {
                    if (k->run_status == EDGE_OK && rank(k->consistency) > rank(consistency)) {
                        consistency = k->consistency; /* the entry takes its strongest job's level */
                    }
                }
                exec(w->conn, "RELEASE edge_job");
            }
            int hrv = EDGE_OK;
            edge_store_set_budget(w->conn, 0);
            if (rc == SQLITE_OK && w->hooks.before_commit) {
                hrv = w->hooks.before_commit(w->hooks.ud, w->conn, consistency, &seq);
            }
            if (rc == SQLITE_OK && hrv == EDGE_OK) {
                rc = exec(w->conn, "COMMIT");
            } else if (rc == SQLITE_OK) {
                rc = SQLITE_ABORT;
            }
            if (rc != SQLITE_OK && !sqlite3_get_autocommit(edge_store_db(w->conn))) {
                exec(w->conn, "ROLLBACK");
            }
        }
        if (culprit == NULL || attempt >= 16) {
            break;
        }
        if (w->hooks.after_rollback) w->hooks.after_rollback(w->hooks.ud);
        struct edge_writer_job **pp = &group;
        while (*pp != culprit) pp = &(*pp)->next;
        *pp = culprit->next;
        culprit->next = ejected;
        ejected = culprit;
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_STORE, "writer: a job rolled the group back; running the others again");
    }
    int status = rc == SQLITE_OK ? EDGE_OK : edge__err_from_sqlite(rc);
    if (group != NULL) {
        if (status == EDGE_OK && w->hooks.after_commit) {
            w->hooks.after_commit(w->hooks.ud, seq, consistency);
        } else if (status != EDGE_OK && w->hooks.after_rollback) {
            w->hooks.after_rollback(w->hooks.ud);
        }
        if (status != EDGE_OK) {
            atomic_fetch_add(&w->commit_failures, 1);
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_STORE, "writer: group failed: %s", sqlite3_errstr(rc));
        }
        atomic_fetch_add(&w->groups, 1);
    }
    while (group != NULL) {
        struct edge_writer_job *next = group->next;
        group->next = NULL;
        group->seq = status == EDGE_OK ? seq : 0;
        atomic_fetch_add(&w->jobs, 1);
        group->complete(group, status);
        group = next;
    }
    while (ejected != NULL) {
        struct edge_writer_job *next = ejected->next;
        ejected->next = NULL;
        ejected->seq = 0;
        atomic_fetch_add(&w->jobs, 1);
        ejected->complete(ejected, EDGE_ECONFLICT);
        ejected = next;
    }
}

static void *writer_main(void *arg)
{
    struct edge_writer *w = arg;
    pthread_setname_np(pthread_self(), "edge-writer");
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == NULL && !w->stopping) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        if (w->head == NULL && w->stopping) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        /* Take an exclusive job alone, or a run of group jobs up to max_group. */
        struct edge_writer_job *group = w->head, *last = w->head;
        int n = 1;
        if (!group->exclusive) {
            while (last->next != NULL && !last->next->exclusive && n < w->max_group) {
                last = last->next;
                n++;
            }
        }
        w->head = last->next;
        w->queued -= (size_t)n;
        atomic_store(&w->queued_now, w->queued);
        if (w->head == NULL) {
            w->tail = NULL;
        }
        last->next = NULL;
        pthread_mutex_unlock(&w->mu);

        if (group->exclusive) {
            edge_store_set_budget(w->conn, 0);
            group->run_status = group->run(group, w->conn);
            atomic_fetch_add(&w->jobs, 1);
            group->complete(group, EDGE_OK);
        } else {
            run_group(w, group);
        }
    }
    return NULL;
}

int edge_writer_start(struct edge_store_conn *conn, int max_group, const struct edge_writer_hooks *hooks,
                      struct edge_writer **out)
{
    struct edge_writer *w = edge_calloc(1, sizeof(*w));
    if (w == NULL) {
        edge_store_close(conn);
        return EDGE_ENOMEM;
    }
    w->conn = conn;
    w->max_group = max_group > 0 ? max_group : 256;
    if (hooks != NULL) w->hooks = *hooks;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        edge_store_close(conn);
        edge_free(w);
        return EDGE_EIO;
    }
    *out = w;
    return EDGE_OK;
}

/* Would a client write be refused, with pending more about to be queued? Under mu. */
static bool full_locked(const struct edge_writer *w, size_t pending)
{
    return w->max_queued > 0 && w->queued + pending >= w->max_queued;
}

/* Queue head..tail (n jobs linked by next) and wake the writer; bounded: refused with
 * EDGE_EAGAIN when the queue is full. */
static int enqueue(struct edge_writer *w, struct edge_writer_job *head, struct edge_writer_job *tail, size_t n,
                   bool bounded)
{
    tail->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        return EDGE_ECLOSED;
    }
    if (bounded && full_locked(w, 0)) {
        pthread_mutex_unlock(&w->mu);
        atomic_fetch_add(&w->refused, 1);
        return EDGE_EAGAIN;
    }
    w->queued += n;
    atomic_store(&w->queued_now, w->queued);
    if (w->tail != NULL) {
        w->tail->next = head;
    } else {
        w->head = head;
    }
    w->tail = tail;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return EDGE_OK;
}

int edge_writer_submit_list(struct edge_writer *w, struct edge_writer_job *head, struct edge_writer_job *tail,
                            size_t n)
{
    return head == NULL ? EDGE_OK : enqueue(w, head, tail, n, false);
}

int edge_writer_reserve(struct edge_writer *w, size_t pending)
{
    /* Other loops' gathered jobs are not counted here: the queue can pass the bound by
     * what they gather in one iteration (docs/internals/store.md). */
    pthread_mutex_lock(&w->mu);
    bool refuse = full_locked(w, pending);
    pthread_mutex_unlock(&w->mu);
    if (!refuse) return EDGE_OK;
    atomic_fetch_add(&w->refused, 1);
    return EDGE_EAGAIN;
}

int edge_writer_submit(struct edge_writer *w, struct edge_writer_job *job)
{
    return enqueue(w, job, job, 1, false);
}

int edge_writer_try_submit(struct edge_writer *w, struct edge_writer_job *job)
{
    return enqueue(w, job, job, 1, true);
}

void edge_writer_set_max_queued(struct edge_writer *w, size_t max_queued)
{
    pthread_mutex_lock(&w->mu);
    w->max_queued = max_queued;
    pthread_mutex_unlock(&w->mu);
}

void edge_writer_close(struct edge_writer *w)
{
    if (w == NULL || w->closed) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    /* Fold the WAL into the database on a clean stop (the checkpoint thread, whose run
     * would make this SQLITE_BUSY, is quiesced by now: api/node.c). */
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(edge_store_db(w->conn), NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc != SQLITE_OK || done < log) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_STORE, "stop: WAL not folded into the database (%d of %d pages): %s", done,
                 log, rc != SQLITE_OK ? sqlite3_errmsg(edge_store_db(w->conn)) : "a reader holds an older snapshot");
    }
    if (w->hooks.before_close) w->hooks.before_close(w->hooks.ud, w->conn);
    edge_store_close(w->conn);
    w->conn = NULL;
    w->closed = true;
}

void edge_writer_free(struct edge_writer *w)
{
    if (w == NULL) {
        return;
    }
    edge_writer_close(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    edge_free(w);
}

void edge_writer_stop(struct edge_writer *w)
{
    edge_writer_free(w);
}

void edge_writer_stats(struct edge_writer *w, struct edge_writer_stats *out)
{
    out->jobs = atomic_load(&w->jobs);
    out->groups = atomic_load(&w->groups);
    out->commit_failures = atomic_load(&w->commit_failures);
    out->queued = atomic_load(&w->queued_now);
    out->refused = atomic_load(&w->refused);
}
