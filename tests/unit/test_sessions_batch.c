/* SPDX-License-Identifier: MIT */
/* Session writes taken together by the writer (store/writer.h run_batch, as the node runs
 * them: api/sessions_own.c): one savepoint for the run, each write its own result. A
 * store error in the middle of a batch (a trigger's ABORT on one session) fails that
 * write alone and changes nothing for it; the writes before and after it commit. Writes
 * with If-Match on one session in one batch: exactly one wins each version. Real SQLite
 * file, real writer thread. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sessions/sessions.h"
#include "store/writer.h"

#define NJOBS 9

struct tjob {
    struct edge_writer_job wj; /* first */
    struct edge_sess_write w;
    char id[16];
    char blob[32];
    int store_rv;
    int status;
    bool done;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool released;
static int completed;

static int tjob_run(struct edge_writer_job *wj, struct edge_store_conn *conn)
{
    struct tjob *j = (struct tjob *)wj;
    j->store_rv = edge_sess_write(conn, &j->w);
    return j->store_rv;
}

/* As the node's batch: in order, stop at the first store error. */
static int tjob_run_batch(struct edge_writer_job *first, int n, struct edge_store_conn *conn)
{
    struct edge_writer_job *wj = first;
    for (int i = 0; i < n; i++, wj = wj->next) {
        int rv = tjob_run(wj, conn);
        if (rv != EDGE_OK) return rv;
    }
    return EDGE_OK;
}

static void tjob_complete(struct edge_writer_job *wj, int status)
{
    struct tjob *j = (struct tjob *)wj;
    pthread_mutex_lock(&mu);
    j->status = status;
    j->done = true;
    completed++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* An exclusive job that holds the writer until released: the jobs queued meanwhile are
 * taken as one group, so the session writes among them form one batch. */
static int gate_run(struct edge_writer_job *wj, struct edge_store_conn *conn)
{
    (void)wj;
    (void)conn;
    pthread_mutex_lock(&mu);
    while (!released) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return EDGE_OK;
}

static void gate_complete(struct edge_writer_job *wj, int status)
{
    (void)wj;
    (void)status;
}

struct fixture {
    char path[64];
    struct edge_writer *w;
    sqlite3 *db; /* a second connection, to install the trigger and to look */
};

static void wait_completed(int n)
{
    pthread_mutex_lock(&mu);
    while (completed < n) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* Run jobs as one group (behind the gate); returns when all completed. */
static void run_together(struct fixture *f, struct tjob *jobs, int n, bool fallback)
{
    struct edge_writer_job gate = {.run = gate_run, .complete = gate_complete, .exclusive = true};
    pthread_mutex_lock(&mu);
    released = false;
    completed = 0;
    pthread_mutex_unlock(&mu);
    assert_int_equal(edge_writer_submit(f->w, &gate), EDGE_OK);
    for (int i = 0; i < n; i++) {
        jobs[i].wj.run = tjob_run;
        jobs[i].wj.run_batch = tjob_run_batch;
        jobs[i].wj.batch_fallback = fallback;
        jobs[i].wj.complete = tjob_complete;
        assert_int_equal(edge_writer_submit(f->w, &jobs[i].wj), EDGE_OK);
    }
    pthread_mutex_lock(&mu);
    released = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    wait_completed(n);
}

static void set_write(struct tjob *j, enum edge_sess_kind kind, const char *id, const char *blob, int64_t if_match)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->id, sizeof(j->id), "%s", id);
    snprintf(j->blob, sizeof(j->blob), "%s", blob);
    j->w = (struct edge_sess_write){.kind = kind, .id = j->id, .region = "r1", .now_ms = 1700000000000,
                                    .ttl_ms = 3600000, .lifetime_ms = 86400000, .if_match = if_match,
                                    .base_version = -1, .blob = j->blob, .blob_len = strlen(j->blob),
                                    .key_id = 1, .raw_len = (int64_t)strlen(j->blob)};
}

/* The stored version and blob of id (version -1 when absent). */
static int64_t stored(struct fixture *f, const char *id, char *blob, size_t cap)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT version, blob FROM _edge_sessions WHERE id = ?", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int64_t v = -1;
    blob[0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        snprintf(blob, cap, "%.*s", sqlite3_column_bytes(st, 1), (const char *)sqlite3_column_blob(st, 1));
    }
    sqlite3_finalize(st);
    return v;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];
    snprintf(f->path, sizeof(f->path), "/tmp/edge_sessbatch_%d.db", (int)getpid());
    unlink(f->path);
    assert_int_equal(edge_store_global_init(err, sizeof(err)), EDGE_OK);
    struct edge_store_conn *conn;
    assert_int_equal(edge_store_open(f->path, EDGE_STORE_WRITE, false, 5000, &conn, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge_sess_schema(edge_store_db(conn)), EDGE_OK);
    assert_int_equal(edge_writer_start(conn, 256, NULL, &f->w), EDGE_OK);
    assert_int_equal(sqlite3_open(f->path, &f->db), SQLITE_OK);
    sqlite3_busy_timeout(f->db, 5000);
    /* the sessions s0..s8 at version 1 */
    struct tjob jobs[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s%d", i);
        set_write(&jobs[i], EDGE_SESS_CREATE, id, "v1", -1);
    }
    run_together(f, jobs, NJOBS, true);
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(jobs[i].status, EDGE_OK);
        assert_int_equal(jobs[i].w.result, EDGE_SESS_OK);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    edge_writer_free(f->w);
    sqlite3_close(f->db);
    unlink(f->path);
    char p[80];
    snprintf(p, sizeof(p), "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", f->path);
    unlink(p);
    free(f);
    return 0;
}

static void add_failing_trigger(struct fixture *f)
{
    assert_int_equal(sqlite3_exec(f->db,
                                  "CREATE TRIGGER fail_s4 BEFORE UPDATE ON _edge_sessions WHEN OLD.id = 's4'"
                                  " BEGIN SELECT RAISE(ABORT, 'injected store error'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
}

/* Nine PUTs (s0..s8 to "v2") in one batch, the fifth (s4) hitting a trigger's ABORT. */
static void put_nine_one_failing(struct fixture *f, struct tjob *jobs, bool fallback)
{
    add_failing_trigger(f);
    for (int i = 0; i < NJOBS; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s%d", i);
        set_write(&jobs[i], EDGE_SESS_REPLACE, id, "v2", -1);
    }
    run_together(f, jobs, NJOBS, fallback);
}

/* Nine PUTs in one batch, the fifth hitting a store error: it alone fails. */
static void test_store_error_mid_batch(void **state)
{
    struct fixture *f = *state;
    struct tjob jobs[NJOBS];
    put_nine_one_failing(f, jobs, true);
    for (int i = 0; i < NJOBS; i++) {
        char id[8], blob[32];
        snprintf(id, sizeof(id), "s%d", i);
        int64_t v = stored(f, id, blob, sizeof(blob));
        assert_int_equal(jobs[i].status, EDGE_OK); /* the group committed */
        if (i == 4) {
            assert_int_not_equal(jobs[i].wj.run_status, EDGE_OK);
            assert_int_not_equal(jobs[i].store_rv, EDGE_OK);
            assert_int_equal(v, 1); /* nothing changed for it */
            assert_string_equal(blob, "v1");
        } else {
            assert_int_equal(jobs[i].wj.run_status, EDGE_OK);
            assert_int_equal(jobs[i].w.result, EDGE_SESS_OK);
            assert_int_equal(jobs[i].w.out_version, 2);
            assert_int_equal(v, 2);
            assert_string_equal(blob, "v2");
        }
    }
}

/* Without batch_fallback the writer fails the whole batch (what the fallback is for). */
static void test_store_error_without_fallback(void **state)
{
    struct fixture *f = *state;
    struct tjob jobs[NJOBS];
    put_nine_one_failing(f, jobs, false);
    for (int i = 0; i < NJOBS; i++) {
        char id[8], blob[32];
        snprintf(id, sizeof(id), "s%d", i);
        assert_int_not_equal(jobs[i].wj.run_status, EDGE_OK);
        assert_int_equal(stored(f, id, blob, sizeof(blob)), 1);
    }
}

/* PUTs with If-Match 1 on one session, and then If-Match 2, all in one batch: exactly
 * one wins each version, the others answer the version they found. */
static void test_if_match_in_one_batch(void **state)
{
    struct fixture *f = *state;
    struct tjob jobs[8];
    for (int i = 0; i < 8; i++) {
        char blob[8];
        snprintf(blob, sizeof(blob), "w%d", i);
        set_write(&jobs[i], EDGE_SESS_REPLACE, "s0", blob, i < 4 ? 1 : 2);
    }
    run_together(f, jobs, 8, true);
    int won1 = 0, won2 = 0;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(jobs[i].status, EDGE_OK);
        assert_int_equal(jobs[i].wj.run_status, EDGE_OK);
        if (jobs[i].w.result == EDGE_SESS_OK) {
            if (i < 4) won1++;
            else won2++;
            assert_int_equal(jobs[i].w.out_version, i < 4 ? 2 : 3);
        } else {
            assert_int_equal(jobs[i].w.result, EDGE_SESS_VERSION);
            assert_int_equal(jobs[i].w.out_version, i < 4 ? 2 : 3);
        }
    }
    assert_int_equal(won1, 1);
    assert_int_equal(won2, 1);
    assert_int_equal(jobs[0].w.result, EDGE_SESS_OK); /* in queue order */
    assert_int_equal(jobs[4].w.result, EDGE_SESS_OK);
    char blob[32];
    assert_int_equal(stored(f, "s0", blob, sizeof(blob)), 3);
    assert_string_equal(blob, "w4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_error_mid_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_error_without_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_match_in_one_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
