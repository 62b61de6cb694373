//! Sources a stream pulls, and the choice among a stream's inputs.

pub mod url;
