-- Stream configurations. JSON columns hold serde_json of the model types (see crates/store).
-- STRICT makes SQLite reject values of the wrong type instead of storing them silently.
CREATE TABLE streams (
    code        TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]',
    stream_key  TEXT,
    disabled    INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    protocols   TEXT    NOT NULL DEFAULT '{}',
    push        TEXT    NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL, -- Unix ms
    updated_at  INTEGER NOT NULL  -- Unix ms
) STRICT;
