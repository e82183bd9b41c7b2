/* SPDX-License-Identifier: MIT */
/* Row metadata (_edge_rows): per row, the stamp of the write that last decided whether
 * it exists, a stamp per column, and for a deleted row the values it had.
 *
 * DESIGN
 * A replicated row is a small state-based CRDT: an LWW register for its existence and
 * one LWW register per column, ordered by the stamps (hlc, origin, seq) of the writes.
 * Every row operation carries the full row image and the stamp of every column, so
 * merging is a pointwise max: commutative, associative, idempotent, and therefore the
 * same in every region whatever order entries arrive in. Two concurrent writes to
 * different columns both survive; to the same column, the later stamp wins. A delete
 * keeps the row's values in the tombstone so a concurrent, later write to one column
 * can bring the row back with every other column as it should be. */
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

int edge__stamp_cmp(const struct edge__stamp *a, const struct edge__stamp *b)
{
    if (a->hlc != b->hlc) return a->hlc < b->hlc ? -1 : 1;
    int c = strcmp(a->origin, b->origin);
    if (c != 0) return c < 0 ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return 0;
}

int edge__stamps_encode(struct edge_buf *b, const struct edge__stamp *s, int n)
{
    int rv = EDGE_OK;
    for (int i = 0; i < n && rv == EDGE_OK; i++) {
        rv = edge__repl_put_str(b, s[i].origin, strlen(s[i].origin));
        if (rv == EDGE_OK) rv = edge__uvarint_put(b, s[i].seq);
        if (rv == EDGE_OK) rv = edge__uvarint_put(b, s[i].hlc);
    }
    return rv;
}

int edge__stamps_decode(struct edge__rd *r, struct edge__stamp *s, int n)
{
    for (int i = 0; i < n; i++) {
        const char *o;
        size_t ol;
        if (edge__repl_get_str(r, &o, &ol) != EDGE_OK || ol > EDGE_VCLOCK_REGION_MAX) return EDGE_ECORRUPT;
        memcpy(s[i].origin, o, ol);
        s[i].origin[ol] = '\0';
        if (edge__repl_get_varint(r, &s[i].seq) != EDGE_OK || edge__repl_get_varint(r, &s[i].hlc) != EDGE_OK) {
            return EDGE_ECORRUPT;
        }
    }
    return EDGE_OK;
}

/* Stored forms of the stamps (cols) and the kept values (image), keyed by column name
 * so that a row written before an ADD/DROP/RENAME COLUMN keeps its registers:
 *   cols:  0xFE, varint n, n x (str column, str origin, varint seq, varint hlc)
 *   image: 0xFE, varint n, n x (str column, value)
 * Older databases stored both by position (no marker); they are read by position when
 * the column count still matches. */
#define NAMED_MARK 0xFE

void edge__meta_drop_image(struct edge__rowmeta *m)
{
    edge_free(m->image);
    m->image = NULL;
    m->image_len = 0;
    for (int i = 0; i < m->ncols; i++) {
        m->iv[i] = NULL;
        m->ivl[i] = 0;
    }
}

void edge__meta_free(struct edge__rowmeta *m)
{
    edge_free(m->cols);
    edge_free(m->image);
    edge_free(m->iv);
    edge_free(m->ivl);
    memset(m, 0, sizeof(*m));
}

int edge__meta_set_image(struct edge__rowmeta *m, const uint8_t *const *vals, const size_t *lens)
{
    size_t total = 0;
    for (int i = 0; i < m->ncols; i++) total += vals[i] ? lens[i] : 0;
    uint8_t *img = edge_malloc(total ? total : 1);
    if (img == NULL) return EDGE_ENOMEM;
    size_t off = 0;
    for (int i = 0; i < m->ncols; i++) {
        if (vals[i] == NULL) continue;
        memcpy(img + off, vals[i], lens[i]);
        off += lens[i];
    }
    edge_free(m->image);
    m->image = img;
    m->image_len = total;
    off = 0;
    for (int i = 0; i < m->ncols; i++) {
        m->iv[i] = vals[i] ? img + off : NULL;
        m->ivl[i] = vals[i] ? lens[i] : 0;
        off += m->iv[i] ? lens[i] : 0;
    }
    return EDGE_OK;
}

static int meta_alloc(struct edge__rowmeta *m, int ncols)
{
    memset(m, 0, sizeof(*m));
    m->ncols = ncols;
    size_t n = (size_t)(ncols > 0 ? ncols : 1);
    m->cols = edge_calloc(n, sizeof(*m->cols));
    m->iv = edge_calloc(n, sizeof(*m->iv));
    m->ivl = edge_calloc(n, sizeof(*m->ivl));
    return m->cols && m->iv && m->ivl ? EDGE_OK : EDGE_ENOMEM;
}

static void decode_cols(sqlite3 *db, const struct edge__tinfo *t, const uint8_t *p, size_t len,
                        struct edge__rowmeta *m)
{
    struct edge__rd r = {p, len, 0};
    uint64_t n;
    if (len > 0 && p[0] == NAMED_MARK) {
        r.off = 1;
        if (edge__repl_get_varint(&r, &n) != EDGE_OK) return;
        for (uint64_t k = 0; k < n; k++) {
            const char *name;
            size_t nl;
            struct edge__stamp s;
            if (edge__repl_get_str(&r, &name, &nl) != EDGE_OK || edge__stamps_decode(&r, &s, 1) != EDGE_OK) return;
            int c = edge__tinfo_col_db(db, t, name, nl);
            if (c >= 0) m->cols[c] = s;
        }
        return;
    }
    /* positional (older databases) */
    if (edge__repl_get_varint(&r, &n) == EDGE_OK && n == (uint64_t)m->ncols &&
        edge__stamps_decode(&r, m->cols, m->ncols) != EDGE_OK) {
        memset(m->cols, 0, (size_t)m->ncols * sizeof(*m->cols));
    }
}

static int decode_image(sqlite3 *db, const struct edge__tinfo *t, const uint8_t *p, size_t len,
                        struct edge__rowmeta *m)
{
    m->image = edge_malloc(len ? len : 1);
    if (m->image == NULL) return EDGE_ENOMEM;
    memcpy(m->image, p, len);
    m->image_len = len;
    struct edge__rd r = {m->image, len, 0};
    if (len > 0 && m->image[0] == NAMED_MARK) {
        uint64_t n;
        r.off = 1;
        if (edge__repl_get_varint(&r, &n) != EDGE_OK) return EDGE_OK;
        for (uint64_t k = 0; k < n; k++) {
            const char *name;
            size_t nl;
            if (edge__repl_get_str(&r, &name, &nl) != EDGE_OK) return EDGE_OK;
            size_t start = r.off;
            if (edge__repl_skip_value(&r) != EDGE_OK) return EDGE_OK;
            int c = edge__tinfo_col_db(db, t, name, nl);
            if (c >= 0) {
                m->iv[c] = m->image + start;
                m->ivl[c] = r.off - start;
            }
        }
        return EDGE_OK;
    }
    for (int c = 0; c < m->ncols; c++) {
        size_t start = r.off;
        if (edge__repl_skip_value(&r) != EDGE_OK) {
            for (int k = 0; k < c; k++) m->iv[k] = NULL;
            return EDGE_OK;
        }
        m->iv[c] = m->image + start;
        m->ivl[c] = r.off - start;
    }
    return EDGE_OK;
}

int edge__meta_get(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen, struct edge__rowmeta *m)
{
    if (meta_alloc(m, t->pk.ncols) != EDGE_OK) return EDGE_ENOMEM;
    static const char q[] =
        "SELECT origin, seq, hlc, deleted, cols, image, hidden FROM _edge_rows WHERE tbl = ?1 AND pk = ?2";
    sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
    if (st == NULL) return EDGE_ESTORE;
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
    int rv = EDGE_OK;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->found = true;
        snprintf(m->exist.origin, sizeof(m->exist.origin), "%s", (const char *)sqlite3_column_text(st, 0));
        m->exist.seq = (uint64_t)sqlite3_column_int64(st, 1);
        m->exist.hlc = (uint64_t)sqlite3_column_int64(st, 2);
        m->deleted = sqlite3_column_int(st, 3) != 0;
        m->stored_tomb = m->deleted;
        m->hidden = m->deleted ? EDGE__HIDDEN_NO : sqlite3_column_int(st, 6);
        const uint8_t *cb = sqlite3_column_blob(st, 4);
        int cl = sqlite3_column_bytes(st, 4);
        if (cb != NULL && cl > 0) decode_cols(db, t, cb, (size_t)cl, m);
        const uint8_t *ib = sqlite3_column_blob(st, 5);
        int il = sqlite3_column_bytes(st, 5);
        if (ib != NULL && il > 0) rv = decode_image(db, t, ib, (size_t)il, m);
    } else if (rc != SQLITE_DONE) {
        rv = EDGE_ESTORE;
    }
    edge__repl_done(st);
    return rv;
}

int edge__meta_put(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen, struct edge__rowmeta *m)
{
    struct edge_buf cols, img;
    edge_buf_init(&cols, (size_t)1 << 24);
    edge_buf_init(&img, (size_t)1 << 30);
    int n = 0, ni = 0;
    for (int i = 0; i < m->ncols; i++) {
        n += m->cols[i].origin[0] != '\0';
        ni += m->iv[i] != NULL;
    }
    int rv = edge_buf_putc(&cols, (char)NAMED_MARK);
    if (rv == EDGE_OK) rv = edge__uvarint_put(&cols, (uint64_t)n);
    for (int i = 0; i < m->ncols && rv == EDGE_OK; i++) {
        if (m->cols[i].origin[0] == '\0') continue;
        rv = edge__repl_put_str(&cols, t->cols[i], strlen(t->cols[i]));
        if (rv == EDGE_OK) rv = edge__stamps_encode(&cols, &m->cols[i], 1);
    }
    bool keep = m->deleted || m->hidden != EDGE__HIDDEN_NO;
    if (rv == EDGE_OK && keep) {
        rv = edge_buf_putc(&img, (char)NAMED_MARK);
        if (rv == EDGE_OK) rv = edge__uvarint_put(&img, (uint64_t)ni);
        for (int i = 0; i < m->ncols && rv == EDGE_OK; i++) {
            if (m->iv[i] == NULL) continue;
            rv = edge__repl_put_str(&img, t->cols[i], strlen(t->cols[i]));
            if (rv == EDGE_OK) rv = edge_buf_append(&img, m->iv[i], m->ivl[i]);
        }
    }
    int rc = SQLITE_ERROR;
    if (rv == EDGE_OK) {
        static const char q[] = "INSERT INTO _edge_rows(tbl, pk, origin, seq, hlc, deleted, cols, image, hidden)"
                                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(tbl, pk) DO UPDATE SET"
                                " origin = excluded.origin, seq = excluded.seq, hlc = excluded.hlc,"
                                " deleted = excluded.deleted, cols = excluded.cols, image = excluded.image,"
                                " hidden = excluded.hidden";
        sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
        if (st != NULL) {
            sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
            sqlite3_bind_blob64(st, 2, pk, pklen, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, m->exist.origin, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)m->exist.seq);
            sqlite3_bind_int64(st, 5, (sqlite3_int64)m->exist.hlc);
            sqlite3_bind_int(st, 6, m->deleted ? 1 : 0);
            sqlite3_bind_blob64(st, 7, cols.data ? cols.data : "", cols.len, SQLITE_STATIC);
            if (keep) sqlite3_bind_blob64(st, 8, img.data ? img.data : "", img.len, SQLITE_STATIC);
            sqlite3_bind_int(st, 9, m->deleted ? 0 : m->hidden);
            rc = sqlite3_step(st);
            edge__repl_done(st);
        }
    }
    edge_buf_free(&cols);
    edge_buf_free(&img);
    if (rv != EDGE_OK) return rv;
    if (rc != SQLITE_DONE) return EDGE_ESTORE;
    if (m->deleted != m->stored_tomb) {
        /* The count of tombstones, kept in the transaction that changes them: a rolled
         * back entry or group takes its change of the count with it (tomb.c reads it). */
        static const char q[] = "UPDATE _edge_gc SET value = value + ?1 WHERE name = 'tombstones'";
        sqlite3_stmt *st = edge__repl_stmt(db, q, sizeof(q) - 1);
        if (st == NULL) return EDGE_ESTORE;
        sqlite3_bind_int(st, 1, m->deleted ? 1 : -1);
        rc = sqlite3_step(st);
        edge__repl_done(st);
        if (rc != SQLITE_DONE) return EDGE_ESTORE;
        m->stored_tomb = m->deleted;
    }
    return EDGE_OK;
}

int edge_repl_image_json(const void *p, size_t len, struct edge_buf *out)
{
    struct edge__rd r = {p, len, 0};
    uint64_t n;
    if (len == 0 || ((const uint8_t *)p)[0] != NAMED_MARK) return edge_buf_puts(out, "null");
    r.off = 1;
    if (edge__repl_get_varint(&r, &n) != EDGE_OK) return EDGE_ECORRUPT;
    int rv = edge_buf_putc(out, '{');
    for (uint64_t k = 0; k < n && rv == EDGE_OK; k++) {
        const char *name;
        size_t nl;
        uint8_t t;
        if (edge__repl_get_str(&r, &name, &nl) != EDGE_OK || edge__repl_get_u8(&r, &t) != EDGE_OK) {
            return EDGE_ECORRUPT;
        }
        if (k > 0) rv = edge_buf_putc(out, ',');
        if (rv == EDGE_OK) rv = edge_buf_json_str(out, name, nl);
        if (rv == EDGE_OK) rv = edge_buf_putc(out, ':');
        if (rv != EDGE_OK) break;
        switch (t) {
        case 0: rv = edge_buf_puts(out, "null"); break;
        case 1: {
            uint64_t z;
            if (edge__repl_get_varint(&r, &z) != EDGE_OK) return EDGE_ECORRUPT;
            int64_t i = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            rv = edge_buf_printf(out, "%lld", (long long)i);
            break;
        }
        case 2: {
            if (r.len - r.off < 8) return EDGE_ECORRUPT;
            uint64_t bits = 0;
            for (int b = 0; b < 8; b++) bits |= (uint64_t)r.p[r.off + (size_t)b] << (8 * b);
            r.off += 8;
            double d;
            memcpy(&d, &bits, 8);
            rv = edge_buf_json_double(out, d);
            break;
        }
        case 3:
        case 4: {
            const char *sv;
            size_t sl;
            if (edge__repl_get_str(&r, &sv, &sl) != EDGE_OK) return EDGE_ECORRUPT;
            if (t == 3) {
                rv = edge_buf_json_str(out, sv, sl);
            } else {
                /* a blob as {"base64": "..."}, as Hrana writes blobs */
                rv = edge_buf_puts(out, "{\"base64\":\"");
                if (rv == EDGE_OK) rv = edge_buf_base64(out, (const uint8_t *)sv, sl);
                if (rv == EDGE_OK) rv = edge_buf_puts(out, "\"}");
            }
            break;
        }
        default: return EDGE_ECORRUPT;
        }
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}
