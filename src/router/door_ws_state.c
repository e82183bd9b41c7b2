/* SPDX-License-Identifier: MIT */
/* What the front door remembers of one Hrana WebSocket session (door_int.h) so that it can
 * move the session to another region: the streams and stored SQL texts the client created
 * (by the client's ids), the cursors it opened, whether a stream may be inside a
 * transaction, and every request not yet answered, in order, with what it is (a read that
 * may run again, a request that only touches the session's state, a write, a cursor's).
 *
 * DESIGN: a stream, text or cursor leaves the state when the region answers its close, not
 * when the client sends it: a session moved while the close is in flight is rebuilt as it
 * was before the requests in flight, and those are sent again in order (open_stream,
 * execute, close_stream of one `execute()` of @libsql/client, all pipelined). Whether a
 * stream is in a transaction is read from the first word of each statement (the
 * tokenizer of normalize.c, as the door classifies reads): BEGIN or SAVEPOINT open one,
 * COMMIT, END and ROLLBACK (not ROLLBACK TO) end it, but only once the region answers
 * them ok: SQLite keeps the transaction open after a failed COMMIT (a deferred foreign key,
 * SQLITE_BUSY), and so does the node after a failed replication; until then the stream
 * stays pinned and its later statements count as inside it. A `sequence` (several
 * statements in one text) counts as opening one. Everything here is bounded (door_int.h: WST_MAX_*); a
 * request past a bound is refused with a Hrana error and changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "router/door_int.h"

struct wst_obj { /* a stream, a stored SQL text or a cursor, by the client's id */
    int64_t id;
    bool opening, closing; /* its open / close is in flight */
    bool in_tx;            /* a stream that may be inside a transaction (pins the session) */
    bool planned;          /* inside one if every request sent so far succeeds */
    int unsure;            /* whole-transaction batches in flight (tx_note) */
    bool sticky;           /* ran PRAGMA, ATTACH or CREATE TEMP: pins the session (stmt_note) */
    char sp[64];           /* the savepoint that opened its transaction ("": BEGIN or none) */
    uint64_t tx_gen;       /* counts the requests that left it inside one */
    char *sql;             /* a stored text */
    size_t sql_len;
    uint64_t serial;       /* a stream: its own, unique in the session (ids are reused) */
    uint64_t stream;       /* a cursor: the serial of its stream, whose close closes it too */
};

/* by pointer: removing from the front (the oldest text of @libsql/client's cache of 100, at
 * each new one) moves 8 bytes an entry, not the whole object */
struct wst_list {
    struct wst_obj **v;
    size_t n, cap;
};

struct edge_door_wst {
    struct wst_list streams, sqls, cursors;
    size_t sql_bytes;
    struct edge_door_wst_req *head, *tail;
    size_t n_req, req_bytes;
    int64_t next_synthetic; /* negative ids of the door's own requests */
    uint64_t next_serial;   /* of the streams */
};

int edge__door_wst_new(struct edge_door_wst **out)
{
    struct edge_door_wst *t = edge_calloc(1, sizeof(*t));
    if (t == NULL) return EDGE_ENOMEM;
    t->next_synthetic = WST_SYNTHETIC_BASE - 1;
    *out = t;
    return EDGE_OK;
}

static void req_free(struct edge_door_wst_req *r)
{
    edge_free(r->text);
    edge_free(r);
}

void edge__door_wst_free(struct edge_door_wst *t)
{
    if (t == NULL) return;
    for (size_t i = 0; i < t->sqls.n; i++) edge_free(t->sqls.v[i]->sql);
    struct wst_list *lists[] = {&t->streams, &t->sqls, &t->cursors};
    for (size_t k = 0; k < 3; k++) {
        for (size_t i = 0; i < lists[k]->n; i++) edge_free(lists[k]->v[i]);
        edge_free(lists[k]->v);
    }
    for (struct edge_door_wst_req *r = t->head, *nx; r != NULL; r = nx) {
        nx = r->next;
        req_free(r);
    }
    edge_free(t);
}

/* The live object of this id: the newest one whose close is not in flight. */
static struct wst_obj *find_live(struct wst_list *l, int64_t id)
{
    for (size_t i = l->n; i-- > 0;) {
        if (l->v[i]->id == id && !l->v[i]->closing) return l->v[i];
    }
    return NULL;
}

static struct wst_obj *add(struct wst_list *l, int64_t id)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        struct wst_obj **nv = edge_realloc(l->v, nc * sizeof(*nv));
        if (nv == NULL) return NULL;
        l->v = nv;
        l->cap = nc;
    }
    struct wst_obj *o = edge_calloc(1, sizeof(*o));
    if (o == NULL) return NULL;
    l->v[l->n++] = o;
    o->id = id;
    return o;
}

static void remove_at(struct edge_door_wst *t, struct wst_list *l, size_t i)
{
    if (l == &t->sqls) {
        t->sql_bytes -= l->v[i]->sql_len;
        edge_free(l->v[i]->sql);
    }
    edge_free(l->v[i]);
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
    l->n--;
}

/* Remove the oldest object of this id whose open (opening) or close (!opening) is in flight.
 * A stream takes its cursors with it: the region closed them with it (Hrana), so they no
 * longer count toward the session's bound, whether close_cursor comes or not. */
static void remove_pending(struct edge_door_wst *t, struct wst_list *l, int64_t id, bool opening)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->id == id && (opening ? l->v[i]->opening : l->v[i]->closing)) {
            uint64_t serial = l->v[i]->serial;
            remove_at(t, l, i);
            for (size_t j = t->cursors.n; l == &t->streams && j-- > 0;) {
                if (t->cursors.v[j]->stream == serial) remove_at(t, &t->cursors, j);
            }
            return;
        }
    }
}

static void settle_open(struct wst_list *l, int64_t id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->id == id && l->v[i]->opening) {
            l->v[i]->opening = false;
            return;
        }
    }
}

/* The region stored a text: it replaces the texts of this id stored before it. */
static void sql_stored(struct edge_door_wst *t, int64_t id)
{
    size_t i = 0;
    while (i < t->sqls.n && !(t->sqls.v[i]->id == id && t->sqls.v[i]->opening)) i++;
    if (i == t->sqls.n) return;
    t->sqls.v[i]->opening = false;
    while (i-- > 0) {
        const struct wst_obj *o = t->sqls.v[i];
        if (o->id == id && !o->opening && !o->closing) remove_at(t, &t->sqls, i);
    }
}

/* The SQL of a Hrana statement: its "sql" (decoded in *owned when it has escapes), or the
 * stored text of its "sql_id". */
static const char *stmt_sql(struct edge_door_wst *t, struct edge_jv stmt, size_t *len, char **owned)
{
    static const char *const keys[] = {"sql", "sql_id"};
    struct edge_jv m[2];
    *owned = NULL;
    edge__door_jv_members(stmt, keys, 2, m);
    struct edge_jv sql = m[0], sid = m[1];
    if (edge__door_jv_is_string(sql)) return edge__door_jv_text(sql, len, owned);
    struct wst_obj *o = edge__door_jv_is_integer(sid) ? find_live(&t->sqls, edge__door_jv_int(sid)) : NULL;
    if (o == NULL) return NULL;
    *len = o->sql_len;
    return o->sql;
}

/* The savepoint name after "savepoint " / "release [savepoint] " in a normalized text. */
static void sp_name(const char *p, char *out, size_t cap)
{
    if (strncmp(p, "savepoint ", 10) == 0) p += 10;
    size_t n = strcspn(p, " ;");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

/* One statement: does it read only, and what does it do to the stream's transaction (s:
 * the stream, NULL when unknown). A transaction opened by SAVEPOINT ends with the RELEASE of
 * that (outermost) savepoint, as the node and SQLite take it. A stream that ran PRAGMA,
 * ATTACH or CREATE TEMP holds per-connection state that a stream recreated elsewhere would
 * not have: it pins the session until it is closed. */
static bool stmt_note(struct edge_door_wst *t, struct wst_obj *s, struct edge_jv stmt, bool *in_tx)
{
    char norm[EDGE_ROUTER_NORM_MAX];
    size_t len = 0;
    char *owned;
    const char *sql = stmt_sql(t, stmt, &len, &owned);
    if (sql == NULL) return false;
    bool reads = edge__door_sql_reads(sql, len, norm, sizeof(norm));
    edge_free(owned);
    char name[sizeof(s->sp)];
    if (s != NULL && (strncmp(norm, "pragma", 6) == 0 || strncmp(norm, "attach", 6) == 0 ||
                      strncmp(norm, "create temp", 11) == 0)) {
        s->sticky = true;
    }
    if (strncmp(norm, "begin", 5) == 0) {
        *in_tx = true;
        if (s != NULL) s->sp[0] = '\0';
    } else if (strncmp(norm, "savepoint ", 10) == 0) {
        if (!*in_tx && s != NULL) sp_name(norm + 10, s->sp, sizeof(s->sp));
        *in_tx = true;
    } else if (strncmp(norm, "release ", 8) == 0) {
        sp_name(norm + 8, name, sizeof(name));
        if (s != NULL && s->sp[0] != '\0' && strcmp(name, s->sp) == 0) *in_tx = false;
    } else if (strncmp(norm, "commit", 6) == 0 || strncmp(norm, "end", 3) == 0) {
        *in_tx = false;
    } else if (strncmp(norm, "rollback", 8) == 0 && strstr(norm, " to ") == NULL) {
        *in_tx = false;
    }
    return reads;
}

/* entered: a step began a transaction (which later steps may end) */
static bool batch_note(struct edge_door_wst *t, struct wst_obj *s, struct edge_jv batch, bool *in_tx, bool *entered)
{
    bool reads = true, any = false;
    struct edge_jv steps = edge__door_jv_get(batch, "steps");
    for (struct edge_jv st = edge__door_jv_next(steps, (struct edge_jv){NULL, 0}); st.p != NULL;
         st = edge__door_jv_next(steps, st)) {
        any = true;
        if (!stmt_note(t, s, edge__door_jv_get(st, "stmt"), in_tx)) reads = false;
        if (*in_tx) *entered = true;
    }
    return reads && any;
}

/* A request leaves stream s inside a transaction (tx) or not, if it succeeds: a stream
 * enters one at once, leaves it when the request is answered ok (edge__door_wst_answer).
 * A batch that begins and ends one (@libsql/client's BEGIN..COMMIT batch) does not pin the
 * session while in flight (lost with its region, it is a write answered
 * WRITE_OUTCOME_UNKNOWN and nothing of it is left open), but pins it once answered with a
 * failed step: its COMMIT may have failed and left the transaction open. */
static void tx_note(struct wst_obj *s, struct edge_door_wst_req *r, bool entered, bool tx)
{
    if (s == NULL) return;
    if (tx) {
        s->in_tx = true;
        s->tx_gen++;
    } else if (s->planned || entered) {
        r->ends_tx = true;
        r->self_tx = !s->planned;
        r->tx_stream = s->id;
        r->tx_gen = s->tx_gen;
        if (r->self_tx) s->unsure++;
    }
    s->planned = tx;
}

/* The answer (ok) of a request that ends a transaction. */
static void tx_answer(struct edge_door_wst *t, struct edge_door_wst_req *r, bool ok)
{
    struct wst_obj *s = r->ends_tx ? find_live(&t->streams, r->tx_stream) : NULL;
    if (s == NULL) return;
    if (r->self_tx) {
        s->unsure--;
        if (!ok) s->in_tx = s->planned = true;
    } else if (s->tx_gen == r->tx_gen) {
        /* nothing entered a transaction on this stream since: ended if it succeeded, else
         * still open (a failed COMMIT) and what follows it runs inside */
        if (ok) s->in_tx = false;
        else s->planned = true;
    }
}

static const struct {
    const char *name;
    int rtype, kind;
} TYPES[] = {
    {"open_stream", WST_OPEN_STREAM, WST_SAFE},   {"close_stream", WST_CLOSE_STREAM, WST_SAFE},
    {"store_sql", WST_STORE_SQL, WST_SAFE},       {"close_sql", WST_CLOSE_SQL, WST_SAFE},
    {"describe", WST_OTHER, WST_SAFE},            {"get_autocommit", WST_OTHER, WST_SAFE},
    {"execute", WST_EXECUTE, WST_WRITE},          {"batch", WST_BATCH, WST_WRITE},
    {"sequence", WST_SEQUENCE, WST_WRITE},        {"open_cursor", WST_OPEN_CURSOR, WST_CURSOR},
    {"fetch_cursor", WST_OTHER, WST_CURSOR},      {"close_cursor", WST_CLOSE_CURSOR, WST_SAFE},
};

int edge__door_wst_request(struct edge_door_wst *t, struct edge_jv req, int64_t request_id, char *text, size_t len,
                           bool sent, struct edge_door_wst_req **out, const char **code, const char **why)
{
    /* what is read of it, in one pass */
    enum { M_TYPE, M_STREAM, M_SQL_ID, M_CURSOR, M_SQL, M_STMT, M_BATCH, M_N };
    static const char *const keys[M_N] = {"type", "stream_id", "sql_id", "cursor_id", "sql", "stmt", "batch"};
    struct edge_jv m[M_N];
    edge__door_jv_members(req, keys, M_N, m);
    char type[32];
    bool typed = edge__door_jv_is_string(m[M_TYPE]) && edge__door_jv_str(m[M_TYPE], NULL) < sizeof(type);
    if (typed) type[edge__door_jv_str(m[M_TYPE], type)] = '\0';
    int rtype = WST_OTHER, kind = WST_WRITE; /* anything unknown: the region answers the error */
    for (size_t i = 0; typed && i < sizeof(TYPES) / sizeof(TYPES[0]); i++) {
        if (strcmp(type, TYPES[i].name) == 0) {
            rtype = TYPES[i].rtype;
            kind = TYPES[i].kind;
        }
    }
    *code = "WS_ROUTER_LIMIT";
    if (t->n_req >= WST_MAX_IN_FLIGHT || t->req_bytes + len > WST_MAX_IN_FLIGHT_BYTES) {
        *why = "too many requests in flight on this WebSocket through the router";
        return EDGE_ETOOBIG;
    }
    struct edge_jv jid = m[rtype == WST_STORE_SQL || rtype == WST_CLOSE_SQL           ? M_SQL_ID
                           : rtype == WST_OPEN_CURSOR || rtype == WST_CLOSE_CURSOR ? M_CURSOR
                                                                                   : M_STREAM];
    int64_t target = edge__door_jv_int(jid);
    /* the state it changes, bounded first */
    if (rtype == WST_OPEN_STREAM && t->streams.n >= WST_MAX_STREAMS) {
        *why = "too many streams on this WebSocket through the router";
        return EDGE_ETOOBIG;
    }
    if (rtype == WST_OPEN_CURSOR && t->cursors.n >= WST_MAX_STREAMS) {
        *why = "too many cursors on this WebSocket through the router";
        return EDGE_ETOOBIG;
    }
    struct edge_jv jsql = m[M_SQL];
    /* a replacement counts too (the previous text is kept until it is answered): the bytes
     * held never pass the bound; the entries of pending replacements are bounded by the
     * requests in flight */
    if (rtype == WST_STORE_SQL &&
        ((find_live(&t->sqls, target) == NULL && t->sqls.n >= WST_MAX_SQLS) ||
         t->sql_bytes + edge__door_jv_str(jsql, NULL) > WST_MAX_SQL_BYTES)) {
        *why = "too many stored SQL texts (or bytes of them) on this WebSocket through the router";
        return EDGE_ETOOBIG;
    }
    struct edge_door_wst_req *r = edge_calloc(1, sizeof(*r));
    if (r == NULL) {
        *code = "INTERNAL";
        *why = "out of memory";
        return EDGE_ENOMEM;
    }
    struct wst_obj *o = NULL;
    bool tx = false;
    switch (rtype) {
    case WST_OPEN_STREAM:
    case WST_OPEN_CURSOR:
        if (rtype == WST_OPEN_STREAM && (o = find_live(&t->streams, target)) != NULL) {
            /* a stream id already open, or whose open is still in flight: the region refuses it
             * (STREAM_EXISTS) and the stream stays as it was; a second entry would count twice
             * and take, while in flight, what is sent on the id (a BEGIN), then leave with it */
            rtype = WST_OTHER;
            o = (struct wst_obj *)t;
            break;
        }
        if (rtype == WST_OPEN_CURSOR && find_live(&t->cursors, target) != NULL) {
            /* the same for a cursor id open or opening: the node refuses it (CURSOR_EXISTS) at
             * once, before its batch runs and before the first open's answer, which would
             * otherwise be taken as the duplicate's refusal (the first entry removed, the
             * duplicate's kept with its stream); its batch is not noted (nothing of it runs),
             * it stays a cursor's request (CURSOR_LOST if the region is lost with it) */
            rtype = WST_OTHER;
            o = (struct wst_obj *)t;
            break;
        }
        o = add(rtype == WST_OPEN_STREAM ? &t->streams : &t->cursors, target);
        if (o != NULL) o->opening = true;
        if (rtype == WST_OPEN_STREAM && o != NULL) o->serial = ++t->next_serial;
        if (rtype == WST_OPEN_CURSOR && o != NULL) {
            struct wst_obj *s = find_live(&t->streams, edge__door_jv_int(m[M_STREAM]));
            o->stream = s != NULL ? s->serial : 0; /* 0: no stream, the region refuses it */
            tx = s ? s->planned : false;
            bool entered = false;
            batch_note(t, s, m[M_BATCH], &tx, &entered);
            tx_note(s, r, entered, tx);
        }
        break;
    case WST_STORE_SQL:
        /* storing an id again replaces its text, as the region does, once it answered ok:
         * the previous text stays (and is what a replay stores) until then, and stays for
         * good when the region refuses the new one */
        o = add(&t->sqls, target);
        if (o != NULL) {
            o->opening = true;
            o->sql_len = edge__door_jv_str(jsql, NULL);
            o->sql = edge_malloc(jsql.len + 1); /* room to decode in */
            if (o->sql == NULL) {
                o->sql_len = 0;
                remove_at(t, &t->sqls, t->sqls.n - 1); /* o, just added */
                o = NULL;
                break;
            }
            edge__door_jv_str(jsql, o->sql);
            o->sql[o->sql_len] = '\0';
            t->sql_bytes += o->sql_len;
        }
        break;
    case WST_CLOSE_STREAM:
    case WST_CLOSE_SQL:
    case WST_CLOSE_CURSOR:
        o = find_live(rtype == WST_CLOSE_STREAM ? &t->streams : rtype == WST_CLOSE_SQL ? &t->sqls : &t->cursors,
                      target);
        if (o != NULL) o->closing = true;
        /* a text with a replacement pending: the previous one closes with it */
        for (size_t i = 0; rtype == WST_CLOSE_SQL && i < t->sqls.n; i++) {
            if (t->sqls.v[i]->id == target) t->sqls.v[i]->closing = true;
        }
        o = (struct wst_obj *)t; /* not an allocation failure */
        break;
    case WST_EXECUTE:
    case WST_BATCH:
    case WST_SEQUENCE: {
        struct wst_obj *s = find_live(&t->streams, target);
        tx = s ? s->planned : false;
        bool entered = false;
        bool reads = rtype == WST_EXECUTE ? stmt_note(t, s, m[M_STMT], &tx)
                     : rtype == WST_BATCH ? batch_note(t, s, m[M_BATCH], &tx, &entered)
                                          : (tx = true, false);
        /* a read inside a transaction runs on its snapshot: not something to run elsewhere
         * (nor one behind a COMMIT not answered yet: the COMMIT may fail) */
        if (reads && s != NULL && !s->in_tx && !s->planned && s->unsure == 0 && !tx && !entered) kind = WST_READ;
        tx_note(s, r, entered, tx);
        o = (struct wst_obj *)t;
        break;
    }
    default: o = (struct wst_obj *)t; break;
    }
    if (o == NULL) {
        edge_free(r);
        *code = "INTERNAL";
        *why = "out of memory";
        return EDGE_ENOMEM;
    }
    r->id = request_id;
    r->kind = kind;
    r->rtype = rtype;
    r->target = target;
    r->sent = sent;
    r->sent_ns = sent ? uv_hrtime() : 0;
    r->text = text; /* owned from here */
    r->len = len;
    if (sent && (kind == WST_WRITE || kind == WST_CURSOR)) {
        /* never sent again: the text is not needed */
        edge_free(r->text);
        r->text = NULL;
        r->len = 0;
    }
    t->req_bytes += r->len;
    t->n_req++;
    if (t->tail) t->tail->next = r;
    else t->head = r;
    t->tail = r;
    *out = r;
    return EDGE_OK;
}

static void unlink_req(struct edge_door_wst *t, struct edge_door_wst_req *prev, struct edge_door_wst_req *r)
{
    if (prev) prev->next = r->next;
    else t->head = r->next;
    if (t->tail == r) t->tail = prev;
    t->n_req--;
    t->req_bytes -= r->len;
}

int edge__door_wst_answer(struct edge_door_wst *t, int64_t request_id, bool ok)
{
    struct edge_door_wst_req *prev = NULL, *r = t->head;
    while (r != NULL && r->id != request_id) {
        prev = r;
        r = r->next;
    }
    if (r == NULL) return -1;
    int kind = r->kind;
    tx_answer(t, r, ok);
    switch (r->rtype) {
    case WST_OPEN_STREAM:
        if (ok) settle_open(&t->streams, r->target);
        else remove_pending(t, &t->streams, r->target, true);
        break;
    case WST_OPEN_CURSOR:
        if (ok) settle_open(&t->cursors, r->target);
        else remove_pending(t, &t->cursors, r->target, true);
        break;
    case WST_STORE_SQL:
        if (ok) sql_stored(t, r->target);
        else remove_pending(t, &t->sqls, r->target, true);
        break;
    case WST_CLOSE_STREAM: remove_pending(t, &t->streams, r->target, false); break;
    case WST_CLOSE_SQL:
        for (size_t i = t->sqls.n; i-- > 0;) {
            if (t->sqls.v[i]->id == r->target && t->sqls.v[i]->closing) remove_at(t, &t->sqls, i);
        }
        break;
    case WST_CLOSE_CURSOR: remove_pending(t, &t->cursors, r->target, false); break;
    default: break;
    }
    unlink_req(t, prev, r);
    req_free(r);
    return kind;
}

uint64_t edge__door_wst_oldest_ns(const struct edge_door_wst *t)
{
    for (const struct edge_door_wst_req *r = t->head; r != NULL; r = r->next) {
        if (r->sent) return r->sent_ns;
    }
    return 0;
}

void edge__door_wst_sent(struct edge_door_wst *t, struct edge_door_wst_req *r)
{
    r->sent = true;
    r->sent_ns = uv_hrtime();
    if (r->kind == WST_WRITE || r->kind == WST_CURSOR) {
        t->req_bytes -= r->len;
        edge_free(r->text);
        r->text = NULL;
        r->len = 0;
    }
}

void edge__door_wst_counts(const struct edge_door_wst *t, size_t *streams, size_t *cursors)
{
    *streams += t->streams.n;
    *cursors += t->cursors.n;
}

bool edge__door_wst_pinned(const struct edge_door_wst *t)
{
    for (size_t i = 0; i < t->streams.n; i++) {
        if (t->streams.v[i]->in_tx || t->streams.v[i]->sticky) return true;
    }
    return false;
}

size_t edge__door_wst_lost(struct edge_door_wst *t, void (*unknown)(void *ud, int64_t request_id, int kind),
                           void *ud)
{
    size_t reads = 0;
    /* the cursors were the region's: their later fetches are the next region's
     * CURSOR_NOT_FOUND, their closes its plain ok */
    for (size_t i = 0; i < t->cursors.n; i++) edge_free(t->cursors.v[i]);
    t->cursors.n = 0;
    struct edge_door_wst_req *prev = NULL, *r = t->head;
    while (r != NULL) {
        struct edge_door_wst_req *next = r->next;
        if (r->sent && (r->kind == WST_WRITE || r->kind == WST_CURSOR)) {
            if (r->self_tx) tx_answer(t, r, true); /* nothing of it stays open elsewhere */
            unlink_req(t, prev, r);
            unknown(ud, r->id, r->kind);
            req_free(r);
        } else {
            if (r->sent && r->kind == WST_READ) reads++;
            r->sent = false; /* to send again */
            prev = r;
        }
        r = next;
    }
    return reads;
}

int edge__door_wst_replay(struct edge_door_wst *t, int (*emit)(void *ud, const char *text, size_t len), void *ud)
{
    char head[160];
    int rv = EDGE_OK;
    /* the state as it was before the requests still in flight, which follow in order */
    for (size_t i = 0; i < t->streams.n && rv == EDGE_OK; i++) {
        if (t->streams.v[i]->opening) continue;
        int n = snprintf(head, sizeof(head),
                         "{\"type\":\"request\",\"request_id\":%lld,\"request\":{\"type\":\"open_stream\","
                         "\"stream_id\":%lld}}",
                         (long long)t->next_synthetic--, (long long)t->streams.v[i]->id);
        rv = emit(ud, head, (size_t)n);
    }
    for (size_t i = 0; i < t->sqls.n && rv == EDGE_OK; i++) {
        const struct wst_obj *o = t->sqls.v[i];
        if (o->opening) continue;
        struct edge_buf b;
        edge_buf_init(&b, WST_MAX_SQL_BYTES + 256);
        edge_buf_printf(&b, "{\"type\":\"request\",\"request_id\":%lld,\"request\":{\"type\":\"store_sql\","
                            "\"sql_id\":%lld,\"sql\":",
                        (long long)t->next_synthetic--, (long long)o->id);
        edge_buf_json_str(&b, o->sql, o->sql_len);
        rv = edge_buf_puts(&b, "}}");
        if (rv == EDGE_OK) rv = emit(ud, b.data, b.len);
        edge_buf_free(&b);
    }
    for (struct edge_door_wst_req *r = t->head; r != NULL && rv == EDGE_OK; r = r->next) {
        if (r->sent) continue;
        rv = emit(ud, r->text ? r->text : "", r->len);
        /* sent even when the send failed: part of it may be on its way (TLS buffers a record
         * before its write can fail), so a write is never sent again (door_ws.c loses the
         * link: WRITE_OUTCOME_UNKNOWN) */
        edge__door_wst_sent(t, r);
    }
    return rv;
}
