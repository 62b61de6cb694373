-- Stream templates (issue 13, /api/v1/templates): the settings a stream created from one, or a
-- publish to an unknown code starting with its prefix, starts with. JSON columns hold serde_json
-- of the same model types as `streams` (TEXT, so both databases store the same bytes). NULL
-- prefixes are distinct in UNIQUE; a set one belongs to one template, so matching is never
-- ambiguous. The constraint is named so a violation can be told from a taken name.
CREATE TABLE templates (
    -- "C" collation: list order is byte-wise, as in SQLite.
    name        TEXT COLLATE "C" PRIMARY KEY,
    prefix      TEXT COLLATE "C",
    description TEXT   NOT NULL DEFAULT '',
    tags        TEXT   NOT NULL DEFAULT '[]',
    stream_key  TEXT,
    protocols   TEXT   NOT NULL DEFAULT '{}',
    push        TEXT   NOT NULL DEFAULT '[]',
    inputs      TEXT   NOT NULL DEFAULT '[]',
    failover    TEXT   NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL, -- Unix ms
    updated_at  BIGINT NOT NULL, -- Unix ms
    CONSTRAINT templates_prefix_unique UNIQUE (prefix)
);
