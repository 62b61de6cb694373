//! Property: see [`ferrocast_fuzz::hls_playlist`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::hls_playlist(data));
