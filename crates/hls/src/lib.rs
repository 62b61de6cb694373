//! hls (being written)
