#![no_main]
//! `procwire::fuzz::shm_ring` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| procwire::fuzz::shm_ring(data));
