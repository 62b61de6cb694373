//! Property: see [`ferrocast_fuzz::rtsp_request`] (fuzz/src/rtsp.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::rtsp_request(data));
