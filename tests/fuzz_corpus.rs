//! Replays every saved fuzzing input (fuzz/saved/TARGET.frames, written by
//! scripts/fuzz, and the inputs that once crashed, fuzz/regressions/TARGET)
//! through its entry point in `procwire::fuzz`: CI checks the corpus
//! without a fuzzer.

mod util;

use std::path::Path;

use procwire::frame::FrameReader;
use util::checked;

#[test]
fn every_saved_input_passes_its_decoder() {
    checked(600, || {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut total = 0;
        for (name, run) in procwire::fuzz::targets() {
            let mut n = 0;
            let packed = std::fs::read(root.join("saved").join(format!("{name}.frames")))
                .unwrap_or_else(|e| panic!("no saved corpus for {name} ({e}): run scripts/fuzz"));
            let mut inputs = FrameReader::with_max_frame(&packed[..], 1 << 20).unwrap();
            while let Some(bytes) = inputs.recv().unwrap() {
                let outcome = std::panic::catch_unwind(|| run(bytes));
                assert!(outcome.is_ok(), "saved input {n} of {name} panicked");
                n += 1;
            }
            if let Ok(entries) = std::fs::read_dir(root.join("regressions").join(name)) {
                for e in entries {
                    let path = e.unwrap().path();
                    let bytes = std::fs::read(&path).unwrap();
                    let outcome = std::panic::catch_unwind(|| run(&bytes));
                    assert!(outcome.is_ok(), "{} panicked", path.display());
                    n += 1;
                }
            }
            assert!(n > 0, "no saved inputs for {name}: run scripts/fuzz");
            println!("{name}: {n} inputs");
            total += n;
        }
        println!("{total} inputs replayed");
    });
}
