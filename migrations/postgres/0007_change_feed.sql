-- Every node of a cluster LISTENs on `ferrocast_config`: a stream, template or webhook
-- created, changed or deleted by any node (or by hand in psql) reaches the others at once,
-- and each reloads that one record. The payload is `schema|table|key`, so clusters that
-- share a database in separate schemas ignore each other's changes.
CREATE FUNCTION ferrocast_config_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'ferrocast_config',
        TG_TABLE_SCHEMA || '|' || TG_TABLE_NAME || '|' ||
            (CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END ->> TG_ARGV[0])
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER streams_changed AFTER INSERT OR UPDATE OR DELETE ON streams
    FOR EACH ROW EXECUTE FUNCTION ferrocast_config_changed('code');
CREATE TRIGGER templates_changed AFTER INSERT OR UPDATE OR DELETE ON templates
    FOR EACH ROW EXECUTE FUNCTION ferrocast_config_changed('name');
CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION ferrocast_config_changed('id');
