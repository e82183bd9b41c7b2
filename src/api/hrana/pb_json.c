/* SPDX-License-Identifier: MIT */
/* The protobuf codec's arena and its reader of JSON results (see pb_int.h). */
#include "api/hrana/pb_int.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* ---------------------------------------------------------------------------------- */
/* Arena                                                                              */
/* ---------------------------------------------------------------------------------- */

struct pb_chunk {
    struct pb_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void pb_arena_init(struct pb_arena *a, size_t limit)
{
    a->head = NULL;
    a->total = 0;
    a->limit = limit;
    a->next_cap = 8192;
    a->over = false;
    a->inline_used = 0;
}

void pb_arena_free_all(struct pb_arena *a)
{
    while (a->head != NULL) {
        struct pb_chunk *c = a->head;
        a->head = c->next;
        edge_free(c);
    }
    a->total = 0;
}

void *pb_arena_alloc(void *arena, size_t n)
{
    struct pb_arena *a = arena;
    size_t al = alignof(max_align_t);
    if (n > a->limit) {
        a->over = true;
        return NULL;
    }
    n = (n + al - 1) & ~(al - 1);
    if (a->head == NULL && sizeof(a->inline_buf) - a->inline_used >= n) {
        void *p = (unsigned char *)a->inline_buf + a->inline_used;
        a->inline_used += n;
        return p;
    }
    struct pb_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > a->next_cap ? n : a->next_cap;
        if (a->total + cap > a->limit) {
            a->over = true;
            return NULL;
        }
        c = edge_malloc(sizeof(*c) + cap);
        if (c == NULL) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
        a->total += cap;
        if (a->next_cap < (1u << 20)) a->next_cap *= 2;
    }
    void *p = (unsigned char *)c->data + c->used;
    c->used += n;
    return p;
}

/* ---------------------------------------------------------------------------------- */
/* JSON reader                                                                        */
/* ---------------------------------------------------------------------------------- */

struct rd {
    struct pb_arena *a;
    const char *p, *end;
};

static void skip_ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string at r->p (its opening quote) into the arena; NULL on bad input. The unescaped
 * text is never longer than its escaped form, so one allocation of that size does. */
static const char *read_str(struct rd *r, size_t *len)
{
    const char *s = ++r->p;
    const char *q = s;
    while (q < r->end && *q != '"') q += *q == '\\' ? 2 : 1;
    if (q >= r->end) return NULL;
    char *o = pb_arena_alloc(r->a, (size_t)(q - s) + 1);
    if (o == NULL) return NULL;
    size_t n = 0;
    const char *p = s;
    while (p < q) {
        if (*p != '\\') {
            o[n++] = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case '"': o[n++] = '"'; p++; break;
        case '\\': o[n++] = '\\'; p++; break;
        case '/': o[n++] = '/'; p++; break;
        case 'b': o[n++] = '\b'; p++; break;
        case 'f': o[n++] = '\f'; p++; break;
        case 'n': o[n++] = '\n'; p++; break;
        case 'r': o[n++] = '\r'; p++; break;
        case 't': o[n++] = '\t'; p++; break;
        case 'u': {
            if (q - p < 5) return NULL;
            int cp = hex4(p + 1);
            p += 5;
            if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff)) return NULL;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* A high surrogate must be followed by a low one: together one code point. */
                if (q - p < 6 || p[0] != '\\' || p[1] != 'u') return NULL;
                int lo = hex4(p + 2);
                if (lo < 0xdc00 || lo > 0xdfff) return NULL;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            n += put_utf8(o + n, (uint32_t)cp);
            break;
        }
        default: return NULL;
        }
    }
    o[n] = '\0';
    r->p = q + 1;
    *len = n;
    return o;
}

static bool read_num(struct rd *r, struct jv *v)
{
    const char *s = r->p;
    bool is_int = true;
    while (r->p < r->end && (strchr("0123456789+-.eE", *r->p) != NULL && *r->p != '\0')) {
        if (*r->p == '.' || *r->p == 'e' || *r->p == 'E') is_int = false;
        r->p++;
    }
    size_t n = (size_t)(r->p - s);
    char buf[64];
    if (n == 0 || n >= sizeof(buf)) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    if (is_int) {
        long long i = strtoll(buf, &end, 10);
        if (*end == '\0' && errno == 0) {
            v->type = JV_INT;
            v->u.i = i;
            return true;
        }
    }
    /* ERANGE is no error here: a subnormal such as 5e-324 is a float SQLite can hold. */
    double d = strtod(buf, &end);
    if (*end != '\0') return false;
    v->type = JV_REAL;
    v->u.d = d;
    return true;
}

static struct jv *read_value(struct rd *r, int depth);

/* The items (or members) of an array (or object) at r->p, its opening bracket. */
static bool read_kids(struct rd *r, struct jv *v, bool obj, int depth)
{
    struct jv *local[16];
    struct jv **items = local;
    size_t n = 0, cap = sizeof(local) / sizeof(local[0]);
    char close = obj ? '}' : ']';
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
    } else {
        for (;;) {
            const char *key = NULL;
            size_t klen = 0;
            skip_ws(r);
            if (obj) {
                if (r->p >= r->end || *r->p != '"' || (key = read_str(r, &klen)) == NULL) return false;
                skip_ws(r);
                if (r->p >= r->end || *r->p != ':') return false;
                r->p++;
            }
            struct jv *kid = read_value(r, depth + 1);
            if (kid == NULL) return false;
            kid->key = key;
            if (n == cap) {
                struct jv **grown = pb_arena_alloc(r->a, 2 * cap * sizeof(*grown));
                if (grown == NULL) return false;
                memcpy(grown, items, n * sizeof(*items));
                items = grown;
                cap *= 2;
            }
            items[n++] = kid;
            skip_ws(r);
            if (r->p < r->end && *r->p == ',') {
                r->p++;
                continue;
            }
            if (r->p < r->end && *r->p == close) {
                r->p++;
                break;
            }
            return false;
        }
    }
    if (items == local && n > 0) {
        items = pb_arena_alloc(r->a, n * sizeof(*items));
        if (items == NULL) return false;
        memcpy(items, local, n * sizeof(*items));
    }
    v->u.kids.items = n > 0 ? items : NULL;
    v->u.kids.n = n;
    return true;
}

static struct jv *read_value(struct rd *r, int depth)
{
    if (depth > JV_MAX_DEPTH) return NULL;
    skip_ws(r);
    if (r->p >= r->end) return NULL;
    struct jv *v = pb_arena_alloc(r->a, sizeof(*v));
    if (v == NULL) return NULL;
    v->key = NULL;
    size_t left = (size_t)(r->end - r->p);
    switch (*r->p) {
    case '{':
        v->type = JV_OBJ;
        return read_kids(r, v, true, depth) ? v : NULL;
    case '[':
        v->type = JV_ARR;
        return read_kids(r, v, false, depth) ? v : NULL;
    case '"':
        v->type = JV_STR;
        return (v->u.str.s = read_str(r, &v->u.str.len)) != NULL ? v : NULL;
    case 't':
        if (left < 4 || memcmp(r->p, "true", 4) != 0) return NULL;
        r->p += 4;
        v->type = JV_TRUE;
        return v;
    case 'f':
        if (left < 5 || memcmp(r->p, "false", 5) != 0) return NULL;
        r->p += 5;
        v->type = JV_FALSE;
        return v;
    case 'n':
        if (left < 4 || memcmp(r->p, "null", 4) != 0) return NULL;
        r->p += 4;
        v->type = JV_NULL;
        return v;
    default:
        return read_num(r, v) ? v : NULL;
    }
}

struct jv *jv_parse(struct pb_arena *a, const char *text, size_t len)
{
    struct rd r = {a, text != NULL ? text : "", (text != NULL ? text : "") + (text != NULL ? len : 0)};
    struct jv *v = read_value(&r, 0);
    skip_ws(&r);
    return v != NULL && r.p == r.end ? v : NULL;
}

struct jv *jv_get(const struct jv *obj, const char *key)
{
    if (!jv_is_obj(obj)) return NULL;
    for (size_t i = 0; i < obj->u.kids.n; i++) {
        if (strcmp(obj->u.kids.items[i]->key, key) == 0) return obj->u.kids.items[i];
    }
    return NULL;
}

size_t jv_size(const struct jv *v)
{
    return jv_is_arr(v) ? v->u.kids.n : 0;
}

struct jv *jv_at(const struct jv *arr, size_t i)
{
    return i < jv_size(arr) ? arr->u.kids.items[i] : NULL;
}

const char *jv_str(const struct jv *v)
{
    return jv_is_str(v) ? v->u.str.s : NULL;
}

size_t jv_len(const struct jv *v)
{
    return jv_is_str(v) ? v->u.str.len : 0;
}

bool jv_is_int(const struct jv *v)
{
    return v != NULL && v->type == JV_INT;
}

int64_t jv_int(const struct jv *v)
{
    return jv_is_int(v) ? v->u.i : 0;
}

bool jv_is_num(const struct jv *v)
{
    return v != NULL && (v->type == JV_INT || v->type == JV_REAL);
}

double jv_num(const struct jv *v)
{
    return v == NULL ? 0 : v->type == JV_INT ? (double)v->u.i : v->type == JV_REAL ? v->u.d : 0;
}
