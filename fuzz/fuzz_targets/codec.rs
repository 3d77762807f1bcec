#![no_main]
//! `procwire::fuzz::codec` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| procwire::fuzz::codec(data));
