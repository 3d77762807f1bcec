#![no_main]
//! `procwire::fuzz::handshake` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| procwire::fuzz::handshake(data));
