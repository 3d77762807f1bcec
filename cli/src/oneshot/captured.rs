//! A job's output on one stream, held until its turn to be printed: in
//! memory up to [`IN_MEMORY`] bytes, then in an unlinked temporary file (as
//! GNU parallel keeps it), so that a job that prints gigabytes (`zcat {}`)
//! is not held in memory, nor are the many results an ordered run may keep
//! waiting behind a slow job.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use serde::{Deserialize, Serialize};

/// What a stream keeps in memory before the rest goes to a file.
pub const IN_MEMORY: usize = 64 << 10;

/// The bytes of one stream: those in `file` (if any), then those in `mem`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Captured {
    /// Where the output went past [`IN_MEMORY`]. (A result never leaves
    /// this process: the one-shot link's slots are threads of the pool's.)
    #[serde(skip)]
    file: Option<File>,
    /// A file could not be made or written: the rest stays in memory, so
    /// that nothing is lost.
    #[serde(skip)]
    no_file: bool,
    mem: Vec<u8>,
    len: u64,
}

impl Captured {
    /// How many bytes the job wrote.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Takes `data`, the next bytes of the stream.
    pub fn push(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.file.is_none() && !self.no_file && self.mem.len() + data.len() > IN_MEMORY {
            match tempfile::tempfile() {
                Ok(mut f) => match f.write_all(&self.mem) {
                    Ok(()) => {
                        self.mem.clear();
                        self.file = Some(f);
                    }
                    Err(e) => self.without_file(&e),
                },
                Err(e) => self.without_file(&e),
            }
        }
        if let Some(f) = &mut self.file
            && self.mem.is_empty()
        {
            while !data.is_empty() {
                match f.write(data) {
                    Ok(0) => break,
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.without_file(&e);
                        break;
                    }
                }
            }
        }
        self.mem.extend_from_slice(data);
    }

    fn without_file(&mut self, why: &io::Error) {
        if !self.no_file {
            eprintln!(
                "procwire pool: a job's output is kept in memory from here on: a temporary \
                 file for it could not be written ({why}; TMPDIR names where they go)"
            );
        }
        self.no_file = true;
    }

    /// Writes the stream to `out`, each line after `tag` and a tab if given.
    pub fn write_to(&mut self, out: &mut dyn Write, tag: Option<&str>) -> io::Result<()> {
        let mut line_start = true;
        let mut put = |bytes: &[u8]| -> io::Result<()> {
            let Some(t) = tag else {
                return out.write_all(bytes);
            };
            for piece in bytes.split_inclusive(|&b| b == b'\n') {
                if line_start {
                    out.write_all(t.as_bytes())?;
                    out.write_all(b"\t")?;
                }
                out.write_all(piece)?;
                line_start = piece.ends_with(b"\n");
            }
            Ok(())
        };
        if let Some(f) = &mut self.file {
            f.rewind()?;
            let mut chunk = vec![0u8; 64 << 10];
            loop {
                match f.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => put(&chunk[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        put(&self.mem)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_memory_limit_the_output_goes_to_a_file_and_comes_back_whole() {
        let mut c = Captured::default();
        let mut want = Vec::new();
        for i in 0..40_000u32 {
            let line = format!("line {i}\n");
            c.push(line.as_bytes());
            want.extend_from_slice(line.as_bytes());
        }
        c.push(b"no newline at the end");
        want.extend_from_slice(b"no newline at the end");
        assert!(c.file.is_some(), "spilled");
        assert!(c.mem.len() <= IN_MEMORY);
        assert_eq!(c.len(), want.len() as u64);
        let mut got = Vec::new();
        c.write_to(&mut got, None).unwrap();
        assert_eq!(got, want);
        let mut tagged = Vec::new();
        c.write_to(&mut tagged, Some("t")).unwrap();
        let expected: Vec<u8> = want
            .split_inclusive(|&b| b == b'\n')
            .flat_map(|l| [&b"t\t"[..], l].concat())
            .collect();
        assert_eq!(tagged, expected);
    }
}
