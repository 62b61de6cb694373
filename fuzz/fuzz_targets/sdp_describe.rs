//! Property: see [`ferrocast_fuzz::sdp_describe`] (fuzz/src/rtsp.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::sdp_describe(data));
