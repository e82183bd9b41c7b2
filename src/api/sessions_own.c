/* SPDX-License-Identifier: MIT */
/* Sessions: the writes at the home and their way there (forwarding, 421 retries, waiting
 * for a bookmark or a handover), the writer jobs (writes, touches, GC steps, handovers),
 * and the home's side of migration (the tick and access reports: sessions_access.c). The
 * design is in sessions_http.c's header comment. */
#include "api/sessions_int.h"

#include <http_parser.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

const char *const edge__sess_refuse_names[SESS_REFUSE_REASONS] = {"capacity", "target_unknown", "writer_busy"};

void edge__sess_job_free(struct sjob *j)
{
    edge__sess_idlist_free(&j->ids);
    edge_free(j->epochs);
    edge_free(j->moved);
    json_decref(j->refused);
    if (j->conn != NULL) edge_http_conn_unref(j->conn);
    edge_free(j);
}

/* The writer thread's CPU time: what a GC step costs, whatever else the machine runs
 * (wall time would count the time other processes held the core). */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int job_run(struct edge_writer_job *wj, struct edge_store_conn *conn)
{
    struct sjob *j = (struct sjob *)wj;
    struct edge_node *n = j->l->node;
    /* CLOCK_THREAD_CPUTIME_ID is a system call, not a vDSO read: only a GC step's cost is
     * reported (gc_last_us, gc_max_us), so only a GC step pays for it. */
    bool timed = j->kind == JOB_GC;
    uint64_t t0 = uv_hrtime(), c0 = timed ? thread_cpu_ns() : 0;
    switch (j->kind) {
    case JOB_WRITE:
        j->w.now_ms = edge__sess_now(n);
        j->w.vv_region = edge__sess_available(n) ? n->region : NULL;
        j->store_rv = edge_sess_write(conn, &j->w);
        break;
    case JOB_TOUCH: {
        size_t touched = 0;
        j->store_rv = edge_sess_touch(conn, n->region, edge__sess_now(n), SESS_TOUCH_MIN_STEP_MS, j->ids.ids, j->ids.n,
                                      &touched);
        atomic_fetch_add(&n->sess->touches, touched);
        break;
    }
    case JOB_GC:
        j->store_rv = edge_sess_gc(conn, n->region, edge__sess_now(n), edge__sess_conf(n)->gc_batch, SESS_GC_BUDGET_NS,
                                   thread_cpu_ns,
                                   &j->deleted);
        break;
    case JOB_MIGRATE:
        j->store_rv = EDGE_OK;
        for (size_t i = 0; i < j->ids.n && j->store_rv == EDGE_OK; i++) {
            struct edge_sess_write w = {.kind = EDGE_SESS_MIGRATE, .id = j->ids.ids[i], .region = n->region,
                                        .now_ms = edge__sess_now(n), .if_match = -1, .base_version = -1,
                                        .base_epoch = j->epochs[i], .target = j->target,
                                        .vv_region = edge__sess_available(n) ? n->region : NULL};
            j->store_rv = edge_sess_write(conn, &w);
            j->moved[i] = j->store_rv == EDGE_OK && w.result == EDGE_SESS_OK;
        }
        break;
    }
    j->run_us = (uv_hrtime() - t0) / 1000;
    j->cpu_us = timed ? (thread_cpu_ns() - c0) / 1000 : 0;
    /* A failed statement rolls the job's savepoint back: it changes nothing. */
    return j->store_rv;
}

/* The session writes the writer took together (consecutive JOB_WRITE jobs of a group),
 * in one savepoint instead of one each: in order, each seeing the ones before it, each
 * with its own result. A store error ends the batch; the writer then rolls it back and
 * runs its jobs again one by one (batch_fallback), so only the failing write fails. */
static int job_run_batch(struct edge_writer_job *first, int count, struct edge_store_conn *conn)
{
    struct sjob *j0 = (struct sjob *)first;
    struct edge_node *n = j0->l->node;
    int64_t now = edge__sess_now(n);
    const char *vv_region = edge__sess_available(n) ? n->region : NULL;
    struct edge_writer_job *wj = first;
    for (int i = 0; i < count; i++, wj = wj->next) {
        struct sjob *j = (struct sjob *)wj;
        j->w.now_ms = now;
        j->w.vv_region = vv_region;
        j->store_rv = edge_sess_write(conn, &j->w);
        if (j->store_rv != EDGE_OK) return j->store_rv;
    }
    return EDGE_OK;
}

static void job_done_task(struct edge_task *t);

static void job_complete(struct edge_writer_job *wj, int status)
{
    struct sjob *j = (struct sjob *)wj;
    atomic_fetch_add(&j->l->node->repl.data_version, 1);
    j->status = status;
    j->task.run = job_done_task;
    edge__api_loop_post(j->l, &j->task);
}

static void sreq_fail(struct sreq *r, int status, const char *code, const char *msg);

/* Queue a job; internal jobs (touches, GC, handovers) are never refused by the bound.
 * A client's write waits in the loop's plug until the iteration ends, so that the writes
 * of one iteration reach the writer as one group, with one wake-up. */
int edge__sess_job_submit(struct sjob *j, bool client)
{
    struct edge_node *n = j->l->node;
    struct edge__sess_loop *sl = j->l->sess;
    j->wjob.run = job_run;
    j->wjob.complete = job_complete;
    j->wjob.next = NULL;
    if (!client) edge__api_sessions_flush(j->l); /* after the writes gathered before it */
    /* Under the read lock: edge__api_sessions_quiesce (before the writer stops) waits for
     * submissions in progress and refuses later ones, which a loop still busy when the
     * stop began (its timers fire before its stop event) would otherwise make on a freed writer. */
    int rv = EDGE_ECLOSED;
    pthread_rwlock_rdlock(&n->sess->submit_lock);
    if (!n->sess->closed) {
        if (!client) {
            rv = edge_writer_submit(n->writer, &j->wjob);
        } else if (j->l->stopping) {
            rv = EDGE_ECLOSED; /* no plug_prep to queue it any more */
        } else if ((rv = edge_writer_reserve(n->writer, sl->n_plug)) == EDGE_OK) {
            if (sl->plug_tail != NULL) {
                sl->plug_tail->next = &j->wjob;
            } else {
                sl->plug_head = &j->wjob;
            }
            sl->plug_tail = &j->wjob;
            sl->n_plug++;
        }
    }
    pthread_rwlock_unlock(&n->sess->submit_lock);
    if (rv == EDGE_OK && client && sl->n_plug >= SESS_PLUG_MAX) edge__api_sessions_flush(j->l);
    return rv;
}

void edge__api_sessions_flush(struct loop *l)
{
    struct edge__sess_loop *sl = l->sess;
    struct edge_node *n = l->node;
    if (sl == NULL || sl->plug_head == NULL) return;
    struct edge_writer_job *head = sl->plug_head, *tail = sl->plug_tail;
    size_t cnt = sl->n_plug;
    sl->plug_head = sl->plug_tail = NULL;
    sl->n_plug = 0;
    int rv = EDGE_ECLOSED;
    pthread_rwlock_rdlock(&n->sess->submit_lock);
    if (!n->sess->closed) rv = edge_writer_submit_list(n->writer, head, tail, cnt);
    pthread_rwlock_unlock(&n->sess->submit_lock);
    if (rv == EDGE_OK) return;
    /* The writer stopped between the gathering and now: nothing of these ran. */
    while (head != NULL) {
        struct sjob *j = (struct sjob *)head;
        head = head->next;
        sreq_fail(j->req, 503, "SESSION_WRITE_FAILED", "the node is stopping");
        edge_buf_free(&((struct sjob_blob *)j)->blob);
        edge__sess_job_free(j);
    }
}

/* ------------------------------------------------------------------------------------
 * Requests that may take several steps (write at the home, forward, wait, retry)
 * ---------------------------------------------------------------------------------- */

struct sreq {
    struct loop *l;
    struct edge_http_conn *conn;
    int method; /* enum http_method */
    char id[EDGE_SESS_ID_MAX + 1];
    char *body;
    size_t body_len;
    int64_t if_match;
    char if_match_raw[32];
    char *auth; /* Authorization, passed on when forwarding */
    char forwarded_from[EDGE_SESS_REGION_MAX + 1];
    int attempts; /* forwards (a new home each) */
    int retries;  /* PATCH re-reads after losing a race at the home */
    uint64_t start_ns;
    /* forwarding and waiting */
    uv_timer_t timer;
    bool timer_open;
    int phase; /* what the timer is for */
    char fwd_home[EDGE_SESS_REGION_MAX + 1];
    uint64_t half_rtt_ms;
    int fwd_rv;
    struct edge_httpc_resp resp;
    char wait_origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t wait_seq;
    int64_t wait_epoch;
    uint64_t wait_until_ms;
    bool local; /* partition_mode available: taken here, the home being unreachable */
};

enum { PH_NONE, PH_FWD_SEND, PH_FWD_ANSWER, PH_WAIT_BOOKMARK, PH_WAIT_HOME };

static void sreq_closed(uv_handle_t *h)
{
    struct sreq *r = h->data;
    edge_httpc_resp_free(&r->resp);
    edge_http_conn_unref(r->conn);
    edge_free(r->body);
    edge_free(r->auth);
    edge_free(r);
}

static void sreq_free(struct sreq *r)
{
    if (r->timer_open) {
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->timer, sreq_closed);
        return;
    }
    r->timer.data = r;
    sreq_closed((uv_handle_t *)&r->timer);
}

static void sreq_timer(struct sreq *r, int phase, uint64_t ms);
static void sreq_step(struct sreq *r);

static void sreq_fail(struct sreq *r, int status, const char *code, const char *msg)
{
    edge__sess_error(r->l->node, r->conn, r->start_ns, status, code, "%s", msg);
    sreq_free(r);
}

/* The answer of a write done here: 200/201 with the bookmark of its entry. */
static void answer_written(struct sreq *r, const struct sjob *j)
{
    struct edge_node *n = r->l->node;
    char extra[256] = "", bm[128] = "null";
    if (j->wjob.seq != 0) {
        /* "<region>:<seq>", by hand rather than by two snprintf (answers of every write) */
        char seq[EDGE_DEC_MAX];
        const char *q = edge_dec_u64(seq, j->wjob.seq);
        size_t rl = strlen(n->region), ql = strlen(q);
        if (rl + ql + 24 < sizeof(bm)) {
            memcpy(extra, "X-Edge-Bookmark: ", 17);
            memcpy(extra + 17, n->region, rl);
            extra[17 + rl] = ':';
            memcpy(extra + 18 + rl, q, ql);
            memcpy(extra + 18 + rl + ql, "\r\n", 3);
            bm[0] = '"';
            memcpy(bm + 1, n->region, rl);
            bm[1 + rl] = ':';
            memcpy(bm + 2 + rl, q, ql);
            memcpy(bm + 2 + rl + ql, "\"", 2);
        } else {
            snprintf(extra, sizeof(extra), "X-Edge-Bookmark: %s:%s\r\n", n->region, q);
            snprintf(bm, sizeof(bm), "\"%s:%s\"", n->region, q);
        }
    }
    struct edge_buf b;
    edge_buf_init(&b, 4096);
    int status = 200;
    edge_buf_puts(&b, "{\"id\":");
    edge_buf_json_cstr(&b, r->id);
    if (j->w.kind == EDGE_SESS_DELETE) {
        edge_buf_printf(&b, ",\"deleted\":true,\"bookmark\":%s}", bm);
        atomic_fetch_add(&n->sess->deletes, 1);
    } else {
        if (j->w.kind == EDGE_SESS_CREATE) status = 201;
        edge_buf_puts(&b, ",\"home\":");
        edge_buf_json_cstr(&b, j->w.out_home[0] ? j->w.out_home : n->region);
        edge_buf_puts(&b, ",\"version\":");
        edge_buf_i64(&b, j->w.out_version);
        edge_buf_puts(&b, ",\"epoch\":");
        edge_buf_i64(&b, j->w.out_epoch);
        edge_buf_puts(&b, ",\"expires_at\":");
        edge_buf_i64(&b, j->w.out_expires_at);
        edge_buf_puts(&b, ",\"bookmark\":");
        edge_buf_puts(&b, bm);
        edge_buf_puts(&b, r->local ? ",\"partitioned\":true}" : "}");
        if (r->local) {
            size_t el = strlen(extra);
            snprintf(extra + el, sizeof(extra) - el, "X-Edge-Partitioned: 1\r\n");
            atomic_fetch_add(&n->sess->partition_writes, 1);
        }
        atomic_fetch_add(status == 201 ? &n->sess->creates : &n->sess->writes, 1);
        atomic_fetch_add(&n->sess->raw_bytes_written, (uint64_t)j->w.raw_len);
        atomic_fetch_add(&n->sess->sealed_bytes_written, j->w.blob_len);
    }
    edge__sess_respond(n, r->conn, r->start_ns, status, extra, b.data, b.len);
    edge_buf_free(&b);
}

static void answer_moved(struct sreq *r, const char *home, int64_t epoch)
{
    struct edge_node *n = r->l->node;
    struct edge_buf b;
    edge_buf_init(&b, 1024);
    edge_buf_puts(&b, "{\"error\":\"the session's home is another region\",\"code\":\"SESSION_MOVED\",\"home\":");
    edge_buf_json_cstr(&b, home);
    edge_buf_printf(&b, ",\"epoch\":%" PRId64 "}", epoch);
    edge__sess_respond(n, r->conn, r->start_ns, 421, NULL, b.data, b.len);
    edge_buf_free(&b);
}

/* ---- forwarding to the home ---- */

struct edge_httpca *edge__sess_peer_pool(struct loop *l, int idx)
{
    struct edge__sess_loop *sl = l->sess;
    struct edge_node *n = l->node;
    if (idx < 0 || (size_t)idx >= sl->n_peers || l->stopping) return NULL;
    if (sl->peers[idx].pool != NULL) return sl->peers[idx].pool;
    const char *url = n->cfg.conf->regions[idx].url;
    uint64_t idle = n->cfg.idle_conn_timeout_ms / 2;
    if (edge__api_peer_pool(l, url, EDGE_API_FORWARD_CONNS, idle ? idle : 1, &sl->peers[idx].pool) != EDGE_OK) {
        sl->peers[idx].pool = NULL;
    }
    return sl->peers[idx].pool;
}

static void fwd_answer(struct sreq *r);

static void fwd_done(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct sreq *r = ud;
    r->fwd_rv = rv;
    if (rv == EDGE_OK) {
        r->resp = *resp;
        memset(&resp->body, 0, sizeof(resp->body));
    }
    if (r->half_rtt_ms > 0 && !r->l->stopping) {
        sreq_timer(r, PH_FWD_ANSWER, r->half_rtt_ms);
    } else {
        fwd_answer(r);
    }
}

static void fwd_send(struct sreq *r)
{
    struct edge_node *n = r->l->node;
    static const char *const mnames[] = {[HTTP_PUT] = "PUT", [HTTP_PATCH] = "PATCH", [HTTP_DELETE] = "DELETE"};
    const char *m = (r->method == HTTP_PUT || r->method == HTTP_PATCH || r->method == HTTP_DELETE) ? mnames[r->method]
                                                                                                 : "PUT";
    char path[EDGE_SESS_ID_MAX + 32], headers[2048];
    snprintf(path, sizeof(path), "/v1/sessions/%s", r->id);
    snprintf(headers, sizeof(headers), "X-Edge-Forwarded: %s\r\n%s%s%s%s%s%s", n->region, r->auth ? "Authorization: " : "",
             r->auth ? r->auth : "", r->auth ? "\r\n" : "", r->if_match_raw[0] ? "If-Match: " : "", r->if_match_raw,
             r->if_match_raw[0] ? "\r\n" : "");
    /* The body holds session data: it crosses to the home sealed like the stored record,
     * bound to this session (fwd_aad) so it cannot be replayed on another. */
    struct edge_buf sealed;
    edge_buf_init(&sealed, (size_t)1 << 27);
    uint32_t kid = 0;
    char aad[EDGE_SESS_ID_MAX + 8];
    snprintf(aad, sizeof(aad), "fwd:%s", r->id);
    int rv = edge_sess_seal(&n->sess->keys, 1, aad, r->body ? r->body : "", r->body_len, &sealed, &kid);
    size_t hl = strlen(headers);
    snprintf(headers + hl, sizeof(headers) - hl, "X-Edge-Sealed: %u\r\n", kid);
    struct edge_httpca *p = edge__sess_peer_pool(r->l, edge__sess_region_index(n, r->fwd_home));
    if (rv == EDGE_OK) {
        rv = p == NULL ? EDGE_ECLOSED
                       : edge_httpca_request(p, m, path, headers, sealed.data ? sealed.data : "", sealed.len,
                                             SESS_FWD_TIMEOUT_MS, (size_t)1 << 26, fwd_done, r);
    }
    edge_buf_free(&sealed);
    if (rv != EDGE_OK) {
        r->fwd_rv = EDGE_EIO;
        fwd_answer(r);
    }
}

/* sessions.partition_mode: available: a PUT or PATCH whose home cannot be reached is
 * taken here, counted in the record's version vector, and merged when the partition heals
 * (repl/apply_sess.c). A DELETE still needs the home; so does a write forwarded to us. */
static bool take_locally(struct sreq *r, const char *home, bool unreachable)
{
    struct edge_node *n = r->l->node;
    if (!edge__sess_available(n) || r->local || r->forwarded_from[0] != '\0' || r->method == HTTP_DELETE ||
        r->method == HTTP_POST) {
        return false;
    }
    if (!unreachable && edge__sess_peer_up(r->l, home)) return false;
    r->local = true;
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "sessions: %s: home %s unreachable, write taken here (partition_mode available)",
             r->id, home);
    sreq_step(r);
    return true;
}

static void forward(struct sreq *r, const char *home)
{
    struct edge_node *n = r->l->node;
    if (take_locally(r, home, false)) return;
    if (r->attempts++ >= SESS_MAX_ATTEMPTS) {
        sreq_fail(r, 503, "SESSION_MOVING", "the session's home kept moving; try again");
        return;
    }
    snprintf(r->fwd_home, sizeof(r->fwd_home), "%s", home);
    if (edge__sess_region_index(n, home) < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the session's home region '%s' is not in this cluster's configuration", home);
        sreq_fail(r, 503, "SESSION_HOME_UNREACHABLE", msg);
        return;
    }
    atomic_fetch_add(&n->sess->forwards, 1);
    double rtt = n->cfg.wan ? edge_regions_rtt_ms(n->cfg.wan, n->region, home) : 0;
    r->half_rtt_ms = rtt > 0 ? (uint64_t)(rtt / 2.0 + 0.5) : 0;
    edge_httpc_resp_free(&r->resp);
    memset(&r->resp, 0, sizeof(r->resp));
    if (r->half_rtt_ms > 0) {
        sreq_timer(r, PH_FWD_SEND, r->half_rtt_ms);
    } else {
        fwd_send(r);
    }
}

static bool home_row_is_here(struct sreq *r, int64_t epoch)
{
    struct edge_node *n = r->l->node;
    struct edge_sess_row row;
    edge_buf_init(&row.blob, (size_t)1 << 26);
    edge__api_read_snapshot(r->l);
    int rv = edge_sess_get(r->l->rconn, r->id, &row);
    bool here = rv == EDGE_OK && row.epoch >= epoch && strcmp(row.home, n->region) == 0;
    bool gone = rv == EDGE_ENOTFOUND || (rv == EDGE_OK && row.epoch > epoch && strcmp(row.home, n->region) != 0);
    edge_buf_free(&row.blob);
    return here || gone;
}

/* A forwarded write is an access from this region: reported to the home like a read. */
static void fwd_report(struct sreq *r)
{
    if (r->resp.status < 200 || r->resp.status >= 300 || r->method == HTTP_DELETE) return;
    int idx = edge__sess_region_index(r->l->node, r->fwd_home);
    if (idx >= 0 && edge__sess_idlist_add(&r->l->sess->peers[idx].report, r->id) == EDGE_OK) edge__sess_tick_arm(r->l);
}

static void fwd_answer(struct sreq *r)
{
    struct edge_node *n = r->l->node;
    if (r->fwd_rv != EDGE_OK) {
        atomic_fetch_add(&n->sess->forward_errors, 1);
        if (take_locally(r, r->fwd_home, true)) return;
        struct edge_buf b;
        edge_buf_init(&b, 1024);
        char msg[256];
        snprintf(msg, sizeof(msg), "the session's home region %s could not be reached (%s); writes need the home",
                 r->fwd_home, edge_strerror(r->fwd_rv));
        edge_buf_puts(&b, "{\"error\":");
        edge_buf_json_cstr(&b, msg);
        edge_buf_puts(&b, ",\"code\":\"SESSION_HOME_UNREACHABLE\",\"home\":");
        edge_buf_json_cstr(&b, r->fwd_home);
        edge_buf_putc(&b, '}');
        edge__sess_respond(n, r->conn, r->start_ns, 503, "Retry-After: 1\r\n", b.data, b.len);
        edge_buf_free(&b);
        sreq_free(r);
        return;
    }
    if (r->resp.status == 421) {
        json_t *doc = json_loadb(r->resp.body.data ? r->resp.body.data : "", r->resp.body.len, 0, NULL);
        const char *home = json_string_value(json_object_get(doc, "home"));
        json_t *ep = json_object_get(doc, "epoch");
        if (home == NULL || !json_is_integer(ep)) {
            json_decref(doc);
            sreq_fail(r, 502, "SESSION_BAD_FORWARD", "the home region answered 421 without a new home");
            return;
        }
        char h[EDGE_SESS_REGION_MAX + 1];
        snprintf(h, sizeof(h), "%s", home);
        int64_t epoch = json_integer_value(ep);
        json_decref(doc);
        if (strcmp(h, n->region) == 0) {
            /* This region is the new home: run here once the handover entry is applied. */
            r->wait_epoch = epoch;
            r->wait_until_ms = mono_ms() + SESS_WAIT_MAX_MS;
            if (home_row_is_here(r, epoch)) {
                sreq_step(r);
            } else {
                sreq_timer(r, PH_WAIT_HOME, SESS_WAIT_TICK_MS);
            }
        } else {
            forward(r, h);
        }
        return;
    }
    if (r->resp.status >= 200 && r->resp.status < 300 && r->resp.bookmark[0] != '\0' &&
        edge__api_bookmark_parse(r->resp.bookmark, r->wait_origin, &r->wait_seq) &&
        !edge_repl_state_covers(&n->repl, r->wait_origin, r->wait_seq)) {
        /* Answer once this region holds the write, so a read here right after sees it. */
        r->wait_until_ms = mono_ms() + SESS_WAIT_MAX_MS;
        sreq_timer(r, PH_WAIT_BOOKMARK, SESS_WAIT_TICK_MS);
        return;
    }
    char extra[256] = "";
    if (r->resp.bookmark[0] != '\0') snprintf(extra, sizeof(extra), "X-Edge-Bookmark: %s\r\n", r->resp.bookmark);
    fwd_report(r);
    edge__sess_respond(n, r->conn, r->start_ns, r->resp.status, extra[0] ? extra : NULL,
                 r->resp.body.data ? r->resp.body.data : "", r->resp.body.len);
    sreq_free(r);
}

static void on_sreq_timer(uv_timer_t *t)
{
    struct sreq *r = t->data;
    struct edge_node *n = r->l->node;
    switch (r->phase) {
    case PH_FWD_SEND: fwd_send(r); return;
    case PH_FWD_ANSWER: fwd_answer(r); return;
    case PH_WAIT_BOOKMARK:
        if (edge_repl_state_covers(&n->repl, r->wait_origin, r->wait_seq) || mono_ms() >= r->wait_until_ms ||
            r->l->stopping) {
            char extra[256];
            snprintf(extra, sizeof(extra), "X-Edge-Bookmark: %s\r\n", r->resp.bookmark);
            fwd_report(r);
            edge__sess_respond(n, r->conn, r->start_ns, r->resp.status, extra, r->resp.body.data ? r->resp.body.data : "",
                         r->resp.body.len);
            sreq_free(r);
        } else {
            sreq_timer(r, PH_WAIT_BOOKMARK, SESS_WAIT_TICK_MS);
        }
        return;
    case PH_WAIT_HOME:
        if (home_row_is_here(r, r->wait_epoch)) {
            sreq_step(r);
        } else if (mono_ms() >= r->wait_until_ms || r->l->stopping) {
            sreq_fail(r, 503, "SESSION_MOVING", "the session is moving to this region and the handover has not arrived");
        } else {
            sreq_timer(r, PH_WAIT_HOME, SESS_WAIT_TICK_MS);
        }
        return;
    }
}

static void sreq_timer(struct sreq *r, int phase, uint64_t ms)
{
    if (!r->timer_open) {
        uv_timer_init(&r->l->loop, &r->timer);
        r->timer.data = r;
        r->timer_open = true;
    }
    r->phase = phase;
    uv_timer_start(&r->timer, on_sreq_timer, ms, 0);
}

/* ---- the write at the home ---- */

static void job_write_done(struct sjob *j)
{
    struct sreq *r = j->req;
    struct edge_node *n = r->l->node;
    if (j->status != EDGE_OK || j->store_rv != EDGE_OK) {
        sreq_fail(r, 503, "SESSION_WRITE_FAILED", "the session write did not commit");
        return;
    }
    switch (j->w.result) {
    case EDGE_SESS_OK:
        if (r->forwarded_from[0] == '\0') edge__sess_track_home(n->sess, r->id);
        answer_written(r, j);
        sreq_free(r);
        return;
    case EDGE_SESS_NOT_FOUND: sreq_fail(r, 404, "SESSION_NOT_FOUND", "no such session (or it expired)"); return;
    case EDGE_SESS_EXISTS: sreq_fail(r, 409, "SESSION_EXISTS", "a live session has this id"); return;
    case EDGE_SESS_VERSION: {
        char msg[128];
        snprintf(msg, sizeof(msg), "If-Match %" PRId64 " but the session is at version %" PRId64, r->if_match,
                 j->w.out_version);
        sreq_fail(r, 412, "SESSION_VERSION_MISMATCH", msg);
        return;
    }
    case EDGE_SESS_RETRY:
        /* Another write to the session committed between our read and our write: each
         * retry means someone else's write made progress, so this is bounded by contention. */
        if (r->retries++ < 64) {
            sreq_step(r);
        } else {
            sreq_fail(r, 409, "SESSION_BUSY", "the session kept changing while the patch was applied; try again");
        }
        return;
    case EDGE_SESS_MOVED:
        if (r->forwarded_from[0] != '\0') {
            answer_moved(r, j->w.out_home, j->w.out_epoch);
            sreq_free(r);
        } else {
            forward(r, j->w.out_home);
        }
        return;
    }
}

/* The body of a PUT or POST, checked in one pass without building a tree
 * (edge_sess_body_scan): its data's compact JSON text goes to *text, ttl (ms, 0 = keep
 * or default) to *ttl_ms. 400 here changes nothing. */
static bool sreq_scan(struct sreq *r, struct edge_buf *text, int64_t *ttl_ms)
{
    struct edge_node *n = r->l->node;
    const struct edge_conf_sessions *cf = edge__sess_conf(n);
    struct edge_sess_body sb;
    char err[160];
    int rv = edge_sess_body_scan(r->body ? r->body : "", r->body_len, text, &sb, err, sizeof(err));
    *ttl_ms = 0;
    if (rv == EDGE_EINVAL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON body: %s", err);
        sreq_fail(r, 400, "SESSION_BAD_REQUEST", msg);
        return false;
    }
    if (rv != EDGE_OK) {
        /* larger than the buffer's bound, which is above any sessions.max_bytes */
        sreq_fail(r, rv == EDGE_ETOOBIG ? 413 : 503, rv == EDGE_ETOOBIG ? "SESSION_TOO_LARGE" : "INTERNAL",
                  rv == EDGE_ETOOBIG ? "the session data is too large" : "out of memory");
        return false;
    }
    if (!sb.is_object || !sb.has_data || !sb.data_is_object) {
        sreq_fail(r, 400, "SESSION_BAD_REQUEST", "the body must be {\"data\": {...}} (an object), with ttl_s optional");
        return false;
    }
    if (sb.ttl == EDGE_SESS_TTL_OTHER ||
        (sb.ttl == EDGE_SESS_TTL_INT && (sb.ttl_s < 1 || sb.ttl_s > cf->max_lifetime_s))) {
        char msg[128];
        snprintf(msg, sizeof(msg), "'ttl_s' must be an integer from 1 to %d (sessions.max_lifetime_s)",
                 cf->max_lifetime_s);
        sreq_fail(r, 400, "SESSION_BAD_REQUEST", msg);
        return false;
    }
    if (sb.ttl == EDGE_SESS_TTL_INT) *ttl_ms = (int64_t)sb.ttl_s * 1000;
    return true;
}

/* A PATCH's body (a merge patch: any JSON value); 400 here changes nothing. */
static bool sreq_parse(struct sreq *r, json_t **out_body)
{
    *out_body = NULL;
    if (r->method == HTTP_DELETE) return true;
    json_error_t jerr;
    json_t *body = json_loadb(r->body ? r->body : "", r->body_len, 0, &jerr);
    if (body == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON body: %s", jerr.text);
        sreq_fail(r, 400, "SESSION_BAD_REQUEST", msg);
        return false;
    }
    *out_body = body;
    return true;
}

/* Seal len bytes of JSON text for r->id into j (413 when over sessions.max_bytes). */
static bool seal_text(struct sreq *r, struct sjob *j, struct edge_buf *blob, const char *text, size_t len)
{
    struct edge_node *n = r->l->node;
    if (len > (size_t)edge__sess_conf(n)->max_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the session data is %zu bytes of JSON, more than sessions.max_bytes (%d)", len,
                 edge__sess_conf(n)->max_bytes);
        sreq_fail(r, 413, "SESSION_TOO_LARGE", msg);
        return false;
    }
    int rv = edge_sess_seal(&n->sess->keys, edge__sess_conf(n)->compression_level, r->id, text, len, blob, &j->w.key_id);
    if (rv != EDGE_OK) {
        sreq_fail(r, 503, "INTERNAL", "cannot seal the session");
        return false;
    }
    j->w.blob = blob->data;
    j->w.blob_len = blob->len;
    j->w.raw_len = (int64_t)len;
    return true;
}

/* Seal the JSON text of data (a PATCH's merged tree). */
static bool seal_into(struct sreq *r, struct sjob *j, struct edge_buf *blob, json_t *data)
{
    char *text = json_dumps(data, JSON_COMPACT);
    if (text == NULL) {
        sreq_fail(r, 503, "INTERNAL", "out of memory");
        return false;
    }
    size_t len = strlen(text);
    bool ok = seal_text(r, j, blob, text, len);
    sodium_memzero(text, len);
    free(text);
    return ok;
}


static void sreq_step(struct sreq *r)
{
    struct edge_node *n = r->l->node;
    json_t *body = NULL;
    struct edge_buf text; /* PUT and POST: data's JSON text */
    int64_t ttl_ms = 0;
    edge_buf_init(&text, (size_t)1 << 26);
    if (r->method == HTTP_PUT || r->method == HTTP_POST) {
        if (!sreq_scan(r, &text, &ttl_ms)) {
            edge_buf_free(&text);
            return;
        }
    } else if (!sreq_parse(r, &body)) {
        return;
    }
    struct sjob_blob *jb = edge_calloc(1, sizeof(*jb));
    if (jb == NULL) {
        json_decref(body);
        edge_buf_free(&text);
        sreq_fail(r, 503, "INTERNAL", "out of memory");
        return;
    }
    struct sjob *j = &jb->j;
    edge_buf_init(&jb->blob, (size_t)1 << 26);
    j->l = r->l;
    j->kind = JOB_WRITE;
    j->req = r;
    j->w = (struct edge_sess_write){.id = r->id, .region = n->region, .if_match = r->if_match, .base_version = -1,
                                    .partitioned = r->local};
    bool ok = true;
    if (r->method == HTTP_POST) {
        j->w.kind = EDGE_SESS_CREATE;
        j->w.ttl_ms = ttl_ms > 0 ? ttl_ms : (int64_t)edge__sess_conf(n)->ttl_s * 1000;
        j->w.lifetime_ms = (int64_t)edge__sess_conf(n)->max_lifetime_s * 1000;
        ok = seal_text(r, j, &jb->blob, text.data, text.len);
    } else if (r->method == HTTP_PUT || r->method == HTTP_DELETE) {
        /* No read here first: the writer's fence finds the home (EDGE_SESS_MOVED sends the
         * write there), so a write at the home costs no read snapshot on the loop. */
        j->w.kind = r->method == HTTP_PUT ? EDGE_SESS_REPLACE : EDGE_SESS_DELETE;
        if (r->method == HTTP_PUT) {
            j->w.ttl_ms = ttl_ms;
            ok = seal_text(r, j, &jb->blob, text.data, text.len);
        }
    } else {
        /* PATCH: where is the home, by this region's copy, and what does it hold? */
        struct edge_sess_row row;
        edge_buf_init(&row.blob, (size_t)1 << 26);
        edge__api_read_snapshot(r->l);
        int rv = edge_sess_get(r->l->rconn, r->id, &row);
        int64_t now = rv == EDGE_OK ? edge__sess_home_now(r->l, row.home) : 0;
        if (rv == EDGE_ENOTFOUND || (rv == EDGE_OK && row.expires_at <= now)) {
            sreq_fail(r, 404, "SESSION_NOT_FOUND", "no such session (or it expired)");
            ok = false;
        } else if (rv != EDGE_OK) {
            sreq_fail(r, 503, "SESSION_READ_FAILED", "cannot read the session");
            ok = false;
        } else if (strcmp(row.home, n->region) != 0 && !r->local) {
            char home[EDGE_SESS_REGION_MAX + 1];
            snprintf(home, sizeof(home), "%s", row.home);
            if (r->forwarded_from[0] != '\0') {
                answer_moved(r, home, row.epoch);
                sreq_free(r);
            } else {
                forward(r, home);
            }
            ok = false;
        } else {
            /* Merge into the current data; the writer checks nothing changed since. */
            if (r->if_match >= 0 && row.version != r->if_match) {
                char msg[128];
                snprintf(msg, sizeof(msg), "If-Match %" PRId64 " but the session is at version %" PRId64,
                         r->if_match, row.version);
                sreq_fail(r, 412, "SESSION_VERSION_MISMATCH", msg);
                ok = false;
            } else {
                struct edge_buf plain;
                edge_buf_init(&plain, (size_t)edge__sess_conf(n)->max_bytes + 1);
                rv = edge_sess_open(&n->sess->keys, r->id, row.key_id, row.blob.data, row.blob.len,
                                    (size_t)1 << 26, &plain);
                json_t *cur = rv == EDGE_OK ? json_loadb(plain.data, plain.len, 0, NULL) : NULL;
                if (plain.data != NULL) sodium_memzero(plain.data, plain.len);
                edge_buf_free(&plain);
                if (cur == NULL) {
                    atomic_fetch_add(&n->sess->decrypt_errors, 1);
                    sreq_fail(r, 500, "SESSION_UNREADABLE",
                              "the stored session cannot be opened with the configured keys");
                    ok = false;
                } else {
                    json_t *merged = edge_sess_merge_patch(cur, body);
                    if (!json_is_object(merged)) {
                        sreq_fail(r, 400, "SESSION_BAD_PATCH", "the merge patch must leave the data an object");
                        ok = false;
                    } else {
                        j->w.kind = EDGE_SESS_REPLACE;
                        j->w.base_version = row.version;
                        ok = seal_into(r, j, &jb->blob, merged);
                    }
                    json_decref(merged);
                }
            }
        }
        edge_buf_free(&row.blob);
    }
    json_decref(body);
    if (text.data != NULL) sodium_memzero(text.data, text.len);
    edge_buf_free(&text);
    if (!ok) {
        edge_buf_free(&jb->blob);
        edge__sess_job_free(j);
        return;
    }
    j->wjob.run_batch = job_run_batch;
    j->wjob.batch_fallback = true;
    int rv = edge__sess_job_submit(j, true);
    if (rv != EDGE_OK) {
        edge_buf_free(&jb->blob);
        edge__sess_job_free(j);
        sreq_fail(r, 503, rv == EDGE_EAGAIN ? "WRITER_BUSY" : "SESSION_WRITE_FAILED",
                  rv == EDGE_EAGAIN ? "the writer queue is full; try again" : "the node is stopping");
    }
}

/* ------------------------------------------------------------------------------------
 * Job completions on the loop
 * ---------------------------------------------------------------------------------- */

static void migrate_done(struct sjob *j)
{
    struct edge_node *n = j->l->node;
    json_t *moved = json_array();
    for (size_t i = 0; i < j->ids.n; i++) {
        if (j->status == EDGE_OK && j->store_rv == EDGE_OK && j->moved[i]) {
            json_array_append_new(moved, json_string(j->ids.ids[i]));
            atomic_fetch_add(&n->sess->migrations_out, 1);
            edge__sess_track_reset(n->sess, j->ids.ids[i]);
        }
    }
    json_t *ans = json_pack("{s:o,s:O}", "migrated", moved, "refused", j->refused ? j->refused : json_array());
    char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    edge__sess_respond(n, j->conn, j->start_ns, 200, NULL, text ? text : "{\"migrated\":[]}", text ? strlen(text) : 15);
    free(text);
    json_decref(ans);
}

static void job_done_task(struct edge_task *t)
{
    struct sjob *j = (struct sjob *)(void *)((char *)t - offsetof(struct sjob, task));
    struct edge_node *n = j->l->node;
    switch (j->kind) {
    case JOB_WRITE: {
        job_write_done(j);
        struct sjob_blob *jb = (struct sjob_blob *)j;
        edge_buf_free(&jb->blob);
        break;
    }
    case JOB_TOUCH: break;
    case JOB_GC:
        j->l->sess->gc_busy = false;
        if (j->status == EDGE_OK && j->store_rv == EDGE_OK) {
            atomic_fetch_add(&n->sess->expirations, (uint64_t)j->deleted);
            if (j->deleted > 0) {
                atomic_fetch_add(&n->sess->gc_steps, 1);
                atomic_store(&n->sess->gc_last_us, j->cpu_us);
                uint64_t mx = atomic_load(&n->sess->gc_max_us);
                while (j->cpu_us > mx && !atomic_compare_exchange_weak(&n->sess->gc_max_us, &mx, j->cpu_us)) {
                }
                mx = atomic_load(&n->sess->gc_max_wall_us);
                while (j->run_us > mx && !atomic_compare_exchange_weak(&n->sess->gc_max_wall_us, &mx, j->run_us)) {
                }
            }
        }
        break;
    case JOB_MIGRATE: migrate_done(j); break;
    }
    edge__sess_job_free(j);
}

void edge__sess_on_gc(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge__sess_loop *sl = l->sess;
    if (sl->gc_busy || l->stopping || !l->node->sess->enabled) return;
    struct sjob *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) return;
    j->l = l;
    j->kind = JOB_GC;
    sl->gc_busy = true;
    if (edge__sess_job_submit(j, false) != EDGE_OK) {
        sl->gc_busy = false;
        edge__sess_job_free(j);
    }
}

void edge__sess_write_start(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *rest,
                            int64_t if_match, const char *imh)
{
    struct edge_node *n = l->node;
    bool collection = rest == NULL;
    int m = req->method;
    struct sreq *r = edge_calloc(1, sizeof(*r));
    if (r == NULL) {
        edge__sess_error(n, c, req->start_ns, 503, "INTERNAL", "out of memory");
        return;
    }
    r->l = l;
    r->conn = c;
    edge_http_conn_ref(c);
    r->method = m;
    r->if_match = if_match;
    if (imh != NULL) snprintf(r->if_match_raw, sizeof(r->if_match_raw), "%s", imh);
    r->start_ns = req->start_ns;
    const char *fw = edge_http_header(req, "x-edge-forwarded");
    if (fw != NULL) snprintf(r->forwarded_from, sizeof(r->forwarded_from), "%s", fw);
    const char *auth = edge_http_header(req, "authorization");
    if (auth != NULL) r->auth = edge_strdup(auth);
    if (req->body.len > 0) {
        r->body = edge_malloc(req->body.len + 1);
        if (r->body != NULL) {
            memcpy(r->body, req->body.data, req->body.len);
            r->body[req->body.len] = '\0';
            r->body_len = req->body.len;
        }
    }
    if ((req->body.len > 0 && r->body == NULL) || (auth != NULL && r->auth == NULL)) {
        sreq_fail(r, 503, "INTERNAL", "out of memory");
        return;
    }
    const char *sealed = edge_http_header(req, "x-edge-sealed");
    if (sealed != NULL && !collection) {
        /* a body forwarded by another region, sealed with the session keys */
        struct edge_buf plain;
        edge_buf_init(&plain, n->cfg.max_body_bytes);
        char aad[EDGE_SESS_ID_MAX + 8];
        snprintf(aad, sizeof(aad), "fwd:%s", rest);
        int rv = edge_sess_open(&n->sess->keys, aad, (uint32_t)strtoul(sealed, NULL, 10), r->body ? r->body : "",
                                r->body_len, n->cfg.max_body_bytes, &plain);
        if (rv != EDGE_OK) {
            edge_buf_free(&plain);
            sreq_fail(r, 400, "SESSION_BAD_FORWARD", "a forwarded body that does not open with the session keys");
            return;
        }
        if (r->body != NULL) sodium_memzero(r->body, r->body_len);
        edge_free(r->body);
        r->body_len = plain.len;
        r->body = edge_buf_steal(&plain, NULL);
    }
    if (collection) {
        /* the id: given (validated) or a random 128-bit one */
        json_t *body = json_loadb(r->body ? r->body : "", r->body_len, 0, NULL);
        json_t *id = json_object_get(body, "id");
        if (id != NULL && !json_is_null(id)) {
            const char *s = json_string_value(id);
            if (s == NULL || !edge_sess_id_valid(s, strlen(s))) {
                json_decref(body);
                sreq_fail(r, 400, "SESSION_BAD_ID",
                          "'id' must be 1 to 128 characters of [A-Za-z0-9_.-], not starting with '_' or '.'");
                return;
            }
            snprintf(r->id, sizeof(r->id), "%s", s);
        } else {
            edge_sess_id_random(r->id);
        }
        json_decref(body);
    } else {
        snprintf(r->id, sizeof(r->id), "%s", rest);
    }
    sreq_step(r);
}
