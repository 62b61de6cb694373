//! Property: see [`ferrocast_fuzz::fmp4_segment`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::fmp4_segment(data));
