//! Property: see [`ferrocast_fuzz::ws_flv_client`] (fuzz/src/lib.rs); needs `--features api`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::ws_flv_client(data));
