//! Property: see [`ferrocast_fuzz::rtmp_chunk_roundtrip`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::rtmp_chunk_roundtrip(data));
