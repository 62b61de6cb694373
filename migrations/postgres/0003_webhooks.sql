-- Event sinks (issue 13, /api/v1/hooks): HTTP webhooks and JSON-lines files. `events` and
-- `streams` hold JSON arrays of filters, as TEXT like the JSON columns of `streams`.
CREATE TABLE webhooks (
    -- "C" collation: list order is byte-wise, exactly like SQLite.
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT    NOT NULL DEFAULT '',
    kind           TEXT    NOT NULL CHECK (kind IN ('http', 'file')),
    target         TEXT    NOT NULL, -- URL (http) or path under the events directory (file)
    secret         TEXT,             -- HMAC-SHA256 key (http)
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    events         TEXT    NOT NULL DEFAULT '[]',
    streams        TEXT    NOT NULL DEFAULT '[]',
    batch_max      BIGINT  NOT NULL,
    batch_delay_ms BIGINT  NOT NULL,
    queue_max      BIGINT  NOT NULL,
    timeout_ms     BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL, -- Unix ms
    updated_at     BIGINT  NOT NULL  -- Unix ms
);
