/* SPDX-License-Identifier: MIT */
/* What the front door reads in a Hrana body without a schema (door_int.h): whether a
 * request only reads (by the first word of each statement, through the tokenizer of
 * normalize.c), the first statement's normalized text, the rows an answer returned, and
 * the stream's baton, which it prefixes with the region holding the stream. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "router/door_int.h"

/* The answer's baton, with this door's prefix "<region index>." so the next request of
 * the stream comes back to the same region. NULL: leave the body as it is. */
char *edge__door_rewrite_baton(const char *body, size_t len, int region, size_t *out_len, bool cursor)
{
    size_t line = len;
    if (cursor) {
        const char *nl = memchr(body, '\n', len);
        line = nl ? (size_t)(nl - body) : len;
    }
    if (memmem(body, line, "\"baton\":\"", 9) == NULL) return NULL;
    json_t *doc = json_loadb(body, line, 0, NULL);
    json_t *b = json_object_get(doc, "baton");
    if (!json_is_string(b)) {
        json_decref(doc);
        return NULL;
    }
    char nb[512];
    snprintf(nb, sizeof(nb), "%d.%s", region, json_string_value(b));
    json_object_set_new(doc, "baton", json_string(nb));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL) return NULL;
    size_t tl = strlen(text);
    char *out = edge_malloc(tl + (len - line) + 1);
    if (out != NULL) {
        memcpy(out, text, tl);
        memcpy(out + tl, body + line, len - line);
        out[tl + len - line] = '\0';
        *out_len = tl + len - line;
    }
    free(text);
    return out;
}

/* Does this statement only read? By its first word: SELECT (or VALUES) and one statement. */
bool edge__door_sql_reads(const char *sql, size_t len, char *norm, size_t normcap)
{
    edge_router_normalize(sql, len, norm, normcap);
    bool sel = strncmp(norm, "select ", 7) == 0 || strncmp(norm, "values", 6) == 0;
    return sel && strchr(norm, ';') == NULL;
}

static bool stmt_reads(json_t *stmt, char *norm, size_t normcap)
{
    json_t *sql = json_object_get(stmt, "sql");
    if (!json_is_string(sql)) return false; /* stored SQL: not known here */
    return edge__door_sql_reads(json_string_value(sql), json_string_length(sql), norm, normcap);
}

/* Classify a pipeline body {"baton","requests"} (or a cursor {"baton","batch"}) for the
 * door: read or not, and the first statement's normalized text for the statistics. */
bool edge__door_body_reads(json_t *body, bool cursor, char *norm, size_t normcap)
{
    char scratch[EDGE_ROUTER_NORM_MAX];
    bool reads = true, any = false;
    norm[0] = '\0';
    json_t *list = cursor ? NULL : json_object_get(body, "requests");
    size_t n = cursor ? 1 : json_array_size(list);
    for (size_t i = 0; i < n; i++) {
        json_t *r = cursor ? NULL : json_array_get(list, i);
        const char *t = cursor ? "batch" : json_string_value(json_object_get(r, "type"));
        if (t == NULL) return false;
        if (strcmp(t, "close") == 0 || strcmp(t, "store_sql") == 0 || strcmp(t, "close_sql") == 0 ||
            strcmp(t, "get_autocommit") == 0) {
            continue;
        }
        if (strcmp(t, "execute") == 0) {
            any = true;
            reads = reads && stmt_reads(json_object_get(r, "stmt"), any && norm[0] ? scratch : norm,
                                        EDGE_ROUTER_NORM_MAX);
        } else if (strcmp(t, "batch") == 0) {
            json_t *steps = json_object_get(json_object_get(cursor ? body : r, "batch"), "steps");
            size_t j;
            json_t *st;
            json_array_foreach(steps, j, st) {
                any = true;
                reads = reads && stmt_reads(json_object_get(st, "stmt"), norm[0] ? scratch : norm,
                                            EDGE_ROUTER_NORM_MAX);
            }
        } else {
            return false; /* sequence, describe, anything else: treated as a write */
        }
    }
    (void)normcap;
    return reads && any;
}


/* Past the JSON string that starts at p[i] (a quote): the index after its closing quote. */
static size_t skip_string(const char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\') {
            i++;
        } else if (p[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

static size_t skip_ws(const char *p, size_t len, size_t i)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    return i;
}

/* Past the JSON value at p[i]: strings stepped over whole, nesting counted. */
static size_t skip_value(const char *p, size_t len, size_t i)
{
    if (i < len && p[i] == '"') return skip_string(p, len, i);
    int depth = 0;
    for (; i < len; i++) {
        char ch = p[i];
        if (ch == '"') {
            i = skip_string(p, len, i) - 1;
        } else if (ch == '[' || ch == '{') {
            depth++;
        } else if (ch == ']' || ch == '}') {
            if (depth == 0) return i;
            if (--depth == 0) return i + 1;
        } else if (ch == ',' && depth == 0) {
            return i;
        }
    }
    return len;
}

/* Does the string from p[start] (a quote) end with its own closing quote before end? */
static bool string_closed(const char *p, size_t start, size_t end)
{
    for (size_t i = start + 1; i < end; i++) {
        if (p[i] == '\\') {
            i++;
        } else if (p[i] == '"') {
            return i + 1 == end;
        }
    }
    return false;
}

int edge__door_json_member(const char *p, size_t len, const char *key, size_t *vs, size_t *vl)
{
    size_t kl = strlen(key);
    size_t i = skip_ws(p, len, 0);
    if (i >= len || p[i] != '{') return EDGE_EPROTO;
    i++;
    while (i < len) {
        i = skip_ws(p, len, i);
        if (i < len && p[i] == '}') return EDGE_ENOTFOUND;
        if (i >= len || p[i] != '"') return EDGE_EPROTO;
        size_t ks = i + 1, ke = skip_string(p, len, i);
        i = skip_ws(p, len, ke);
        if (i >= len || p[i] != ':') return EDGE_EPROTO;
        i = skip_ws(p, len, i + 1);
        size_t ve = skip_value(p, len, i);
        if (ve <= i || (p[i] == '"' && !string_closed(p, i, ve))) return EDGE_EPROTO;
        if (ke - ks - 1 == kl && memcmp(p + ks, key, kl) == 0) {
            bool str = p[i] == '"';
            *vs = str ? i + 1 : i;
            *vl = str ? ve - i - 2 : ve - i;
            return EDGE_OK;
        }
        i = skip_ws(p, len, ve);
        if (i < len && p[i] == ',') i++;
    }
    return EDGE_EPROTO;
}

/* The elements of the array that starts at p[i] ('['): each row of a Hrana result is an
 * array, so the rows are the '[' one level down. *end: the index after it. */
static uint64_t count_arrays_in(const char *p, size_t len, size_t i, size_t *end)
{
    uint64_t n = 0;
    int depth = 0;
    while (i < len) {
        char ch = p[i];
        if (ch == '"') {
            i = skip_string(p, len, i);
            continue;
        }
        if (ch == '[' || ch == '{') {
            depth++;
            if (ch == '[' && depth == 2) n++;
        } else if (ch == ']' || ch == '}') {
            if (--depth == 0) {
                i++;
                break;
            }
        }
        i++;
    }
    *end = i;
    return n;
}

uint64_t edge__door_count_rows(const char *body, size_t len, bool cursor)
{
    uint64_t n = 0;
    if (cursor) {
        /* one entry per line: {"type":"row",...} */
        static const char row[] = "{\"type\":\"row\"";
        for (size_t i = 0; i < len;) {
            const char *nl = memchr(body + i, '\n', len - i);
            size_t l = nl ? (size_t)(nl - (body + i)) : len - i;
            if (l >= sizeof(row) - 1 && memcmp(body + i, row, sizeof(row) - 1) == 0) n++;
            i += l + 1;
        }
        return n;
    }
    /* Every "rows" key (a statement's result, a batch step's): its arrays. Strings are
     * stepped over whole, so text that looks like the key inside a value is not one. */
    for (size_t i = 0; i < len;) {
        if (body[i] != '"') {
            i++;
            continue;
        }
        size_t after = skip_string(body, len, i);
        if (after - i == 6 && memcmp(body + i, "\"rows\"", 6) == 0 && after < len && body[after] == ':' &&
            after + 1 < len && body[after + 1] == '[') {
            size_t end;
            n += count_arrays_in(body, len, after + 1, &end);
            i = end;
        } else {
            i = after;
        }
    }
    return n;
}
