//! Property: see [`ferrocast_fuzz::rtmp_chunk_decode`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::rtmp_chunk_decode(data));
