//! The keys an ingest command's users are checked and indexed by, a command's worth
//! at a time: each user's identity (`schemas.commands.identity_of`) and each
//! identity's digest in its job (`streams.ids.message_digest`), the same strings
//! the Python functions give, without a Python call per user.
//!
//! tests/streams/test_ingest_keys_native.py keeps the two equal.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::{HEX, IDENTITY_DIGEST_BYTES};

/// `dict.get(name)` if `member` is a dict, else None (`identity_of` reads a `to` or
/// `profile` that is not an object as an empty one).
fn member<'py>(
    member: &Option<Bound<'py, PyDict>>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match member {
        Some(dict) => dict.get_item(name),
        None => Ok(None),
    }
}

/// `schemas.commands.identity_of` of one user (a dict).
fn identity<'py>(py: Python<'py>, user: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let user = user.cast::<PyDict>()?;
    let as_dict =
        |value: Option<Bound<'py, PyAny>>| value.and_then(|v| v.cast_into::<PyDict>().ok());
    let to = as_dict(user.get_item(intern!(py, "to"))?);
    let profile = as_dict(user.get_item(intern!(py, "profile"))?);
    let candidates = [
        ("user:", member(&to, intern!(py, "user_id"))?),
        ("user:", user.get_item(intern!(py, "recipient"))?),
        ("email:", member(&profile, intern!(py, "email"))?),
        ("email:", member(&to, intern!(py, "email"))?),
        ("phone:", member(&profile, intern!(py, "phone_number"))?),
        ("phone:", member(&to, intern!(py, "phone_number"))?),
    ];
    for (kind, value) in candidates {
        let Some(value) = value else { continue };
        let Ok(text) = value.cast::<PyString>() else {
            continue;
        };
        match text.to_str() {
            Ok("") => continue,
            Ok(text) => return Ok(PyString::new(py, &format!("{kind}{text}")).into_any()),
            // Not UTF-8 (a lone surrogate): Python's own concatenation, as identity_of's.
            Err(_) => return PyString::new(py, kind).add(text),
        }
    }
    Ok(py.None().into_bound(py))
}

/// For each user (a dict), its identity or None: `schemas.commands.identity_of`.
#[pyfunction]
fn identities<'py>(py: Python<'py>, users: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyList>> {
    let found = PyList::empty(py);
    for user in users.iter() {
        found.append(identity(py, &user)?)?;
    }
    Ok(found)
}

/// For each identity, its digest in the job: `streams.ids.message_digest`.
#[pyfunction]
fn message_digests<'py>(
    py: Python<'py>,
    job_id: &str,
    identities: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let mut hash = blake2b_simd::Params::new()
        .hash_length(IDENTITY_DIGEST_BYTES)
        .to_state();
    hash.update(job_id.as_bytes()).update(b"\0");
    let digests = PyList::empty(py);
    let mut hex = [0u8; 2 * IDENTITY_DIGEST_BYTES];
    for identity in identities.iter() {
        // A str that is not UTF-8 raises UnicodeEncodeError, as `str.encode` does.
        let identity = identity.cast::<PyString>()?.to_str()?;
        let made = hash.clone().update(identity.as_bytes()).finalize();
        for (pair, byte) in hex.chunks_mut(2).zip(made.as_bytes()) {
            pair.copy_from_slice(&HEX[usize::from(*byte)]);
        }
        // hex digits are ASCII
        let text = std::str::from_utf8(&hex).expect("hex digits are UTF-8");
        digests.append(PyString::new(py, text))?;
    }
    Ok(digests)
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(identities, module)?)?;
    module.add_function(wrap_pyfunction!(message_digests, module)?)
}
