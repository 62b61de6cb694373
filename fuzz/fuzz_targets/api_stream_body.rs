//! Property: see [`ferrocast_fuzz::api_stream_body`] (fuzz/src/api.rs); needs `--features api`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::api_stream_body(data));
