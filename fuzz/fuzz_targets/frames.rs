#![no_main]
//! `procwire::fuzz::frames` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| procwire::fuzz::frames(data));
