-- Event sinks (issue 13, /api/v1/hooks): HTTP webhooks and JSON-lines files. `events` and
-- `streams` hold JSON arrays of filters like the JSON columns of `streams`.
CREATE TABLE webhooks (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL DEFAULT '',
    kind           TEXT    NOT NULL CHECK (kind IN ('http', 'file')),
    target         TEXT    NOT NULL, -- URL (http) or path under the events directory (file)
    secret         TEXT,             -- HMAC-SHA256 key (http)
    enabled        INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    events         TEXT    NOT NULL DEFAULT '[]',
    streams        TEXT    NOT NULL DEFAULT '[]',
    batch_max      INTEGER NOT NULL,
    batch_delay_ms INTEGER NOT NULL,
    queue_max      INTEGER NOT NULL,
    timeout_ms     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL, -- Unix ms
    updated_at     INTEGER NOT NULL  -- Unix ms
) STRICT;
