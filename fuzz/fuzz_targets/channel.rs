#![no_main]
//! `procwire::fuzz::channel` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| procwire::fuzz::channel(data));
