//! Push URLs are RTMP client URLs: the parser and the masking live with the RTMP client.

pub use rtmp::url::{Target, masked, parse};
