//! A stored batch of a job's users (`streams.aggregate.paging.encode_batch`), written
//! natively: the same bytes, without a Python call per user.
//!
//! A batch is MAGIC, its first position and count (little-endian u64 each), the byte
//! offset where each user's JSON ends (u64 each), then the users' JSON
//! (`[position,identity,user]`, the user spliced from its JSON as read) joined by
//! commas. A user with more than those three members (an ingest's metadata) is left
//! to the Python path, which writes the whole batch.
//!
//! tests/streams/test_stored_batch_native.py keeps the two equal.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

const MAGIC: &[u8] = b"\x00B1";

/// `encode_batch(users, sent)`, or None for a batch the Python path is left to write
/// (a user not a list of position, identity and user, or with more members).
#[pyfunction]
fn encode_batch<'py>(
    py: Python<'py>,
    users: &Bound<'py, PyList>,
    sent: &Bound<'py, PyList>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let count = users.len();
    if sent.len() != count {
        return Err(PyValueError::new_err("users and sent differ in length"));
    }
    let mut json: Vec<u8> = Vec::new();
    let mut ends: Vec<u64> = Vec::with_capacity(count);
    let mut first: u64 = 0;
    for (n, (user, wire)) in users.iter().zip(sent.iter()).enumerate() {
        let Ok(user) = user.cast::<PyList>() else {
            return Ok(None);
        };
        if user.len() != 3 {
            return Ok(None);
        }
        let Ok(position) = user.get_item(0)?.extract::<u64>() else {
            return Ok(None);
        };
        if n == 0 {
            first = position;
        } else if position != first + n as u64 {
            return Err(PyValueError::new_err(
                "a batch's positions must be contiguous",
            ));
        }
        if n > 0 {
            json.push(b',');
        }
        json.push(b'[');
        json.extend_from_slice(position.to_string().as_bytes());
        json.push(b',');
        let identity = user.get_item(1)?;
        let (Ok(identity), Ok(wire)) = (identity.cast::<PyString>(), wire.cast::<PyBytes>()) else {
            return Ok(None);
        };
        serde_json::to_writer(&mut json, identity.to_str()?).expect("a string always serializes");
        json.push(b',');
        json.extend_from_slice(wire.as_bytes());
        json.push(b']');
        ends.push(json.len() as u64);
    }
    let size = MAGIC.len() + 16 + 8 * count + json.len();
    let encoded = PyBytes::new_with(py, size, |out| {
        let (magic, rest) = out.split_at_mut(MAGIC.len());
        magic.copy_from_slice(MAGIC);
        rest[..8].copy_from_slice(&first.to_le_bytes());
        rest[8..16].copy_from_slice(&(count as u64).to_le_bytes());
        let mut at = 16;
        for end in &ends {
            rest[at..at + 8].copy_from_slice(&end.to_le_bytes());
            at += 8;
        }
        rest[at..].copy_from_slice(&json);
        Ok(())
    })?;
    Ok(Some(encoded))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(encode_batch, module)?)
}
