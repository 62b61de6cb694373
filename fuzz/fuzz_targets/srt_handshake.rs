//! Property: see [`ferrocast_fuzz::srt_handshake`] (fuzz/src/srt.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::srt_handshake(data));
