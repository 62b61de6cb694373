-- Recording to disk (issue 15): JSON like the other model columns; '{}' reads as the defaults
-- (not recording), so existing streams and templates are unchanged.
ALTER TABLE streams ADD COLUMN recording TEXT NOT NULL DEFAULT '{}';
ALTER TABLE templates ADD COLUMN recording TEXT NOT NULL DEFAULT '{}';
