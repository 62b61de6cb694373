-- Stream templates (issue 13, /api/v1/templates): the settings a stream created from one, or a
-- publish to an unknown code starting with its prefix, starts with. JSON columns hold serde_json
-- of the same model types as `streams`. A NULL prefix is allowed any number of times (SQLite
-- treats NULLs as distinct in UNIQUE); a set one belongs to one template, so matching is never
-- ambiguous.
CREATE TABLE templates (
    name        TEXT    NOT NULL PRIMARY KEY,
    prefix      TEXT    UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    tags        TEXT    NOT NULL DEFAULT '[]',
    stream_key  TEXT,
    protocols   TEXT    NOT NULL DEFAULT '{}',
    push        TEXT    NOT NULL DEFAULT '[]',
    inputs      TEXT    NOT NULL DEFAULT '[]',
    failover    TEXT    NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL, -- Unix ms
    updated_at  INTEGER NOT NULL  -- Unix ms
) STRICT;
