#![no_main]
//! `procwire::fuzz::fd_message` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| procwire::fuzz::fd_message(data));
