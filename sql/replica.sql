-- pgreplica bookkeeping schema for a replica database, version 3.
--
-- Installed by `pgreplica install` on every replica; can also be run by hand:
--   psql -v ON_ERROR_STOP=1 -1 -f sql/replica.sql "dbname=shop"
-- Re-running it is safe. A database that is both an origin and a replica
-- (multi-master) holds both schemas' tables side by side.

CREATE SCHEMA IF NOT EXISTS pgreplica;

CREATE TABLE IF NOT EXISTS pgreplica.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- How far this replica has applied each replication set. Written in the same
-- transaction as the changes it describes, so a crash anywhere resumes exactly
-- here: nothing lost, nothing applied twice (DESIGN.md invariant 1).
--   snapshot  origin snapshot whose transactions are all applied
--   target    while a long interval is applied in several transactions: the
--             snapshot being worked towards, and last_id the last event of it
--             applied so far (events of an interval are applied in id order)
CREATE TABLE IF NOT EXISTS pgreplica.position (
    set_name       text PRIMARY KEY,
    snapshot       text NOT NULL,
    target         text,
    last_id        bigint,
    applied_events bigint NOT NULL DEFAULT 0,
    applied_at     timestamptz NOT NULL DEFAULT now()
);

-- Changes that could not be applied as captured: an UPDATE or DELETE that
-- found no row (applied as a no-op), recorded for later inspection.
CREATE TABLE IF NOT EXISTS pgreplica.conflict (
    id          bigserial PRIMARY KEY,
    set_name    text NOT NULL,
    event_id    bigint NOT NULL,
    txid        text NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    op          "char" NOT NULL,
    key         jsonb,
    data        jsonb,
    kind        text NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);

-- On a multi-master node the conflict ledger also holds both sides of each
-- conflict and its outcome (the same on every node): the row and version
-- found here, the remote version (the remote row is data), the policy, the
-- winning version and whether the remote change was applied or the local
-- row kept; reviewed_at when an operator reviewed it (pgreplica conflicts
-- resolve).
ALTER TABLE pgreplica.conflict ADD COLUMN IF NOT EXISTS local_row jsonb,
                               ADD COLUMN IF NOT EXISTS local_version jsonb,
                               ADD COLUMN IF NOT EXISTS remote_version jsonb,
                               ADD COLUMN IF NOT EXISTS policy text,
                               ADD COLUMN IF NOT EXISTS winner jsonb,
                               ADD COLUMN IF NOT EXISTS outcome text,
                               ADD COLUMN IF NOT EXISTS reviewed_at timestamptz,
                               ADD COLUMN IF NOT EXISTS review text;

-- Per-table state of an online copy (pgreplica sync):
--   copying      the copy is running; the engine holds this table's events
--   catchup      the copy committed at snapshot; events visible in it are
--                skipped, held ones applied first
--   replicating  the position has passed the copy: nothing special
--   held         the replica cannot apply the table's events (reason says
--                why): they are held until pgreplica retry --table
CREATE TABLE IF NOT EXISTS pgreplica.table_state (
    set_name    text NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    state       text NOT NULL,
    snapshot    text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, schema_name, table_name)
);

-- Events of a table that is being copied (state 'copying'), held back by
-- the engine instead of applied; when the copy has committed (state
-- 'catchup', snapshot = the copy's snapshot), they are applied in seq order,
-- skipping those the copy already contains.
CREATE TABLE IF NOT EXISTS pgreplica.held (
    seq         bigserial PRIMARY KEY,
    set_name    text NOT NULL,
    event_id    bigint NOT NULL,
    txid        bigint NOT NULL,
    at          timestamptz NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    op          "char" NOT NULL,
    key         jsonb,
    data        jsonb
);
CREATE INDEX IF NOT EXISTS held_table ON pgreplica.held (set_name, schema_name, table_name, seq);
-- A table whose events the replica cannot apply (a column it lacks...) is
-- 'held' too, with the reason, until pgreplica retry --table releases it.
ALTER TABLE pgreplica.table_state ADD COLUMN IF NOT EXISTS reason text;
-- rule: the hash of the replica's rule for the table (config
-- replicas[].tables) that its last copy was made under, NULL for none; a
-- table whose rule changed since needs a new copy (pgreplica sync --table).
ALTER TABLE pgreplica.table_state ADD COLUMN IF NOT EXISTS rule text;

-- Raised by the engine's position update when the stored position is not
-- the one it applied from (another applier, a verify): the transaction then
-- fails and nothing of it is committed.
CREATE OR REPLACE FUNCTION pgreplica.position_moved() RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'the replica''s position moved under this applier' USING ERRCODE = 'RP001';
END
$$;

-- Events the operator chose to move past (pgreplica skip), never applied
-- by the engine, kept with who, when and why; pgreplica reapply applies one
-- later and records when.
CREATE TABLE IF NOT EXISTS pgreplica.skipped (
    set_name     text NOT NULL,
    event_id     bigint NOT NULL,
    txid         text NOT NULL,
    schema_name  text NOT NULL,
    table_name   text NOT NULL,
    op           "char" NOT NULL,
    key          jsonb,
    data         jsonb,
    reason       text NOT NULL DEFAULT '',
    skipped_by   text NOT NULL,
    skipped_at   timestamptz NOT NULL DEFAULT now(),
    reapplied_at timestamptz,
    PRIMARY KEY (set_name, event_id)
);

-- Fencing (replicas[].protect): a statement trigger on each replicated
-- table refuses writes from everyone but pgreplica's apply session, whose
-- session_replication_role = replica switches ordinary triggers off, or
-- which holds the token that pgreplica.begin_apply sets (a non-superuser
-- apply role). The same token and function as on an origin (sql/origin.sql):
-- a database that is both holds one of each.
CREATE TABLE IF NOT EXISTS pgreplica.apply_token (
    token text NOT NULL
);
REVOKE ALL ON pgreplica.apply_token FROM PUBLIC;
INSERT INTO pgreplica.apply_token (token)
SELECT gen_random_uuid()::text || gen_random_uuid()::text
 WHERE NOT EXISTS (SELECT 1 FROM pgreplica.apply_token);

CREATE OR REPLACE FUNCTION pgreplica.begin_apply(tag text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT set_config('pgreplica.origin', tag, false),
           set_config('pgreplica.token', (SELECT token FROM pgreplica.apply_token LIMIT 1), false);
$$;
REVOKE ALL ON FUNCTION pgreplica.begin_apply(text) FROM PUBLIC;

-- The trigger's argument is the message's end: the set and its origin.
CREATE OR REPLACE FUNCTION pgreplica.fence() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('pgreplica.token', true) IS NOT DISTINCT FROM (SELECT token FROM pgreplica.apply_token LIMIT 1) THEN
        RETURN NULL; -- pgreplica's apply session
    END IF;
    RAISE EXCEPTION 'pgreplica: %.% is a replica (%): write to the origin instead', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'Only pgreplica applies changes to this table here (replicas[].protect in its config).';
END
$$;

INSERT INTO pgreplica.meta (key, value) VALUES ('replica_version', '3')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value WHERE pgreplica.meta.value <> EXCLUDED.value;
