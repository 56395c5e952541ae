//! The fan-out's page expansion, natively: a page of users (the JSON of
//! `schemas.fanout.encode_page_spliced`) in, each user's send event or routing
//! failure out, byte for byte what the Python path gives.
//!
//! The Python path (`streams.fanout.expand.expand_pure`) decodes the page with
//! orjson, checks each user with `streams.sends.unroutable_reason` and builds
//! its send with `streams.sends.PageSends.build`, which dumps with orjson. The
//! page was itself written by orjson, so a value the Python path dumps
//! unchanged is, byte for byte, its raw slice of the page: those are spliced
//! (serde_json's `RawValue`, borrowed). Where the Python path builds a new
//! object (the merged `data`, the `to` without its `data` or with a legacy
//! `recipient`, `extra`), it is built here from raw members in the order
//! Python's dict operations give. A value spliced without being read is taken
//! to be in orjson's form (no whitespace, no repeated keys, orjson's escapes
//! and numbers), as `encode_page_spliced` writes every page.
//!
//! Whatever this code cannot answer exactly is handed back: the whole page
//! (`None`, when its head is not what `decode_page` reads, or it is not JSON
//! serde_json takes), or one user (its index in `fallback`: a user that is not
//! an object, repeats a key, has an email or phone number with non-ASCII
//! characters to check, an identity that is not a string, a position that is
//! not a plain integer, or negative in a job of `position` message ids, ...).
//! The Python side expands those the Python way.
//! tests/streams/test_expand_native.py keeps the two equal.
//!
//! Beside it, `digest_filter`: the ingest's Bloom filter of a job's message
//! digests (`DigestFilter`), which spares the dedupe check a RocksDB read for
//! a user the job has not seen; `ingest_keys`, the identities and digests of an
//! ingest's users; `stored_batch`, the batch of users an ingest stores;
//! `delivery_fold`, the fold of delivery reports; `message_ids`, the
//! positions reports' message ids carry; `feed_reader`, a feed's Kafka
//! reader handing records over by column; and `event_producer`, the producer
//! the fold queues its message events on.

mod delivery_fold;
mod digest_filter;
mod event_producer;
mod feed_reader;
mod ingest_keys;
mod ingest_read;
mod message_ids;
mod report_batch;
mod stored_batch;

/// mimalloc for every allocation of this module's Rust code (Python's own objects
/// keep Python's allocator): the delivery fold allocates a few small values a
/// report, and folds a feed's batch in three quarters of the time it took with
/// glibc's malloc (`native/bench_fold.py`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::borrow::Cow;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

type Raw<'a> = &'a RawValue;

/// The digest of a `position` message id: 7 bytes, 14 hex (`streams.ids.DIGEST_HEX`).
const POSITION_DIGEST_BYTES: usize = 7;
/// The digest of an identity in its job (an `identity` message id's last part, the
/// dedupe index's key): 12 bytes, 24 hex (`streams.ids.message_digest`).
const IDENTITY_DIGEST_BYTES: usize = 12;

/// The reason given for a user without an address, when the message names no channel.
const NO_ADDRESS: &str = "No routable address: no user_id, valid email or valid phone_number";

/// Why a user goes to the Python path.
struct Fallback;

type Step<T> = Result<T, Fallback>;

// -- reading JSON ----------------------------------------------------------------

/// An object's members in their order; keys as raw JSON strings (quotes included).
struct Members<'a> {
    list: Vec<(Raw<'a>, Raw<'a>)>,
    /// Whether a key has an escape (then keys are compared decoded).
    escaped: bool,
}

fn read_members<'de: 'a, 'a, A: MapAccess<'de>>(mut map: A) -> Result<Members<'a>, A::Error> {
    let mut list = Vec::with_capacity(map.size_hint().unwrap_or(8));
    let mut escaped = false;
    while let Some(key) = map.next_key::<Raw<'a>>()? {
        escaped |= key.get().contains('\\');
        list.push((key, map.next_value::<Raw<'a>>()?));
    }
    Ok(Members { list, escaped })
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_members(map)
            }
        }
        deserializer.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

/// Any JSON value, read as an object's members if it is one (else only skipped).
enum Node<'a> {
    Object(Members<'a>),
    Other,
}

/// An entry of the page's users, `[position, identity, user, metadata?, ...]`, or not.
enum Entry<'a> {
    Parts {
        position: Raw<'a>,
        identity: Raw<'a>,
        user: Node<'a>,
        metadata: Option<Raw<'a>>,
    },
    Other,
}

/// The visitor of a value that is read one way and skipped any other.
struct Skipping<T>(fn() -> T);

macro_rules! skip_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok((self.0)())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok((self.0)())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok((self.0)())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok((self.0)())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok((self.0)())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok((self.0)())
        }
    };
}

impl<'de: 'a, 'a> Visitor<'de> for Skipping<Node<'a>> {
    type Value = Node<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    skip_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Node::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(Node::Object(read_members(map)?))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Node<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Skipping(|| Node::Other))
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Skipping<Entry<'a>> {
    type Value = Entry<'a>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    skip_scalars!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let position = seq.next_element::<Raw<'a>>()?;
        let identity = match position {
            Some(_) => seq.next_element::<Raw<'a>>()?,
            None => None,
        };
        let user = match identity {
            Some(_) => seq.next_element::<Node<'a>>()?,
            None => None,
        };
        let metadata = match user {
            Some(_) => seq.next_element::<Raw<'a>>()?,
            None => None,
        };
        if metadata.is_some() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        }
        Ok(match (position, identity, user) {
            (Some(position), Some(identity), Some(user)) => Entry::Parts {
                position,
                identity,
                user,
                metadata,
            },
            _ => Entry::Other,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Entry::Other)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Entry<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Skipping(|| Entry::Other))
    }
}

impl<'a> Members<'a> {
    fn empty() -> Self {
        Members {
            list: Vec::new(),
            escaped: false,
        }
    }

    /// The members of an object's raw JSON.
    fn of(raw: Raw<'a>) -> Step<Self> {
        let members: Members<'a> = serde_json::from_str(raw.get()).map_err(|_| Fallback)?;
        members.check_unique()?;
        Ok(members)
    }

    /// A repeated key goes to Python (whose dict keeps the last value at the first
    /// one's place).
    fn check_unique(&self) -> Step<()> {
        let keys = &self.list;
        let repeated =
            (1..keys.len()).any(|j| (0..j).any(|i| same_key(keys[i].0, keys[j].0, self.escaped)));
        if repeated {
            Err(Fallback)
        } else {
            Ok(())
        }
    }

    fn key_is(&self, key: Raw<'_>, name: &str) -> bool {
        key_is(key, name, self.escaped)
    }

    /// `dict.get(name)`: None when the key is missing (a JSON null is Some("null")).
    fn get(&self, name: &str) -> Option<Raw<'a>> {
        self.list
            .iter()
            .find(|(key, _)| self.key_is(key, name))
            .map(|(_, value)| *value)
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// `dict.update(other)`: a key already there keeps its place and takes the new value.
    fn update(&mut self, other: &Members<'a>) {
        let escaped = self.escaped || other.escaped;
        for &(key, value) in &other.list {
            match self
                .list
                .iter_mut()
                .find(|(mine, _)| same_key(mine, key, escaped))
            {
                Some(slot) => slot.1 = value,
                None => self.list.push((key, value)),
            }
        }
        self.escaped = escaped;
    }
}

/// The text of a JSON string's raw form, decoded.
fn decoded(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// Whether a raw key is the string `name` (plain ASCII, no escapes); `escaped`: whether
/// the key may have escapes.
fn key_is(key: &RawValue, name: &str, escaped: bool) -> bool {
    let raw = key.get();
    if raw.len() == name.len() + 2 && raw[1..raw.len() - 1] == *name {
        return true;
    }
    escaped && raw.contains('\\') && decoded(raw).as_deref() == Some(name)
}

fn same_key(a: &RawValue, b: &RawValue, escaped: bool) -> bool {
    let (a, b) = (a.get(), b.get());
    a == b || (escaped && (a.contains('\\') || b.contains('\\')) && decoded(a) == decoded(b))
}

/// JSON read from bytes, validated as UTF-8 once and whole: serde_json's reader of
/// bytes checks each string on its own, at several times the cost (a delivery
/// report's eight). Bytes that are not UTF-8 are no JSON either way.
pub(crate) fn from_json<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(raw).ok()?).ok()
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// `isinstance(value, str) and value`
fn is_nonempty_str(raw: Option<Raw<'_>>) -> bool {
    raw.is_some_and(|raw| raw.get().starts_with('"') && raw.get() != "\"\"")
}

/// Python's truth of the decoded value.
fn is_truthy(raw: &RawValue) -> bool {
    let text = raw.get();
    match text.as_bytes()[0] {
        b'n' | b'f' => false,
        b't' => true,
        b'"' => text != "\"\"",
        b'[' | b'{' => !text[1..text.len() - 1].trim().is_empty(),
        _ => text.parse::<f64>() != Ok(0.0),
    }
}

/// A position as Python's `str(int)` writes it, and its value.
fn plain_int(raw: &RawValue) -> Option<i64> {
    let text = raw.get();
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|c| c.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if plain {
        text.parse().ok()
    } else {
        None
    }
}

// -- routing (streams.sends.unroutable_reason) -----------------------------------

/// Python's `\s` among ASCII characters (str.isspace: \t \n \v \f \r, \x1c-\x1f, space).
fn is_py_space(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ')
}

/// `_EMAIL.match(email)` for an ASCII email: `^[^@\s]+@[^@\s]+\.[^@\s]+$`, where `$`
/// also matches before a newline that ends the string.
fn is_email(email: &str) -> bool {
    let text = email.strip_suffix('\n').unwrap_or(email).as_bytes();
    if text.iter().any(|&c| is_py_space(c)) {
        return false;
    }
    let mut ats = text
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c == b'@')
        .map(|(at, _)| at);
    let (Some(at), None) = (ats.next(), ats.next()) else {
        return false;
    };
    let domain = &text[at + 1..];
    at > 0 && domain.len() >= 3 && domain[1..domain.len() - 1].contains(&b'.')
}

/// `len(_NOT_DIGITS.sub("", phone)) >= 7` for an ASCII phone number.
fn is_phone(phone: &str) -> bool {
    phone.bytes().filter(u8::is_ascii_digit).count() >= 7
}

/// `_first_str(...)`'s value, decoded, if it is ASCII (Python's `\s` and `\d` take
/// other characters too: those go to Python). Ok(None): no such value.
fn first_ascii_str<'a>(values: [Option<Raw<'a>>; 2]) -> Step<Option<Cow<'a, str>>> {
    let Some(raw) = values
        .into_iter()
        .find(|value| is_nonempty_str(*value))
        .flatten()
    else {
        return Ok(None);
    };
    match decoded(raw.get()) {
        Some(text) if text.is_ascii() => Ok(Some(text)),
        _ => Err(Fallback),
    }
}

/// The channels of `routing.channels`, nested or not (`streams.sends.routing_channels`).
fn routing_channels(message: &Members<'_>) -> Option<Vec<String>> {
    fn walk(node: &serde_json::Value, found: &mut Vec<String>) {
        match node {
            serde_json::Value::String(channel) => found.push(channel.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            serde_json::Value::Object(map) => {
                if let Some(channels) = map.get("channels") {
                    walk(channels, found)
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    if let Some(routing) = message.get("routing").filter(|raw| is_object(raw)) {
        let routing = Members::of(routing).ok()?;
        if let Some(channels) = routing.get("channels") {
            walk(&serde_json::from_str(channels.get()).ok()?, &mut found);
        }
    }
    Some(found)
}

// -- the page --------------------------------------------------------------------

#[derive(Deserialize)]
struct PageWire<'a> {
    #[serde(rename = "jobId", borrow)]
    job_id: Raw<'a>,
    #[serde(borrow)]
    tenant: Raw<'a>,
    #[serde(borrow)]
    page: Raw<'a>,
    #[serde(rename = "pageSize")]
    _page_size: IgnoredAny,
    #[serde(rename = "createdAt", borrow)]
    created_at: Raw<'a>,
    #[serde(borrow)]
    message: Raw<'a>,
    #[serde(borrow)]
    data: Raw<'a>,
    /// `"position"` or `"identity"` (`streams.ids`); absent on a page of an earlier release
    #[serde(rename = "messageIds", default, borrow)]
    message_ids: Option<Raw<'a>>,
    #[serde(borrow)]
    users: Vec<Entry<'a>>,
}

/// `streams.ids.message_id_prefix(created_at)`: `1-<int(created_at) & 0xFFFFFFFF:08x>-`.
fn message_id_prefix(created_at: &RawValue) -> Option<String> {
    let text = created_at.get();
    let whole: i128 = if text.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
        text.parse().ok()?
    } else {
        let number: f64 = text.parse().ok()?;
        if !number.is_finite() || number.abs() >= 1e38 {
            return None;
        }
        number.trunc() as i128
    };
    Some(format!("1-{:08x}-", whole & 0xFFFF_FFFF))
}

enum Outcome {
    /// A send: its message id and its JSON, as byte ranges of the output buffer.
    Send(std::ops::Range<usize>, std::ops::Range<usize>),
    Failed(i64),
    Fallback,
}

struct Expanded {
    job_id: String,
    tenant: String,
    page: i64,
    reason: String,
    buffer: Vec<u8>,
    outcomes: Vec<Outcome>,
}

/// What every send of the page shares (`PageSends.__init__`).
struct Page<'a> {
    id_prefix: String,
    /// The job's message ids carry their position (`streams.ids.positional_message_id`).
    positional: bool,
    /// blake2b with `<job id>\0` absorbed: of 7 bytes (`position` ids) or 12
    hash: blake2b_simd::State,
    /// `","jobId":<job>,"tenant":<tenant>,"position":`
    after_id: Vec<u8>,
    /// `,"message":<the message>,"to":`
    after_position: Vec<u8>,
    global: Members<'a>,
    wants_email: bool,
    wants_sms: bool,
}

const USER_FIELDS: [&str; 5] = ["to", "data", "profile", "preferences", "recipient"];

/// The fields of a user a send carries under their own names (`USER_FIELDS`), and
/// whether it has others.
#[derive(Default)]
struct UserFields<'a> {
    to: Option<Raw<'a>>,
    data: Option<Raw<'a>>,
    profile: Option<Raw<'a>>,
    preferences: Option<Raw<'a>>,
    recipient: Option<Raw<'a>>,
    extra: bool,
}

impl<'a> UserFields<'a> {
    fn of(user: &Members<'a>) -> Self {
        let mut fields = UserFields::default();
        for &(key, value) in &user.list {
            let raw = key.get();
            let name = if user.escaped && raw.contains('\\') {
                decoded(raw).unwrap_or_default()
            } else {
                Cow::Borrowed(&raw[1..raw.len() - 1])
            };
            let slot = match &*name {
                "to" => &mut fields.to,
                "data" => &mut fields.data,
                "profile" => &mut fields.profile,
                "preferences" => &mut fields.preferences,
                "recipient" => &mut fields.recipient,
                _ => {
                    fields.extra = true;
                    continue;
                }
            };
            *slot = Some(value);
        }
        fields
    }
}

fn expand(raw: &[u8]) -> Option<Expanded> {
    let wire: PageWire<'_> = from_json(raw)?;
    let job_id = decoded(wire.job_id.get())?.into_owned();
    let tenant = decoded(wire.tenant.get())?.into_owned();
    let number = plain_int(wire.page)?;
    if !is_object(wire.message) {
        return None;
    }
    let message = Members::of(wire.message).ok()?;
    let channels = routing_channels(&message)?;
    let global = if is_null(wire.data) {
        Members::empty()
    } else if is_object(wire.data) {
        Members::of(wire.data).ok()?
    } else {
        return None;
    };
    let positional = match wire.message_ids {
        None => false,
        Some(raw) if raw.get() == r#""position""# => true,
        Some(raw) if raw.get() == r#""identity""# => false,
        Some(_) => return None,
    };
    let digest_bytes = if positional {
        POSITION_DIGEST_BYTES
    } else {
        IDENTITY_DIGEST_BYTES
    };
    let mut hash = blake2b_simd::Params::new()
        .hash_length(digest_bytes)
        .to_state();
    hash.update(job_id.as_bytes()).update(b"\0");
    let mut after_id = br#"","jobId":"#.to_vec();
    after_id.extend_from_slice(wire.job_id.get().as_bytes());
    after_id.extend_from_slice(br#","tenant":"#);
    after_id.extend_from_slice(wire.tenant.get().as_bytes());
    after_id.extend_from_slice(br#","position":"#);
    let mut after_position = br#","message":"#.to_vec();
    after_position.extend_from_slice(wire.message.get().as_bytes());
    after_position.extend_from_slice(br#","to":"#);
    let page = Page {
        id_prefix: message_id_prefix(wire.created_at)?,
        positional,
        hash,
        after_id,
        after_position,
        global,
        wants_email: channels.is_empty() || channels.iter().any(|c| c == "email"),
        wants_sms: channels.is_empty() || channels.iter().any(|c| c == "sms"),
    };
    let reason = if channels.is_empty() {
        NO_ADDRESS.to_owned()
    } else {
        format!("No routable address for channel(s) {}", channels.join(", "))
    };
    // Room for every send, so that the buffer is not moved while it fills: each holds
    // its user's JSON or less, the page's parts, its id twice and the global data.
    let per_send = page.after_id.len() + page.after_position.len() + wire.data.get().len() + 160;
    let mut buffer = Vec::with_capacity(raw.len() + wire.users.len() * per_send);
    let outcomes = wire
        .users
        .iter()
        .map(|entry| {
            let mark = buffer.len();
            page.user(entry, &mut buffer).unwrap_or_else(|Fallback| {
                buffer.truncate(mark);
                Outcome::Fallback
            })
        })
        .collect();
    Some(Expanded {
        job_id,
        tenant,
        page: number,
        reason,
        buffer,
        outcomes,
    })
}

impl<'a> Page<'a> {
    /// One entry `[position, identity, user, metadata?]` of the page.
    fn user(&self, entry: &Entry<'a>, out: &mut Vec<u8>) -> Step<Outcome> {
        let Entry::Parts {
            position,
            identity,
            user: Node::Object(user),
            metadata,
        } = entry
        else {
            return Err(Fallback);
        };
        let (position, identity) = (*position, *identity);
        let metadata = metadata.filter(|raw| !is_null(raw));
        user.check_unique()?;
        let fields = UserFields::of(user);
        let to_raw = fields.to.filter(|raw| is_object(raw));
        let to = to_raw.map(Members::of).transpose()?;
        let profile = fields
            .profile
            .filter(|raw| is_object(raw))
            .map(Members::of)
            .transpose()?;
        let position_value = plain_int(position).ok_or(Fallback)?;
        if !self.routable(&fields, to.as_ref(), profile.as_ref())? {
            return Ok(Outcome::Failed(position_value));
        }

        // messageId: the page's prefix, then the hash of "<job>\0<position>" and the
        // position in 10 hex, or the hash of "<job>\0<identity>"
        let mut state = self.hash.clone();
        let position_hex = if self.positional {
            if position_value < 0 {
                return Err(Fallback);
            }
            state.update(position_value.to_string().as_bytes());
            Some(format!("{position_value:010x}"))
        } else {
            let identity = decoded(identity.get()).ok_or(Fallback)?;
            state.update(identity.as_bytes());
            None
        };
        let key_start = out.len();
        out.extend_from_slice(self.id_prefix.as_bytes());
        for byte in state.finalize().as_bytes() {
            out.extend_from_slice(&HEX[usize::from(*byte)]);
        }
        if let Some(hex) = position_hex {
            out.extend_from_slice(hex.as_bytes());
        }
        let key = key_start..out.len();

        let value_start = out.len();
        out.extend_from_slice(br#"{"messageId":""#);
        out.extend_from_within(key.clone());
        out.extend_from_slice(&self.after_id);
        out.extend_from_slice(position.get().as_bytes());
        out.extend_from_slice(&self.after_position);
        // The common user ({"to": {...}, "data": {...}}) is dumped as it is; any
        // other shape takes the general rules (PageSends.build).
        let plain_to = to.as_ref().is_some_and(|to| !to.has("data")) && fields.recipient.is_none();
        match (plain_to, to_raw) {
            (true, Some(to_raw)) => out.extend_from_slice(to_raw.get().as_bytes()),
            _ => send_to(fields.recipient, to.as_ref(), out),
        }
        out.extend_from_slice(br#","data":"#);
        let data = fields.data;
        match data {
            Some(data) if plain_to && self.global.list.is_empty() && is_object(data) => {
                out.extend_from_slice(data.get().as_bytes())
            }
            _ => {
                let to_data = to.as_ref().and_then(|to| to.get("data"));
                self.merged_data([data, to_data], out)?
            }
        }
        // _user_parts: profile, preferences, recipient as sent, metadata, extra
        let parts = [
            ("profile", fields.profile),
            ("preferences", fields.preferences),
            ("recipient", fields.recipient),
        ];
        for (name, value) in parts {
            if let Some(value) = value.filter(|raw| !is_null(raw)) {
                field(out, name, value);
            }
        }
        if let Some(metadata) = metadata {
            field(out, "metadata", metadata);
        }
        if fields.extra {
            let extra = user
                .list
                .iter()
                .copied()
                .filter(|&(key, _)| !USER_FIELDS.iter().any(|name| user.key_is(key, name)));
            out.extend_from_slice(br#","extra":"#);
            object(out, extra);
        }
        out.push(b'}');
        Ok(Outcome::Send(key, value_start..out.len()))
    }

    /// `unroutable_reason(...) is None`
    fn routable(
        &self,
        user: &UserFields<'a>,
        to: Option<&Members<'a>>,
        profile: Option<&Members<'a>>,
    ) -> Step<bool> {
        if is_nonempty_str(to.and_then(|to| to.get("user_id"))) || is_nonempty_str(user.recipient) {
            return Ok(true);
        }
        let field = |name: &str| {
            [
                profile.and_then(|p| p.get(name)),
                to.and_then(|to| to.get(name)),
            ]
        };
        if self.wants_email {
            if let Some(email) = first_ascii_str(field("email"))? {
                if is_email(&email) {
                    return Ok(true);
                }
            }
        }
        if self.wants_sms {
            if let Some(phone) = first_ascii_str(field("phone_number"))? {
                if is_phone(&phone) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `merged_data(global_data, user)`, given the user's `data` and `to.data`.
    fn merged_data(&self, layers: [Option<Raw<'a>>; 2], out: &mut Vec<u8>) -> Step<()> {
        enum Merged<'m> {
            Object(Members<'m>),
            Value(Raw<'m>),
        }
        let global = Members {
            list: self.global.list.clone(),
            escaped: self.global.escaped,
        };
        let mut merged = Merged::Object(global);
        for layer in layers.into_iter().flatten() {
            if is_null(layer) {
                continue;
            }
            if is_object(layer) {
                let layer = Members::of(layer)?;
                match &mut merged {
                    Merged::Object(members) => members.update(&layer),
                    Merged::Value(_) => merged = Merged::Object(layer),
                }
            } else {
                merged = Merged::Value(layer);
            }
        }
        match merged {
            Merged::Object(members) => object(out, members.list.iter().copied()),
            Merged::Value(value) => out.extend_from_slice(value.get().as_bytes()),
        }
        Ok(())
    }
}

/// `send_to(user)`: the user's `to` without its `data`, with a legacy `recipient` as
/// `user_id` when the `to` has none (a falsy one is replaced where it stands).
fn send_to(recipient: Option<Raw<'_>>, to: Option<&Members<'_>>, out: &mut Vec<u8>) {
    let user_id = to.and_then(|to| to.get("user_id"));
    let recipient =
        recipient.filter(|raw| is_nonempty_str(Some(raw)) && !user_id.is_some_and(is_truthy));
    out.push(b'{');
    let mut first = true;
    let mut replaced = false;
    for &(key, mut value) in to.map_or(&[][..], |to| &to.list[..]) {
        let to = to.expect("members of a to");
        if to.key_is(key, "data") {
            continue;
        }
        if let Some(recipient) = recipient.filter(|_| to.key_is(key, "user_id")) {
            value = recipient;
            replaced = true;
        }
        member(out, &mut first, key.get(), value);
    }
    if let Some(recipient) = recipient.filter(|_| !replaced) {
        member(out, &mut first, "\"user_id\"", recipient);
    }
    out.push(b'}');
}

/// `key:value`, after a comma unless it is the first.
fn member(out: &mut Vec<u8>, first: &mut bool, key: &str, value: Raw<'_>) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.extend_from_slice(key.as_bytes());
    out.push(b':');
    out.extend_from_slice(value.get().as_bytes());
}

/// `{"k":v,...}` of raw members.
fn object<'m>(out: &mut Vec<u8>, members: impl Iterator<Item = (Raw<'m>, Raw<'m>)>) {
    out.push(b'{');
    let mut first = true;
    for (key, value) in members {
        member(out, &mut first, key.get(), value);
    }
    out.push(b'}');
}

/// `,"name":value`
fn field(out: &mut Vec<u8>, name: &str, value: Raw<'_>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value.get().as_bytes());
}

const HEX: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

// -- Python ----------------------------------------------------------------------

/// (job id, tenant, page number, sends, failures, fallback) of a page, or None when
/// the page is for the Python path whole.
type PageResult<'py> = (
    String,
    String,
    i64,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
);

/// Expand a fan-out page: `sends` are (messageId, send event JSON) of its routable
/// users, `failures` (position, reason) of the others, in page order; `fallback`
/// holds (index in the page's users, sends before it, failures before it) of each
/// user left to the Python path. None: the whole page is left to it.
#[pyfunction]
fn expand_page<'py>(py: Python<'py>, page: &[u8]) -> PyResult<Option<PageResult<'py>>> {
    let Some(expanded) = py.detach(|| expand(page)) else {
        return Ok(None);
    };
    let reason = PyString::new(py, &expanded.reason);
    let sends = PyList::empty(py);
    let failures = PyList::empty(py);
    let fallback = PyList::empty(py);
    let buffer = &expanded.buffer;
    for (index, outcome) in expanded.outcomes.iter().enumerate() {
        match outcome {
            Outcome::Send(key, value) => {
                let key = PyBytes::new(py, &buffer[key.clone()]);
                let value = PyBytes::new(py, &buffer[value.clone()]);
                sends.append(PyTuple::new(py, [key, value])?)?;
            }
            Outcome::Failed(position) => {
                failures.append((*position, reason.clone()))?;
            }
            Outcome::Fallback => {
                fallback.append((index, sends.len(), failures.len()))?;
            }
        }
    }
    Ok(Some((
        expanded.job_id,
        expanded.tenant,
        expanded.page,
        sends,
        failures,
        fallback,
    )))
}

#[pymodule]
fn bulkstream_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(expand_page, module)?)?;
    module.add_class::<digest_filter::DigestFilter>()?;
    delivery_fold::register(module)?;
    event_producer::register(module)?;
    feed_reader::register(module)?;
    ingest_keys::register(module)?;
    ingest_read::register(module)?;
    message_ids::register(module)?;
    report_batch::register(module)?;
    stored_batch::register(module)?;
    Ok(())
}
