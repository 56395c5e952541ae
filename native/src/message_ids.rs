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

/// The value of lowercase hex digits (as `positional_message_id` writes them), or None
/// for any other character.
fn lower_hex_value(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |value, &b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | i64::from(digit))
    })
}

/// The digests of one job's positions: blake2b with the job id and its separator
/// absorbed once, so that each message id checked costs a copy of that state and the
/// digest of its position alone.
pub(crate) struct JobDigests {
    job_id: String,
    state: blake2b_simd::State,
}

impl JobDigests {
    pub(crate) fn of(job_id: &str) -> Self {
        let mut state = blake2b_simd::Params::new()
            .hash_length(POSITION_DIGEST_BYTES)
            .to_state();
        state.update(job_id.as_bytes()).update(b"\0");
        JobDigests {
            job_id: job_id.to_owned(),
            state,
        }
    }

    /// These digests, or a job's of its own when `job_id` is another.
    pub(crate) fn for_job<'a>(cached: &'a mut Option<JobDigests>, job_id: &str) -> &'a JobDigests {
        if cached.as_ref().map_or(true, |made| made.job_id != job_id) {
            *cached = Some(JobDigests::of(job_id));
        }
        cached.as_ref().expect("made above")
    }

    /// The position `message_id` carries as one of this job's, or -1.
    pub(crate) fn carried(&self, message_id: &str) -> i64 {
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
        // 10 lowercase hex digits: 0 to 2^40 - 1. The digest's 14 are compared with
        // lowercase hex below: anything else differs.
        let Some(position) = lower_hex_value(position_hex) else {
            return -1;
        };
        let mut state = self.state.clone();
        state.update(itoa::Buffer::new().format(position).as_bytes());
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
}

/// For each (job id, message id), the position the id carries as one of that job's
/// (`streams.ids.position_of`), or -1.
#[pyfunction]
fn carried_positions(py: Python<'_>, job_ids: Vec<String>, message_ids: Vec<String>) -> Vec<i64> {
    py.detach(|| {
        let mut digests = None;
        job_ids
            .iter()
            .zip(&message_ids)
            .map(|(job, id)| JobDigests::for_job(&mut digests, job).carried(id))
            .collect()
    })
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(carried_positions, module)?)
}
