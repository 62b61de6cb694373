//! Property: see [`ferrocast_fuzz::flv_stream`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::flv_stream(data));
