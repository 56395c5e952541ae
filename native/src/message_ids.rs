//! The positions that delivery reports' message ids carry: a batch of
//! `streams.ids.position_of`, as the delivery fold asks it (`carried_positions`).
//!
//! A `position` message id ends in 14 hex of blake2b("<job id>\0<position>",
//! 7 bytes) and the position in 10 hex (`streams.ids`): the position is read
//! back and the digest made again. Anything else carries none (-1): an
//! `identity` id, another job's, a made-up one, one whose last 24 characters
//! are not lowercase hex as `positional_message_id` writes them.

use pyo3::prelude::*;

use crate::POSITION_DIGEST_BYTES;

const DIGEST_HEX: usize = 2 * POSITION_DIGEST_BYTES;
const POSITION_HEX: usize = 10;

fn lower_hex(text: &[u8]) -> bool {
    text.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The position `message_id` carries as one of `job_id`'s, or -1.
pub(crate) fn carried(job_id: &str, message_id: &str) -> i64 {
    let id = message_id.as_bytes();
    // Python takes the last 24 characters: when those are ASCII, they are the last 24
    // bytes; a non-ASCII one never makes a match there.
    let Some(last) = id
        .len()
        .checked_sub(DIGEST_HEX + POSITION_HEX)
        .map(|at| &id[at..])
    else {
        return -1;
    };
    let (digest, position_hex) = last.split_at(DIGEST_HEX);
    if !lower_hex(digest) || !lower_hex(position_hex) {
        return -1;
    }
    // 10 lowercase hex digits (checked above): 0 to 2^40 - 1
    let Some(position) = std::str::from_utf8(position_hex)
        .ok()
        .and_then(|hex| i64::from_str_radix(hex, 16).ok())
    else {
        return -1;
    };
    let mut state = blake2b_simd::Params::new()
        .hash_length(POSITION_DIGEST_BYTES)
        .to_state();
    state
        .update(job_id.as_bytes())
        .update(b"\0")
        .update(position.to_string().as_bytes());
    let made = state.finalize();
    let matches = made
        .as_bytes()
        .iter()
        .zip(digest.chunks(2))
        .all(|(byte, pair)| crate::HEX[usize::from(*byte)] == pair);
    if matches {
        position
    } else {
        -1
    }
}

/// For each (job id, message id), the position the id carries as one of that job's
/// (`streams.ids.position_of`), or -1.
#[pyfunction]
fn carried_positions(py: Python<'_>, job_ids: Vec<String>, message_ids: Vec<String>) -> Vec<i64> {
    py.detach(|| {
        job_ids
            .iter()
            .zip(&message_ids)
            .map(|(job, id)| carried(job, id))
            .collect()
    })
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(carried_positions, module)?)
}
