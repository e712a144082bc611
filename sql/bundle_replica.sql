-- pgreplica bundles, replica side: the bundles applied here.
--
-- Created by `pgreplica import` when missing (with sql/replica.sql); can
-- also be run by hand:
--   psql -v ON_ERROR_STOP=1 -f sql/bundle_replica.sql "dbname=shop"
-- Each row is written in the transaction that applies its bundle, together
-- with pgreplica.position: a bundle is applied exactly once, in sequence.
CREATE TABLE IF NOT EXISTS pgreplica.bundle_import (
    set_name    text        NOT NULL,
    seq         bigint      NOT NULL,
    replica     text        NOT NULL,
    kind        text        NOT NULL,
    to_snapshot text        NOT NULL,
    to_target   text,
    to_last_id  bigint      NOT NULL DEFAULT 0,
    events      bigint      NOT NULL,
    sha256      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, seq)
);
