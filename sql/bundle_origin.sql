-- pgreplica bundles, origin side: the bundles exported for file replicas.
--
-- Created by `pgreplica export` when missing; can also be run by hand:
--   psql -v ON_ERROR_STOP=1 -f sql/bundle_origin.sql "dbname=shop"
-- A file replica's acknowledged position is its row in pgreplica.replica
-- (written by `pgreplica ack`), which the purge respects like any other.
--   seq       the bundle's sequence number for (set, replica), from 1
--   kind      'base' (a copy of every table) or 'events'
--   from_*    the position the bundle starts at (NULL for a base bundle)
--   to_*      the position it ends at: the next export starts there
--             (target and last_id set when an interval was cut at --max-bytes)
--   acked_at  when `pgreplica ack` recorded that the replica applied it
CREATE TABLE IF NOT EXISTS pgreplica.bundle_export (
    set_name      text        NOT NULL,
    replica       text        NOT NULL,
    seq           bigint      NOT NULL,
    kind          text        NOT NULL,
    from_snapshot text,
    from_target   text,
    from_last_id  bigint      NOT NULL DEFAULT 0,
    to_snapshot   text        NOT NULL,
    to_target     text,
    to_last_id    bigint      NOT NULL DEFAULT 0,
    events        bigint      NOT NULL,
    bytes         bigint      NOT NULL,
    sha256        text        NOT NULL,
    file          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    acked_at      timestamptz,
    PRIMARY KEY (set_name, replica, seq)
);
REVOKE ALL ON pgreplica.bundle_export FROM PUBLIC;
