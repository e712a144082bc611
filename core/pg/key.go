package pg

// KeyColumnsSQL is a scalar subquery giving the key columns of the table
// whose oid is the SQL expression rel, in key order, or NULL: its primary
// key, or else the unique, immediate, non-partial index on plain NOT NULL
// columns with the fewest columns (Slony-I's rule). It is the same rule as
// pgreplica.key_columns in sql/origin.sql, for use where the capture schema
// may not be installed.
func KeyColumnsSQL(rel string) string {
	return `(SELECT array_agg(a.attname::text ORDER BY k.ord)
   FROM (SELECT i.indkey, i.indnkeyatts
           FROM pg_index i
          WHERE i.indrelid = ` + rel + `
            AND (i.indisprimary
                 OR (i.indisunique AND i.indimmediate AND i.indisvalid
                     AND i.indpred IS NULL AND i.indexprs IS NULL
                     AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) u(n)
                                       JOIN pg_attribute x ON x.attrelid = i.indrelid AND x.attnum = u.n
                                      WHERE NOT x.attnotnull)))
          ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid
          LIMIT 1) i
   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
   JOIN pg_attribute a ON a.attrelid = ` + rel + ` AND a.attnum = k.attnum
  WHERE k.ord <= i.indnkeyatts)`
}

// KeyIsPrimarySQL is a boolean SQL expression: whether the table whose oid
// is rel has a primary key (else its key, if any, is a unique index).
func KeyIsPrimarySQL(rel string) string {
	return `EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = ` + rel + ` AND i.indisprimary)`
}
