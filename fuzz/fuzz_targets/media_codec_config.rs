//! Property: see [`ferrocast_fuzz::media_codec_config`] (fuzz/src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_fuzz::media_codec_config(data));
