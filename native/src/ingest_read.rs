//! An ingest command read natively (`streams.aggregate.decode`, its fast way): its
//! envelope, each user's JSON as orjson writes it, and each user's identity, with no
//! Python object a user but those two.
//!
//! The Python way decodes the command with orjson, checks each user with
//! `schemas.commands.is_bulk_user`, dumps each with orjson and reads its identity
//! (`identity_of`). Here serde_json reads the command (so it is well formed), then
//! one pass over each user copies it and keeps the members its checks and its
//! identity read: JSON that orjson would read back and write out the same, less
//! the whitespace between tokens, is its own orjson form. Whatever that cannot
//! vouch for hands the whole command back (None) to the Python way: an escape in
//! a user (orjson writes its own escapes), a number that is not a plain integer
//! (orjson writes floats its way, and `-0` as `0`), a repeated key at any depth (a
//! dict keeps the last value at the first one's place), a user that is not an
//! object or that `BulkUser` would refuse, anything serde_json does not read
//! (deeper than 128 levels, ...).
//!
//! tests/streams/test_ingest_read_native.py keeps the two equal.

use std::collections::HashSet;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use serde_json::value::RawValue;

use crate::{from_json, Fallback, Members, Step};

/// An ingest command as read: its envelope (the command's JSON without `users`), each
/// user's JSON in orjson's form (`users`, each ending at its `ends`), and each user's
/// identity.
struct Read {
    head: Vec<u8>,
    users: Vec<u8>,
    ends: Vec<usize>,
    identities: Vec<Option<String>>,
}

/// The command in `value`, or Fallback: the Python way reads it.
fn read(value: &[u8]) -> Step<Read> {
    let command: Members<'_> = from_json(value).ok_or(Fallback)?;
    command.check_unique()?;
    if command.get("kind").map(RawValue::get) != Some("\"ingest\"") {
        return Err(Fallback);
    }
    // Well formed (serde_json read it whole); without an escape, a string's text is
    // what lies between its quotes, as orjson writes it.
    let users = command.get("users").ok_or(Fallback)?.get().as_bytes();
    if users.contains(&b'\\') {
        return Err(Fallback);
    }
    let mut head = Vec::with_capacity(256);
    head.push(b'{');
    for (key, member) in command
        .list
        .iter()
        .filter(|(key, _)| !command.key_is(key, "users"))
    {
        if head.len() > 1 {
            head.push(b',');
        }
        head.extend_from_slice(key.get().as_bytes());
        head.push(b':');
        head.extend_from_slice(member.get().as_bytes());
    }
    head.push(b'}');
    let mut copy = Canonical::new(users, Vec::with_capacity(users.len()));
    let mut ends = Vec::new();
    let mut identities = Vec::new();
    if copy.next()? != b'[' {
        return Err(Fallback);
    }
    copy.at += 1;
    let mut more = copy.next()? != b']';
    while more {
        if copy.next()? != b'{' {
            return Err(Fallback); // not an object: BulkUser refuses it
        }
        copy.kept.clear();
        copy.object(0, Parent::User)?;
        identities.push(copy.identity()?);
        ends.push(copy.out.len());
        more = match copy.next()? {
            b',' => true,
            b']' => false,
            _ => return Err(Fallback),
        };
        copy.at += 1;
    }
    Ok(Read {
        head,
        users: copy.out,
        ends,
        identities,
    })
}

/// Whose members an object's are: the user's own (kept), those of its `to` or
/// `profile` (kept, with that member's index in `Canonical::kept`), or others.
#[derive(Clone, Copy)]
enum Parent {
    User,
    Kept(usize),
    Other,
}

/// A member kept while a user is copied: whose (None: the user's own; else the index
/// of its `to` or `profile` in `Canonical::kept`), its key's text and its value's JSON
/// (where they lie in the users' text).
struct Kept {
    parent: Option<usize>,
    key: (usize, usize),
    value: (usize, usize),
}

/// The user's members whose own members are kept: where the identity is read from.
const NESTED: [&[u8]; 2] = [b"to", b"profile"];
/// Nesting deeper than this is left to Python (serde_json refuses beyond 128 anyway).
const MOST_DEPTH: usize = 128;

/// Copies well-formed JSON without escapes in orjson's form, or answers Fallback where
/// orjson might write it otherwise; keeps what `identity` reads of each user.
struct Canonical<'a> {
    text: &'a [u8],
    at: usize,
    out: Vec<u8>,
    kept: Vec<Kept>,
}

impl<'a> Canonical<'a> {
    fn new(text: &'a [u8], out: Vec<u8>) -> Self {
        Canonical {
            text,
            at: 0,
            out,
            kept: Vec::new(),
        }
    }

    /// The next byte but whitespace (passed over).
    fn next(&mut self) -> Step<u8> {
        while self.at < self.text.len()
            && matches!(self.text[self.at], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.at += 1;
        }
        self.text.get(self.at).copied().ok_or(Fallback)
    }

    fn value(&mut self, depth: usize, parent: Parent) -> Step<()> {
        if depth > MOST_DEPTH {
            return Err(Fallback);
        }
        match self.next()? {
            b'{' => self.object(depth, parent),
            b'[' => self.array(depth),
            b'"' => self.string().map(|_| ()),
            b't' | b'f' | b'n' => self.literal(),
            _ => self.number(),
        }
    }

    fn object(&mut self, depth: usize, parent: Parent) -> Step<()> {
        let text = self.text;
        self.at += 1;
        self.out.push(b'{');
        let mut keys = Keys::default();
        let mut more = !self.closes(b'}')?;
        while more {
            if self.next()? != b'"' {
                return Err(Fallback);
            }
            let key = self.string()?;
            if !keys.insert(&text[key.0..key.1]) {
                return Err(Fallback);
            }
            if self.next()? != b':' {
                return Err(Fallback);
            }
            self.at += 1;
            self.out.push(b':');
            let start = {
                self.next()?;
                self.at
            };
            let (kept, nested) = match parent {
                Parent::User => {
                    let nested = if NESTED.contains(&&text[key.0..key.1]) {
                        Parent::Kept(self.kept.len())
                    } else {
                        Parent::Other
                    };
                    (Some(None), nested)
                }
                Parent::Kept(index) => (Some(Some(index)), Parent::Other),
                Parent::Other => (None, Parent::Other),
            };
            let index = self.kept.len();
            if let Some(parent) = kept {
                self.kept.push(Kept {
                    parent,
                    key,
                    value: (start, start),
                });
            }
            self.value(depth + 1, nested)?;
            if kept.is_some() {
                self.kept[index].value.1 = self.at;
            }
            more = self.more(b'}')?;
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Step<()> {
        self.at += 1;
        self.out.push(b'[');
        let mut more = !self.closes(b']')?;
        while more {
            self.value(depth + 1, Parent::Other)?;
            more = self.more(b']')?;
        }
        Ok(())
    }

    /// Whether an object or array just opened ends at once (`close`, copied).
    fn closes(&mut self, close: u8) -> Step<bool> {
        let closes = self.next()? == close;
        if closes {
            self.at += 1;
            self.out.push(close);
        }
        Ok(closes)
    }

    /// After a member or an element: whether another follows (a comma), or the object
    /// or array ends (`close`); either copied.
    fn more(&mut self, close: u8) -> Step<bool> {
        let next = self.next()?;
        if next != b',' && next != close {
            return Err(Fallback);
        }
        self.at += 1;
        self.out.push(next);
        Ok(next == b',')
    }

    /// A string (no escapes: the caller checked), copied; where its text lies.
    fn string(&mut self) -> Step<(usize, usize)> {
        let start = self.at + 1;
        let length = self.text[start..]
            .iter()
            .position(|&c| c == b'"')
            .ok_or(Fallback)?;
        let end = start + length;
        self.out.extend_from_slice(&self.text[self.at..=end]);
        self.at = end + 1;
        Ok((start, end))
    }

    fn literal(&mut self) -> Step<()> {
        let rest = &self.text[self.at..];
        let word: &[u8] = [&b"true"[..], b"false", b"null"]
            .into_iter()
            .find(|word| rest.starts_with(word))
            .ok_or(Fallback)?;
        self.out.extend_from_slice(word);
        self.at += word.len();
        Ok(())
    }

    /// A plain integer, as orjson writes the int it reads (not `-0`, no fraction or
    /// exponent: those are floats, which orjson writes its own way).
    fn number(&mut self) -> Step<()> {
        let rest = &self.text[self.at..];
        let length = rest
            .iter()
            .position(|c| !matches!(c, b'-' | b'0'..=b'9' | b'.' | b'e' | b'E' | b'+'))
            .unwrap_or(rest.len());
        let number = &rest[..length];
        let digits = number.strip_prefix(b"-").unwrap_or(number);
        let plain = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && number != b"-0";
        if !plain {
            return Err(Fallback);
        }
        self.out.extend_from_slice(number);
        self.at += length;
        Ok(())
    }

    /// The JSON of the kept member `name` of `parent` (None: the user's own).
    fn member(&self, parent: Option<usize>, name: &str) -> Option<&'a [u8]> {
        let text = self.text;
        self.kept
            .iter()
            .find(|kept| kept.parent == parent && &text[kept.key.0..kept.key.1] == name.as_bytes())
            .map(|kept| &text[kept.value.0..kept.value.1])
    }

    /// The index in `kept` of the user's member `name`, if it is an object.
    fn object_member(&self, name: &str) -> Option<usize> {
        let text = self.text;
        self.kept.iter().position(|kept| {
            kept.parent.is_none()
                && &text[kept.key.0..kept.key.1] == name.as_bytes()
                && text[kept.value.0] == b'{'
        })
    }

    /// The user just copied, checked as `is_bulk_user` does (`to`, `profile` and
    /// `preferences` objects or null, `recipient` a string or null); its identity
    /// (`schemas.commands.identity_of`).
    fn identity(&self) -> Step<Option<String>> {
        for name in ["to", "profile", "preferences"] {
            if self
                .member(None, name)
                .is_some_and(|json| json[0] != b'{' && json != b"null")
            {
                return Err(Fallback);
            }
        }
        let recipient = self.member(None, "recipient");
        if recipient.is_some_and(|json| json[0] != b'"' && json != b"null") {
            return Err(Fallback);
        }
        let (to, profile) = (self.object_member("to"), self.object_member("profile"));
        let of =
            |object: Option<usize>, name: &str| object.and_then(|o| self.member(Some(o), name));
        let candidates = [
            ("user:", of(to, "user_id")),
            ("user:", recipient),
            ("email:", of(profile, "email")),
            ("email:", of(to, "email")),
            ("phone:", of(profile, "phone_number")),
            ("phone:", of(to, "phone_number")),
        ];
        for (kind, json) in candidates {
            // A non-empty string: its text lies between the quotes (no escapes).
            if let Some(json) = json.filter(|json| json.len() > 2 && json[0] == b'"') {
                let text = std::str::from_utf8(&json[1..json.len() - 1]).map_err(|_| Fallback)?;
                return Ok(Some(format!("{kind}{text}")));
            }
        }
        Ok(None)
    }
}

/// The keys of one object met so far: compared one by one while few, hashed beyond.
#[derive(Default)]
struct Keys<'a> {
    few: Vec<&'a [u8]>,
    many: HashSet<&'a [u8]>,
}

const FEW_KEYS: usize = 16;

impl<'a> Keys<'a> {
    /// False when the key was met before.
    fn insert(&mut self, key: &'a [u8]) -> bool {
        if self.few.len() < FEW_KEYS {
            if self.few.contains(&key) {
                return false;
            }
            self.few.push(key);
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().copied());
        }
        self.many.insert(key)
    }
}

type Answer<'py> = (Bound<'py, PyBytes>, Bound<'py, PyList>, Bound<'py, PyList>);

/// An ingest command's envelope (its JSON without `users`), each user's JSON as
/// orjson writes it, and each user's identity (`schemas.commands.identity_of`, None
/// for a user without one); None: the Python way reads the command.
#[pyfunction]
fn read_ingest<'py>(py: Python<'py>, value: &[u8]) -> PyResult<Option<Answer<'py>>> {
    let Ok(read) = py.detach(|| read(value)) else {
        return Ok(None);
    };
    let sent = PyList::empty(py);
    let mut start = 0;
    for &end in &read.ends {
        sent.append(PyBytes::new(py, &read.users[start..end]))?;
        start = end;
    }
    let identities = PyList::empty(py);
    for identity in &read.identities {
        match identity {
            Some(text) => identities.append(PyString::new(py, text))?,
            None => identities.append(py.None())?,
        }
    }
    Ok(Some((PyBytes::new(py, &read.head), sent, identities)))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(read_ingest, module)?)
}
