/* SPDX-License-Identifier: MIT */
/* Internals shared by the Hrana files (classify.c, exec.c). */
#ifndef EDGE_API_HRANA_INT_H
#define EDGE_API_HRANA_INT_H

#include "api/hrana.h"

/* The SQL text of a statement object: its "sql", or the stored SQL of its "sql_id"
 * (NULL when neither). */
const char *hrana__stmt_sql(json_t *stmt, const struct hrana_sqlmap *sqls, size_t *len);
/* Does the statement text start with a schema-changing keyword (CREATE, ALTER, DROP)? */
bool hrana__starts_ddl(const char *sql, size_t len);

#endif
