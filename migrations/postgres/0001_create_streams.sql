-- Stream configurations. JSON columns hold serde_json of the model types (see crates/store);
-- TEXT rather than JSONB so both databases store the same bytes.
CREATE TABLE streams (
    -- "C" collation: list() orders by code byte-wise, exactly like SQLite, whatever the
    -- database locale is.
    code        TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]',
    stream_key  TEXT,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    protocols   TEXT    NOT NULL DEFAULT '{}',
    push        TEXT    NOT NULL DEFAULT '[]',
    created_at  BIGINT  NOT NULL, -- Unix ms
    updated_at  BIGINT  NOT NULL  -- Unix ms
);
