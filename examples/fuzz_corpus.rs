//! The saved fuzzing corpus, for `scripts/fuzz`: each target's inputs live
//! in git as one file of wire-format frames (`fuzz/saved/TARGET.frames`);
//! libFuzzer wants a directory of files (`fuzz/corpus/TARGET/`).
//!
//! `cargo run --example fuzz_corpus -- unpack|pack`
//! - `unpack`: saved frames and `procwire::fuzz::seeds()` into the directories;
//! - `pack`: the directories back into the saved files.

use std::fs;
use std::path::Path;

use procwire::frame::{FrameReader, FrameWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let saved = root.join("saved");
    let corpus = root.join("corpus");
    match std::env::args().nth(1).as_deref() {
        Some("unpack") => {
            for (name, _) in procwire::fuzz::targets() {
                let dir = corpus.join(name);
                // The saved file is the corpus: start from it alone.
                if dir.exists() {
                    fs::remove_dir_all(&dir)?;
                }
                fs::create_dir_all(&dir)?;
                if let Ok(bytes) = fs::read(saved.join(format!("{name}.frames"))) {
                    let mut r = FrameReader::with_max_frame(&bytes[..], 1 << 20)?;
                    let mut i = 0;
                    while let Some(input) = r.recv()? {
                        fs::write(dir.join(format!("saved-{i}")), input)?;
                        i += 1;
                    }
                }
            }
            for (i, (name, bytes)) in procwire::fuzz::seeds().into_iter().enumerate() {
                fs::write(corpus.join(name).join(format!("seed-{i}")), bytes)?;
            }
        }
        Some("pack") => {
            fs::create_dir_all(&saved)?;
            for (name, _) in procwire::fuzz::targets() {
                let mut files: Vec<_> = fs::read_dir(corpus.join(name))?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<Result<_, _>>()?;
                files.sort();
                let mut w = FrameWriter::with_max_frame(Vec::new(), 1 << 20)?;
                let mut seen = std::collections::HashSet::new();
                for f in &files {
                    let input = fs::read(f)?;
                    if seen.insert(input.clone()) {
                        w.send(&input)?;
                    }
                }
                fs::write(saved.join(format!("{name}.frames")), w.into_inner())?;
                println!("{name}: {} inputs saved", seen.len());
            }
        }
        _ => return Err("usage: fuzz_corpus unpack|pack".into()),
    }
    Ok(())
}
