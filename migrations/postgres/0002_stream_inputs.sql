-- Pulled and pushed sources with failover (issue 13): JSON like the other model columns.
ALTER TABLE streams ADD COLUMN inputs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE streams ADD COLUMN failover TEXT NOT NULL DEFAULT '{}';
