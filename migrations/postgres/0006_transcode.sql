-- Renditions (an ABR ladder) made by an ffmpeg child: JSON like the other model columns; '{}'
-- reads as the defaults (no ladder), so existing streams and templates are unchanged.
ALTER TABLE streams ADD COLUMN transcode TEXT NOT NULL DEFAULT '{}';
ALTER TABLE templates ADD COLUMN transcode TEXT NOT NULL DEFAULT '{}';
