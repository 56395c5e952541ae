//! A job's message digests in a Bloom filter, for the ingest's dedupe check
//! (`streams.aggregate.dedupe`): `maybe` answers which of some digests may have
//! been added. A digest added is always answered (no false negative); one never
//! added is answered with a probability of about 1 % per chunk, and then only
//! costs the RocksDB read the filter would have spared.
//!
//! A digest is 24 hex digits (96 random bits: `streams.ids.message_digest`), so
//! its own bits are the hashes: the first 16 digits and the last 16 give the two
//! of double hashing. Anything else (never made by `message_digest`) is always
//! answered "maybe".
//!
//! The filter grows in chunks, each four times the capacity of the one before
//! (from 1,024 digests up to 1,048,576 each), 10 bits a digest: a 10-user job
//! holds about 1 KiB, a 1M-user job about 1.6 MiB, a 10M-user one about 13 MiB.

use pyo3::prelude::*;
use pyo3::types::PyList;

const BITS_PER_DIGEST: usize = 10;
const PROBES: u64 = 7;
const FIRST_CAPACITY: usize = 1 << 10;
const LARGEST_CAPACITY: usize = 1 << 20;

struct Chunk {
    words: Vec<u64>,
    bits: u64,
    capacity: usize,
    count: usize,
}

impl Chunk {
    fn new(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_DIGEST).div_ceil(64);
        Chunk {
            words: vec![0; words],
            bits: (words * 64) as u64,
            capacity,
            count: 0,
        }
    }

    fn positions(bits: u64, (h1, h2): (u64, u64)) -> impl Iterator<Item = u64> {
        (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
    }

    fn insert(&mut self, hashes: (u64, u64)) {
        for bit in Self::positions(self.bits, hashes) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        self.count += 1;
    }

    fn contains(&self, hashes: (u64, u64)) -> bool {
        Self::positions(self.bits, hashes)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

/// The two hashes of a digest (24 lowercase or uppercase hex digits); None otherwise.
fn hashes(digest: &str) -> Option<(u64, u64)> {
    let digits = digest.as_bytes();
    if digits.len() != 24 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let first = u64::from_str_radix(&digest[..16], 16).ok()?;
    let last = u64::from_str_radix(&digest[8..], 16).ok()?;
    Some((first, last | 1)) // an odd step visits distinct bits
}

/// The message digests added to it, answered "maybe" ever after.
#[pyclass(module = "bulkstream_native")]
pub struct DigestFilter {
    chunks: Vec<Chunk>,
}

#[pymethods]
impl DigestFilter {
    #[new]
    fn new() -> Self {
        DigestFilter { chunks: Vec::new() }
    }

    /// Add these digests.
    fn add(&mut self, digests: Vec<String>) {
        for digest in &digests {
            let Some(hashes) = hashes(digest) else {
                continue; // answered "maybe" anyway
            };
            let full = self.chunks.last().map_or(true, |c| c.count >= c.capacity);
            if full {
                let capacity = self
                    .chunks
                    .last()
                    .map_or(FIRST_CAPACITY, |c| (c.capacity * 4).min(LARGEST_CAPACITY));
                self.chunks.push(Chunk::new(capacity));
            }
            if let Some(chunk) = self.chunks.last_mut() {
                chunk.insert(hashes);
            }
        }
    }

    /// The indexes, in `digests`, of those that may have been added.
    fn maybe<'py>(&self, py: Python<'py>, digests: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let found = PyList::empty(py);
        for (index, digest) in digests.iter().enumerate() {
            let known = match hashes(digest) {
                Some(hashes) => self.chunks.iter().any(|c| c.contains(hashes)),
                None => true,
            };
            if known {
                found.append(index)?;
            }
        }
        Ok(found)
    }

    /// How many digests were added.
    fn __len__(&self) -> usize {
        self.chunks.iter().map(|c| c.count).sum()
    }

    /// The bytes its bits take.
    #[getter]
    fn nbytes(&self) -> usize {
        self.chunks.iter().map(|c| c.words.len() * 8).sum()
    }
}
