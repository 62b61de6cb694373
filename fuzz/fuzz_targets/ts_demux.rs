//! Property: see [`ferrocast_fuzz::ts_demux`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::ts_demux(data));
