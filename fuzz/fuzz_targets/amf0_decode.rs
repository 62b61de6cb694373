//! Property: see [`ferrocast_fuzz::amf0_decode`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::amf0_decode(data));
