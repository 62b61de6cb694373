//! mpegts (being written)
