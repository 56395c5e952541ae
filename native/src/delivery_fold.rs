//! One job's batch of delivery reports folded from and to the bytes kept, natively:
//! byte for byte what `streams.aggregate.fold_codec.fold_encoded` gives.
//!
//! In: the job's stored summary (`{"counts": {...}, "upto": N}`), the batch
//! (`Reported` tuples: offset, position, `Report`), the stored blocks of message
//! states of every reported position (`{"<position>": [reached, by, before]}`,
//! each `reached` an object of state -> `[at, reason, provider]`, the trailing
//! nulls left out, and `before` the count of `reached`'s first states it holds,
//! or an object of its own; the full form of earlier releases is read too). Out: the new
//! summary, the blocks changed (whole), a message event per state reached, and
//! the views' entry of every reported message that has a state.
//!
//! The rules are those of `streams.aggregate.outcomes` (its docstring says why
//! they are exact across a crash): a message keeps the first report of each
//! state (earliest `at`, then the smaller reason and provider), its status is
//! the highest state reached, a state written by a batch beyond the summary's
//! `upto` reads as what it was before. Objects keep the order Python's dicts
//! give them (a key replaced stays where it was, a new one goes last), so the
//! JSON written is orjson's of the same dicts.
//!
//! A stored record this code does not read exactly (not the JSON `fold_encoded`
//! writes) leaves the whole batch to Python: `fold_reports` answers None.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::from_json;

/// A map keyed by integers (positions, block numbers) of one batch, hashed with one
/// multiply (FxHash's): SipHash, the default, took about 6 % of the fold's time. The
/// keys are positions checked against the job's size, nothing a sender picks freely.
pub(crate) type IntMap<V> = HashMap<i64, V, BuildHasherDefault<IntHasher>>;

#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
}

/// The delivery states, lowest first (`schemas.delivery.DELIVERY_ORDER`): a state's
/// rank is its index.
pub(crate) const STATES: [&str; 6] = [
    "SENT",
    "FAILED",
    "UNDELIVERABLE",
    "DELIVERED",
    "OPENED",
    "CLICKED",
];

fn rank_of(name: &str) -> Option<u8> {
    STATES.iter().position(|s| *s == name).map(|i| i as u8)
}

/// The first report of a state: when, why, by which provider (kept as `[at]`,
/// `[at, reason]` or `[at, reason, provider]`: no trailing null).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct First(
    pub(crate) i64,
    #[serde(default)] pub(crate) Option<String>,
    #[serde(default)] pub(crate) Option<String>,
);

impl First {
    fn order(&self) -> (i64, &str, &str) {
        (
            self.0,
            self.1.as_deref().unwrap_or(""),
            self.2.as_deref().unwrap_or(""),
        )
    }
}

/// A message's states reached, in the order of the Python dict (rank, first report).
#[derive(Clone, Default)]
struct Reached(Vec<(u8, First)>);

impl Reached {
    fn get(&self, rank: u8) -> Option<&First> {
        self.0.iter().find(|(r, _)| *r == rank).map(|(_, f)| f)
    }

    /// The highest state reached.
    fn status(&self) -> Option<u8> {
        self.0.iter().map(|(r, _)| *r).max()
    }

    /// Fold this report in; false when it changes nothing.
    fn fold(&mut self, rank: u8, first: &First) -> bool {
        match self.0.iter_mut().find(|(r, _)| *r == rank) {
            Some((_, known)) => {
                if known.order() <= first.order() {
                    return false;
                }
                *known = first.clone();
            }
            None => self.0.push((rank, first.clone())),
        }
        true
    }

    fn same_as(&self, other: &Reached) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|(r, f)| other.get(*r) == Some(f))
    }
}

impl<'de> Deserialize<'de> for Reached {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ordered::<StateName, First>::deserialize(deserializer).map(|o| Reached(o.0))
    }
}

/// A message's state as kept: `by` the batch that wrote it, `before` that batch.
#[derive(Clone)]
struct Stored(Reached, i64, Reached);

/// `before` as kept: how many of `reached`'s first states it is (most messages: a
/// batch adds states after those the message had), or states of its own.
enum Before {
    Prefix(usize),
    States(Reached),
}

impl<'de> Deserialize<'de> for Before {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BeforeVisitor;
        impl<'de> Visitor<'de> for BeforeVisitor {
            type Value = Before;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a count of states or an object of states")
            }
            fn visit_u64<E: de::Error>(self, count: u64) -> Result<Before, E> {
                usize::try_from(count)
                    .map(Before::Prefix)
                    .map_err(|_| E::custom("a count of states"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Before, A::Error> {
                OrderedVisitor::<StateName, First>(PhantomData)
                    .visit_map(map)
                    .map(|states| Before::States(Reached(states.0)))
            }
        }
        deserializer.deserialize_any(BeforeVisitor)
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire(Reached, i64, Before);
        let Wire(reached, by, before) = Wire::deserialize(deserializer)?;
        let before = match before {
            Before::States(states) => states,
            Before::Prefix(count) if count <= reached.0.len() => {
                Reached(reached.0[..count].to_vec())
            }
            Before::Prefix(_) => return Err(de::Error::custom("more states before than now")),
        };
        Ok(Stored(reached, by, before))
    }
}

/// How many of `reached`'s first states `before` is, when it is those (`Before::Prefix`).
fn prefix_of(before: &Reached, reached: &Reached) -> Option<usize> {
    let count = before.0.len();
    (count <= reached.0.len() && reached.0[..count] == before.0[..]).then_some(count)
}

impl Stored {
    fn as_of(&self, upto: i64) -> &Reached {
        if self.1 <= upto {
            &self.0
        } else {
            &self.2
        }
    }
}

/// A block of message states, in the order of the Python dict.
#[derive(Default)]
struct Block {
    states: Vec<(i64, Stored)>,
    index: IntMap<usize>,
}

impl Block {
    fn get(&self, position: i64) -> Option<&Stored> {
        self.index.get(&position).map(|&i| &self.states[i].1)
    }

    fn set(&mut self, position: i64, state: Stored) {
        match self.index.get(&position) {
            Some(&i) => self.states[i].1 = state,
            None => {
                self.index.insert(position, self.states.len());
                self.states.push((position, state));
            }
        }
    }
}

impl<'de> Deserialize<'de> for Block {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let states = Ordered::<PositionText, Stored>::deserialize(deserializer)?.0;
        let index = states
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (*p, i))
            .collect();
        Ok(Block { states, index })
    }
}

/// An integer written as Python's `str(int)` writes it (what `int()` reads back the same).
fn canonical_int(text: &str) -> Option<i64> {
    let value: i64 = text.parse().ok()?;
    let mut written = Vec::with_capacity(20);
    number(&mut written, value);
    (written == text.as_bytes()).then_some(value)
}

/// How an object's keys are read: a state's name (its rank), or a position.
trait KeyOf {
    type Key: PartialEq;
    const WHAT: &'static str;
    fn read(text: &str) -> Option<Self::Key>;
}

struct StateName;

impl KeyOf for StateName {
    type Key = u8;
    const WHAT: &'static str = "a delivery state";
    fn read(text: &str) -> Option<u8> {
        rank_of(text)
    }
}

struct PositionText;

impl KeyOf for PositionText {
    type Key = i64;
    const WHAT: &'static str = "a position";
    fn read(text: &str) -> Option<i64> {
        canonical_int(text)
    }
}

/// An object's key as its text: borrowed from the JSON unless it has escapes (serde's
/// own `Cow<str>` always copies).
struct KeyText<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// An object's members in their order (as the Python dict holds them), each key read
/// by `K`, none twice (orjson would keep the last; such a record is left to Python).
struct Ordered<K: KeyOf, V>(Vec<(K::Key, V)>, PhantomData<K>);

struct OrderedVisitor<K, V>(PhantomData<(K, V)>);

impl<'de, K: KeyOf, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<K, V> {
    type Value = Ordered<K, V>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an object keyed by {}", K::WHAT)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(K::Key, V)> = Vec::new();
        while let Some(KeyText(text)) = map.next_key::<KeyText<'de>>()? {
            let key = K::read(&text).ok_or_else(|| de::Error::custom(K::WHAT))?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom("a repeated key"));
            }
            members.push((key, map.next_value()?));
        }
        Ok(Ordered(members, PhantomData))
    }
}

impl<'de, K: KeyOf, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

/// The job's delivery counts (state -> messages, in the dict's order) and `upto`.
struct Summary {
    counts: Vec<(u8, i64)>,
    upto: i64,
}

impl Summary {
    fn add(&mut self, rank: u8, n: i64) {
        match self.counts.iter_mut().find(|(r, _)| *r == rank) {
            Some((_, count)) => *count += n,
            None => self.counts.push((rank, n)),
        }
    }
}

/// `Summary.to_bytes`'s JSON, each member once, no other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryWire {
    counts: Ordered<StateName, i64>,
    upto: i64,
}

impl<'de> Deserialize<'de> for Summary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SummaryWire::deserialize(deserializer)?;
        Ok(Summary {
            counts: wire.counts.0,
            upto: wire.upto,
        })
    }
}

/// A report of the batch (`Reported` with its `Report`), as the fold reads it.
pub(crate) struct Item {
    pub(crate) offset: i64,
    pub(crate) position: i64,
    pub(crate) message_id: String,
    pub(crate) rank: u8,
    pub(crate) first: First,
}

/// A message that reached a higher state: its report and the state it left.
struct Raised {
    item: usize,
    previous: Option<u8>,
}

/// What a batch writes (`fold_codec.Encoded`), before it becomes Python objects.
pub(crate) struct Folded {
    summary: Vec<u8>,
    blocks: Vec<(i64, Vec<u8>)>,
    pub(crate) events: Vec<Vec<u8>>,
    entries: Vec<(i64, usize, String)>, // (position, the item naming its message id, entry)
    reached: Vec<(u8, i64)>,
}

pub(crate) fn block_of(position: i64) -> i64 {
    position.div_euclid(BLOCK)
}

/// Positions per block (`streams.aggregate.outcomes.BLOCK`).
const BLOCK: i64 = 64;

pub(crate) fn fold(
    summary: Option<&[u8]>,
    items: &[Item],
    raw_blocks: &HashMap<i64, Option<&[u8]>>,
    job_id: &str,
    tenant: &str,
) -> Option<Folded> {
    let old = match summary {
        Some(raw) if is_object(raw) => from_json::<Summary>(raw)?,
        Some(_) => return None,
        None => Summary {
            counts: Vec::new(),
            upto: -1,
        },
    };
    let mut blocks: IntMap<Block> = IntMap::default();
    for (&number, raw) in raw_blocks {
        let block = match raw {
            Some(raw) => from_json::<Block>(raw)?,
            None => Block::default(),
        };
        blocks.insert(number, block);
    }
    let stored = |position: i64| -> Option<Option<&Stored>> {
        blocks
            .get(&block_of(position))
            .map(|block| block.get(position))
    };
    let upto = old.upto;
    let mut new = Summary {
        counts: old.counts.clone(),
        upto,
    };
    // position -> (its state before the batch, now); `order` their first appearance.
    let mut states: IntMap<(Reached, Reached)> = IntMap::default();
    let mut order: Vec<i64> = Vec::new();
    let mut raised: Vec<Raised> = Vec::new();
    let mut last = None;
    for (n, item) in items.iter().enumerate() {
        if item.offset <= upto {
            continue;
        }
        last = Some(item.offset);
        let (_, current) = match states.entry(item.position) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                let start = stored(item.position)?
                    .map(|s| s.as_of(upto).clone())
                    .unwrap_or_default();
                order.push(item.position);
                slot.insert((start.clone(), start))
            }
        };
        let before = current.status();
        if !current.fold(item.rank, &item.first) {
            continue;
        }
        let after = match before {
            Some(b) if b >= item.rank => b,
            _ => item.rank,
        };
        if before != Some(after) {
            if let Some(b) = before {
                new.add(b, -1);
            }
            new.add(after, 1);
            raised.push(Raised {
                item: n,
                previous: before,
            });
        }
    }
    let changes: Vec<(i64, Stored)> = match last {
        None => Vec::new(),
        Some(last) => {
            new.upto = last;
            order
                .iter()
                .filter_map(|p| {
                    let (before, now) = states
                        .remove(p)
                        .expect("a position in `order` has its states");
                    (!now.same_as(&before)).then_some((*p, Stored(now, last, before)))
                })
                .collect()
        }
    };
    // Entries: the changed messages (new state), then the others reported (as counted).
    let changed: IntMap<usize> = changes
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (*p, i))
        .collect();
    let last_item: IntMap<usize> = items
        .iter()
        .enumerate()
        .map(|(n, it)| (it.position, n))
        .collect();
    let mut entries = Vec::new();
    for (position, state) in &changes {
        entries.push((*position, last_item[position], entry(&state.0)?));
    }
    let mut seen: IntMap<()> = IntMap::default();
    for item in items {
        if changed.contains_key(&item.position) || seen.insert(item.position, ()).is_some() {
            continue;
        }
        if let Some(state) = stored(item.position)? {
            let reached = state.as_of(upto);
            if !reached.0.is_empty() {
                entries.push((item.position, last_item[&item.position], entry(reached)?));
            }
        }
    }
    // Blocks changed, in the order of their first change, each written whole.
    let mut touched: Vec<i64> = Vec::new();
    for (position, state) in changes {
        let number = block_of(position);
        if !touched.contains(&number) {
            touched.push(number);
        }
        blocks.get_mut(&number)?.set(position, state);
    }
    let blocks_out = touched
        .iter()
        .map(|n| (*n, encode_block(&blocks[n])))
        .collect();
    let mut events = Vec::with_capacity(raised.len());
    let mut reached: Vec<(u8, i64)> = Vec::new();
    for r in &raised {
        let item = &items[r.item];
        match reached.iter_mut().find(|(s, _)| *s == item.rank) {
            Some((_, n)) => *n += 1,
            None => reached.push((item.rank, 1)),
        }
        events.push(event(item, r.previous, job_id, tenant));
    }
    Some(Folded {
        summary: encode_summary(&new),
        blocks: blocks_out,
        events,
        entries,
        reached,
    })
}

// -- writing JSON as orjson does -------------------------------------------------------

fn string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("a string always serializes");
}

fn number(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn optional(out: &mut Vec<u8>, text: &Option<String>) {
    match text {
        Some(text) => string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

fn state_name(out: &mut Vec<u8>, rank: u8) {
    out.push(b'"');
    out.extend_from_slice(STATES[rank as usize].as_bytes());
    out.push(b'"');
}

fn reached_json(out: &mut Vec<u8>, reached: &Reached) {
    out.push(b'{');
    for (i, (rank, First(at, reason, provider))) in reached.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        state_name(out, *rank);
        out.extend_from_slice(b":[");
        number(out, *at);
        if reason.is_some() || provider.is_some() {
            out.push(b',');
            optional(out, reason);
        }
        if provider.is_some() {
            out.push(b',');
            optional(out, provider);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// `encode_block`: `{"<position>": [reached, by, before], ...}`, `before` a count when
/// it is `reached`'s first states.
fn encode_block(block: &Block) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.states.len() * 160);
    out.push(b'{');
    for (i, (position, Stored(reached, by, before))) in block.states.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        number(&mut out, *position);
        out.extend_from_slice(b"\":[");
        reached_json(&mut out, reached);
        out.push(b',');
        number(&mut out, *by);
        out.push(b',');
        match prefix_of(before, reached) {
            Some(count) => number(&mut out, count as i64),
            None => reached_json(&mut out, before),
        }
        out.extend_from_slice(b"]");
    }
    out.push(b'}');
    out
}

/// `Summary.to_bytes`: the counts that are not zero, then `upto`.
fn encode_summary(summary: &Summary) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"counts\":{");
    let mut first = true;
    for (rank, n) in summary.counts.iter().filter(|(_, n)| *n != 0) {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        state_name(&mut out, *rank);
        out.push(b':');
        number(&mut out, *n);
    }
    out.extend_from_slice(b"},\"upto\":");
    number(&mut out, summary.upto);
    out.push(b'}');
    out
}

/// `,"name":"text"` when there is a text (orjson leaves a None out of these objects).
fn text_member(out: &mut Vec<u8>, name: &str, text: &Option<String>) {
    if let Some(text) = text {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        string(out, text);
    }
}

/// `MessageOutcome.to_json`: the status reached, its report, the time of every state.
fn entry(reached: &Reached) -> Option<String> {
    let status = reached.status()?;
    let First(at, reason, provider) = reached.get(status)?;
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"{\"status\":");
    state_name(&mut out, status);
    out.extend_from_slice(b",\"at\":");
    number(&mut out, *at);
    text_member(&mut out, "reason", reason);
    text_member(&mut out, "provider", provider);
    out.extend_from_slice(b",\"times\":{");
    for (i, (rank, First(at, _, _))) in reached.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        state_name(&mut out, *rank);
        out.push(b':');
        number(&mut out, *at);
    }
    out.extend_from_slice(b"}}");
    String::from_utf8(out).ok()
}

/// A message event (`schemas.delivery.MessageEvent`), as `fold_encoded` writes it.
fn event(item: &Item, previous: Option<u8>, job_id: &str, tenant: &str) -> Vec<u8> {
    let First(at, reason, provider) = &item.first;
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"messageId\":");
    string(&mut out, &item.message_id);
    out.extend_from_slice(b",\"jobId\":");
    string(&mut out, job_id);
    out.extend_from_slice(b",\"tenant\":");
    string(&mut out, tenant);
    out.extend_from_slice(b",\"status\":");
    state_name(&mut out, item.rank);
    out.extend_from_slice(b",\"at\":");
    number(&mut out, *at);
    if let Some(previous) = previous {
        out.extend_from_slice(b",\"previous\":");
        state_name(&mut out, previous);
    }
    text_member(&mut out, "reason", reason);
    text_member(&mut out, "provider", provider);
    out.push(b'}');
    out
}

/// A bucket's fields and values, grouped (`BucketFields`): the bucket numbers in the
/// order of their first entry, each one's count of fields and the end of its share of
/// `body`, and `body`: every bucket's fields and values, flat, as bulk strings of the
/// Redis protocol (`$<length>\r\n<bytes>\r\n`), bucket after bucket.
struct Grouped {
    buckets: Vec<i64>,
    fields: Vec<usize>,
    ends: Vec<usize>,
    body: Vec<u8>,
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    number(out, bytes.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `streams.views.delivery.bucket_fields`: `entries` grouped by bucket of `size`
/// positions, the same bytes.
fn bucket_fields(entries: &[(i64, usize, String)], size: i64) -> Grouped {
    let mut order: Vec<i64> = Vec::new();
    let mut grouped: IntMap<(usize, Vec<u8>)> = IntMap::default();
    let mut position = Vec::with_capacity(20);
    for (at, _, entry) in entries {
        let bucket = at.div_euclid(size);
        let (count, out) = grouped.entry(bucket).or_insert_with(|| {
            order.push(bucket);
            (0, Vec::with_capacity(size as usize * 136))
        });
        position.clear();
        number(&mut position, *at);
        bulk(out, &position);
        bulk(out, entry.as_bytes());
        *count += 1;
    }
    let total = grouped.values().map(|(_, body)| body.len()).sum::<usize>();
    let mut out = Grouped {
        fields: Vec::with_capacity(order.len()),
        ends: Vec::with_capacity(order.len()),
        body: Vec::with_capacity(total),
        buckets: order,
    };
    for bucket in &out.buckets {
        let (count, body) = &grouped[bucket];
        out.body.extend_from_slice(body);
        out.fields.push(*count);
        out.ends.push(out.body.len());
    }
    out
}

// -- Python ----------------------------------------------------------------------------

/// `Report` as the fold reads it: (message id, job id, status, at, reason, provider, tenant).
type ReportTuple = (
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// (summary, blocks changed, events, entries, states reached) of `fold_codec.Encoded`;
/// the entries a list of tuples, or grouped by bucket (`views.delivery.BucketFields`).
pub(crate) type EncodedTuple<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyAny>,
    Bound<'py, PyDict>,
);

/// Fold one job's batch of reports (`Reported` tuples, in offset order) from the stored
/// summary and blocks (block number -> stored block or None, for every reported
/// position): (summary, [(block, bytes)], [event], [(position, message id, entry)],
/// {state: messages that reached it}), as `fold_codec.fold_encoded` gives them. None:
/// a stored record is not what `fold_encoded` writes; the batch is for Python.
#[pyfunction]
fn fold_reports<'py>(
    py: Python<'py>,
    summary: Option<&[u8]>,
    reported: &Bound<'py, PyAny>,
    blocks: HashMap<i64, Option<Bound<'py, PyBytes>>>,
    job_id: &str,
    tenant: &str,
) -> PyResult<Option<EncodedTuple<'py>>> {
    let mut items = Vec::new();
    for entry in reported.try_iter()? {
        let (offset, position, report): (i64, i64, ReportTuple) = entry?.extract()?;
        let (message_id, _, status, at, reason, provider, _) = report;
        let rank = rank_of(&status).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!("not a delivery state: {status}"))
        })?;
        items.push(Item {
            offset,
            position,
            message_id,
            rank,
            first: First(at, reason, provider),
        });
    }
    // Borrowed, not copied: bytes are immutable, and `blocks` keeps them alive.
    let raw_blocks: HashMap<i64, Option<&[u8]>> = blocks
        .iter()
        .map(|(n, block)| (*n, block.as_ref().map(|b| b.as_bytes())))
        .collect();
    let Some(folded) = py.detach(|| fold(summary, &items, &raw_blocks, job_id, tenant)) else {
        return Ok(None);
    };
    encoded(py, &folded, &items, None).map(Some)
}

/// The Python objects of a batch folded (`fold_codec.Encoded`'s fields); with a
/// `bucket` size, the entries grouped by bucket of the views (`bucket_fields`).
pub(crate) fn encoded<'py>(
    py: Python<'py>,
    folded: &Folded,
    items: &[Item],
    bucket: Option<i64>,
) -> PyResult<EncodedTuple<'py>> {
    let blocks = PyList::empty(py);
    for (number, block) in &folded.blocks {
        blocks.append((*number, PyBytes::new(py, block)))?;
    }
    let events = PyList::empty(py);
    for event in &folded.events {
        events.append(PyBytes::new(py, event))?;
    }
    let entries = match bucket {
        Some(size) => {
            let grouped = bucket_fields(&folded.entries, size);
            let first = folded
                .entries
                .first()
                .map(|(_, item, _)| &items[*item].message_id);
            let id = first.map_or("", |id| id.as_str());
            (
                grouped.buckets,
                grouped.fields,
                grouped.ends,
                PyBytes::new(py, &grouped.body),
                id,
            )
                .into_pyobject(py)?
                .into_any()
        }
        None => {
            let entries = PyList::empty(py);
            for (position, item, entry) in &folded.entries {
                let id = PyString::new(py, &items[*item].message_id);
                entries.append((*position, id, PyString::new(py, entry)))?;
            }
            entries.into_any()
        }
    };
    let reached = PyDict::new(py);
    for (rank, n) in &folded.reached {
        reached.set_item(STATES[*rank as usize], n)?;
    }
    Ok((
        PyBytes::new(py, &folded.summary),
        blocks,
        events,
        entries,
        reached,
    ))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(fold_reports, module)?)
}

// -- reading reports -------------------------------------------------------------------

/// The longest ids, reason and provider a report may hold (`schemas.delivery`), and
/// the latest time (9999-12-31T23:59:59.999Z).
const MAX_ID: usize = 200;
const MAX_REASON: usize = 1000;
const MAX_PROVIDER: usize = 100;
const MAX_AT: i64 = 253_402_300_799_999;

/// A report as `streams.aggregate.reports.fast_report` takes it: camelCase names only,
/// each once, exact types.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct WireReport {
    pub(crate) message_id: String,
    pub(crate) job_id: String,
    pub(crate) status: StatusName,
    pub(crate) at: i64,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) provider: Option<String>,
    #[serde(default)]
    pub(crate) tenant: Option<String>,
}

/// A report's `status`: its rank, None for a name that is not a delivery state. Read
/// from the JSON text as is (borrowed unless it has escapes), not kept as a string.
pub(crate) struct StatusName(Option<u8>);

impl<'de> Deserialize<'de> for StatusName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let KeyText(text) = KeyText::deserialize(deserializer)?;
        Ok(StatusName(rank_of(&text)))
    }
}

/// Whether JSON text is an object (serde would read a struct's fields from an array too).
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn within(text: &str, low: usize, high: usize) -> bool {
    // Python counts characters: bytes bound them from above, then count if need be.
    (low..=high).contains(&text.len()) || (low..=high).contains(&text.chars().count())
}

fn optional_within(text: &Option<String>, high: usize) -> bool {
    text.as_deref().map_or(true, |t| within(t, 0, high))
}

/// (rank, report) when every check of `fast_report` passes; None otherwise.
pub(crate) fn read_report(value: &[u8]) -> Option<(u8, WireReport)> {
    if !is_object(value) {
        return None;
    }
    let report: WireReport = from_json(value)?;
    let rank = report.status.0?;
    let valid = within(&report.message_id, 1, MAX_ID)
        && within(&report.job_id, 1, MAX_ID)
        && (0..=MAX_AT).contains(&report.at)
        && optional_within(&report.reason, MAX_REASON)
        && optional_within(&report.provider, MAX_PROVIDER)
        && optional_within(&report.tenant, MAX_ID);
    valid.then_some((rank, report))
}
