/* SPDX-License-Identifier: MIT */
/* Replicated /v1/crdt updates (EDGE_REPL_OP_CRDT): a region that applies an entry joins
 * each CRDT delta of it into its copy of the object.
 *
 * DESIGN: a delta is an ordinary state of the object's type holding just the change
 * (for a counter the origin's new per-region count, not an increment), so joining it is
 * idempotent: the same entry merged twice, or a delta that arrives after a full state
 * that already contains it, changes nothing. Entries are also applied once per
 * (origin, seq), so the merge statistics count each update once.
 *
 * The delta carries the object's vector clock at the origin after the update. The merge
 * combined concurrent updates when neither that clock nor the local object's dominates:
 * the origin had not seen some update made here, and this region had not seen the
 * origin's. That is what the statistics count, per object and origin region.
 *
 * Two regions may create the same name with different types at once. Both must end
 * with the same object, so the lower type number (g-counter < pn-counter < or-set <
 * lww-register) wins everywhere: a delta of a lower type replaces the local object,
 * one of a higher type is dropped. Both are logged. */
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "crdt/crdt.h"
#include "edgelite/crdt.h"
#include "store/crdt_store.h"

int edge__repl_crdt_apply(sqlite3 *db, const char *origin, const char *name, size_t name_len, const char *type,
                          size_t type_len, const uint8_t *delta, size_t delta_len, char *errmsg, size_t errmsg_len)
{
    char oname[129], tname[32];
    struct edge_crdt *in = NULL, *local = NULL;
    struct edge_crdt_row row = {0};
    uint8_t *state = NULL;
    size_t state_len = 0;
    enum edge_crdt_type t;
    int rv, concurrent = 0;

    if (name_len == 0 || name_len >= sizeof(oname) || memchr(name, 0, name_len) != NULL || type_len >= sizeof(tname)) {
        snprintf(errmsg, errmsg_len, "CRDT update: bad object or type name");
        return EDGE_ECORRUPT;
    }
    memcpy(oname, name, name_len);
    oname[name_len] = '\0';
    memcpy(tname, type, type_len);
    tname[type_len] = '\0';
    if (edge_crdt_type_parse(tname, &t) != EDGE_OK || edge_crdt_decode(delta, delta_len, &in) != EDGE_OK ||
        edge_crdt_type_of(in) != t) {
        snprintf(errmsg, errmsg_len, "CRDT update of %s: the delta is not a valid %s state", oname, tname);
        edge_crdt_destroy(in);
        return EDGE_ECORRUPT;
    }
    if ((rv = edge_crdt_store_ensure(db)) != EDGE_OK) {
        goto out;
    }
    rv = edge_crdt_store_load(db, oname, &row);
    if (rv == EDGE_ENOTFOUND) {
        rv = edge_crdt_create(t, &local);
    } else if (rv == EDGE_OK) {
        rv = edge_crdt_decode(row.state, row.state_len, &local);
        if (rv == EDGE_ECORRUPT) {
            snprintf(errmsg, errmsg_len, "CRDT update of %s: the stored state is corrupt", oname);
            goto out;
        }
        if (rv == EDGE_OK && edge_crdt_type_of(local) != t) {
            enum edge_crdt_type have = edge_crdt_type_of(local);
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                     "CRDT %s is a %s here and a %s at %s: the %s is kept in every region (lower type wins)", oname,
                     edge_crdt_type_name(have), tname, origin, edge_crdt_type_name(have < t ? have : t));
            if (have < t) {
                goto out; /* the delta's type loses: dropped, counted nowhere */
            }
            edge_crdt_destroy(local);
            local = NULL;
            row.conflicts = 0;
            rv = edge_crdt_create(t, &local);
        }
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    rv = edge_crdt_merge(local, in, &concurrent);
    if (rv == EDGE_EOVERFLOW) {
        snprintf(errmsg, errmsg_len, "CRDT update of %s: the merged counter would leave its 64-bit range", oname);
        rv = EDGE_ESTORE;
        goto out;
    }
    if (rv == EDGE_OK) {
        rv = edge_crdt_encode(local, &state, &state_len);
    }
    if (rv == EDGE_OK) {
        struct edge_crdt_row w = {oname, (char *)edge_crdt_type_name(t), state, state_len,
                                  row.conflicts + (uint64_t)concurrent, (int64_t)edge_wall_ms()};
        rv = edge_crdt_store_save(db, &w);
    }
    if (rv == EDGE_OK) {
        rv = edge_crdt_store_note_merge(db, oname, origin, concurrent);
    }
out:
    if (rv == EDGE_ESTORE && errmsg[0] == '\0') {
        snprintf(errmsg, errmsg_len, "CRDT update of %s: %s", oname, sqlite3_errmsg(db));
    }
    edge_free(state);
    edge_crdt_destroy(in);
    edge_crdt_destroy(local);
    edge_crdt_store_row_free(&row);
    return rv;
}
