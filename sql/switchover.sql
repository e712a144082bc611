-- pgreplica switchover: the fence put on the origin's replicated tables
-- while the origin role moves to a replica. Created by the switchover's
-- first step, dropped by its last (or by --abort):
--   CREATE TRIGGER pgreplica_switchover BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON t
--     FOR EACH STATEMENT EXECUTE FUNCTION pgreplica.switchover_fence('set shop to r1 (host:port/db)');
-- Applications fail fast with a message naming the new origin instead of
-- writing into a database that is about to become a replica. pgreplica's
-- own apply session (its token, see pgreplica.begin_apply) passes.
CREATE OR REPLACE FUNCTION pgreplica.switchover_fence() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('pgreplica.token', true) IS NOT DISTINCT FROM (SELECT token FROM pgreplica.apply_token LIMIT 1) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pgreplica: %.% is fenced for the switchover of %: write to the new origin once it completes', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'pgreplica switchover is moving the origin role; this database no longer takes writes for its replicated tables.';
END
$$;
