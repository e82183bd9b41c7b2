/* SPDX-License-Identifier: MIT */
/* Sessions: the per-loop tick (sliding-TTL touches at the home, access reports to other
 * homes) and the home's side of those reports (POST /v1/sessions/access: the accesses that
 * slide the TTL and count towards migrate_after). The design is in sessions_http.c's header
 * comment. */
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
#include "repl/http_auth.h"

/* ------------------------------------------------------------------------------------
 * Per-loop tick: touches at the home, access reports to other homes
 * ---------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t);

void edge__sess_tick_arm(struct loop *l)
{
    struct edge__sess_loop *sl = l->sess;
    if (sl->tick_armed || l->stopping) return;
    sl->tick_armed = true;
    uv_timer_start(&sl->tick, on_tick, (uint64_t)edge__sess_conf(l->node)->touch_interval_ms, 0);
}

struct report {
    struct loop *l;
    size_t n;
};

static void report_done(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct report *rp = ud;
    struct edge_node *n = rp->l->node;
    if (rv != EDGE_OK || resp->status != 200) {
        atomic_fetch_add(&n->sess->report_errors, 1);
    } else {
        json_t *doc = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
        size_t moved = json_array_size(json_object_get(doc, "migrated"));
        atomic_fetch_add(&n->sess->migrations_in, moved);
        atomic_fetch_add(&n->sess->reports_answered, 1); /* after the home decided (and moved) */
        json_decref(doc);
    }
    edge_free(rp);
}

static void send_report(struct loop *l, int idx)
{
    struct edge__sess_loop *sl = l->sess;
    struct edge_node *n = l->node;
    struct idlist *ids = &sl->peers[idx].report;
    struct edge_buf b;
    edge_buf_init(&b, (size_t)1 << 26);
    edge_buf_puts(&b, "{\"from\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_puts(&b, ",\"ids\":[");
    for (size_t i = 0; i < ids->n; i++) {
        if (i > 0) edge_buf_putc(&b, ',');
        edge_buf_json_cstr(&b, ids->ids[i]);
    }
    edge_buf_puts(&b, "]}");
    size_t count = ids->n;
    edge__sess_idlist_free(ids);
    /* signed over the body: a report cannot be altered, replayed or sent to another home */
    char headers[512];
    const char *home = n->cfg.conf->regions[idx].id;
    struct edge_httpca *p = edge__sess_peer_pool(l, idx);
    struct report *rp = edge_calloc(1, sizeof(*rp));
    int rv = p == NULL || rp == NULL ? EDGE_ECLOSED
             : edge_repl_http_sig_header(n->cfg.conf, n->region, home, "POST", "/v1/_sessions/access", b.data, b.len,
                                         headers, sizeof(headers)) != EDGE_OK
                 ? EDGE_EINVAL
                 : edge_httpca_request(p, "POST", "/v1/_sessions/access", headers, b.data, b.len,
                                       SESS_FWD_TIMEOUT_MS, 1 << 20, report_done, rp);
    if (rv != EDGE_OK) {
        edge_free(rp);
        atomic_fetch_add(&n->sess->report_errors, 1);
    } else {
        rp->l = l;
        rp->n = count;
        atomic_fetch_add(&n->sess->reports_sent, 1);
    }
    sodium_memzero(headers, sizeof(headers));
    edge_buf_free(&b);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void on_tick(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge__sess_loop *sl = l->sess;
    sl->tick_armed = false;
    if (l->stopping) return;
    if (sl->touch.n > 0) {
        struct sjob *j = edge_calloc(1, sizeof(*j));
        if (j != NULL) {
            /* one UPDATE per session, however often it was read */
            qsort(sl->touch.ids, sl->touch.n, sizeof(char *), cmp_str);
            size_t w = 0;
            for (size_t i = 0; i < sl->touch.n; i++) {
                if (w > 0 && strcmp(sl->touch.ids[w - 1], sl->touch.ids[i]) == 0) {
                    edge_free(sl->touch.ids[i]);
                } else {
                    sl->touch.ids[w++] = sl->touch.ids[i];
                }
            }
            sl->touch.n = w;
            j->l = l;
            j->kind = JOB_TOUCH;
            j->ids = sl->touch;
            memset(&sl->touch, 0, sizeof(sl->touch));
            if (edge__sess_job_submit(j, false) != EDGE_OK) edge__sess_job_free(j);
        }
    }
    for (size_t i = 0; i < sl->n_peers; i++) {
        if (sl->peers[i].report.n > 0) send_report(l, (int)i);
    }
}


void edge__api_sessions_access_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    const char *why = NULL;
    if (!edge__api_auth_cluster_signed(n, req, &why)) {
        edge__sess_error(n, c, req->start_ns, 401, "AUTH_CLUSTER", "%s", why);
        return;
    }
    if (!edge__sess_ready(n, c, req)) return;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, NULL);
    const char *from = json_string_value(json_object_get(body, "from"));
    json_t *ids = json_object_get(body, "ids");
    int fidx = from ? edge__sess_region_index(n, from) : -1;
    uint8_t fcode = edge__sess_track_code(fidx);
    if (from == NULL || !json_is_array(ids) || strcmp(from, n->region) == 0) {
        json_decref(body);
        edge__sess_error(n, c, req->start_ns, 400, "SESSION_BAD_REQUEST", "expected {\"from\": region, \"ids\": [...]}");
        return;
    }
    struct sjob *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) {
        json_decref(body);
        edge__sess_error(n, c, req->start_ns, 503, "INTERNAL", "out of memory");
        return;
    }
    j->l = l;
    j->kind = JOB_MIGRATE;
    j->start_ns = req->start_ns;
    j->refused = json_array();
    snprintf(j->target, sizeof(j->target), "%s", from);
    const struct edge_conf_sessions *cf = edge__sess_conf(n);
    int64_t now = edge__sess_now(n);
    int64_t home_count = -1;
    size_t i;
    json_t *v;
    edge__api_read_snapshot(l);
    json_array_foreach(ids, i, v) {
        const char *id = json_string_value(v);
        if (id == NULL || !edge_sess_id_valid(id, strlen(id))) continue;
        /* the access slides the TTL here, by this (the home's) clock */
        if (edge__sess_idlist_add(&l->sess->touch, id) == EDGE_OK) edge__sess_tick_arm(l);
        atomic_fetch_add(&n->sess->reports_received, 1);
        if (cf->migrate_after <= 0 && !(cf->migrate_share > 0)) continue;
        if (!edge__sess_track_remote(n->sess, id, from, fcode)) continue;
        struct edge_sess_row row;
        edge_buf_init(&row.blob, (size_t)1 << 26);
        int rv = edge_sess_get(l->rconn, id, &row);
        bool mine = rv == EDGE_OK && row.expires_at > now && strcmp(row.home, n->region) == 0;
        int64_t epoch = row.epoch;
        edge_buf_free(&row.blob);
        if (!mine) continue;
        bool dup = false;
        for (size_t k = 0; k < j->ids.n; k++) dup = dup || strcmp(j->ids.ids[k], id) == 0;
        if (dup) continue;
        int reason = -1;
        if (fidx < 0) {
            reason = 1;
        } else if (n->cfg.conf->regions[fidx].capacity.max_sessions > 0) {
            if (home_count < 0 && edge_sess_count_home(l->rconn, from, now, &home_count) != EDGE_OK) home_count = 0;
            if (home_count + (int64_t)j->ids.n >= n->cfg.conf->regions[fidx].capacity.max_sessions) reason = 0;
        }
        if (reason >= 0) {
            atomic_fetch_add(&n->sess->refused[reason], 1);
            edge__sess_track_reset(n->sess, id);
            json_array_append_new(j->refused, json_pack("{s:s,s:s}", "id", id, "reason", edge__sess_refuse_names[reason]));
            EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "sessions: %s stays here: migration to %s refused (%s)", id, from,
                     edge__sess_refuse_names[reason]);
            continue;
        }
        if (edge__sess_idlist_add(&j->ids, id) != EDGE_OK) break;
        int64_t *ep = edge_realloc(j->epochs, j->ids.n * sizeof(*ep));
        bool *mv = edge_realloc(j->moved, j->ids.n * sizeof(*mv));
        if (ep != NULL) j->epochs = ep;
        if (mv != NULL) j->moved = mv;
        if (ep == NULL || mv == NULL) {
            edge_free(j->ids.ids[--j->ids.n]);
            break;
        }
        j->epochs[j->ids.n - 1] = epoch;
        j->moved[j->ids.n - 1] = false;
    }
    json_decref(body);
    if (j->ids.n == 0) {
        json_t *ans = json_pack("{s:[],s:O}", "migrated", "refused", j->refused);
        char *text = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
        edge__sess_respond(n, c, req->start_ns, 200, NULL, text ? text : "{\"migrated\":[]}", text ? strlen(text) : 15);
        free(text);
        json_decref(ans);
        edge__sess_job_free(j);
        return;
    }
    j->conn = c;
    edge_http_conn_ref(c);
    if (edge__sess_job_submit(j, false) != EDGE_OK) {
        edge__sess_error(n, c, req->start_ns, 503, "SESSION_WRITE_FAILED", "the node is stopping");
        edge__sess_job_free(j);
    }
}
