//! Posting blocks: the message log's query indexes, written once per indexing pass.
//!
//! An index pass groups its records by index value (message id, request id, client, service,
//! user, and one group for "all") and writes one sled entry per group: the key is the value and
//! the block's first position, the value lists every `(logged_at, record id)` position of the
//! group. A per-record key in six index trees cost six sled inserts per record, the largest
//! share of the log's CPU and of sled's memory; a block costs one insert per value per pass.
//!
//! A block never spans more than [`BLOCK_SPAN_NANOS`] of `logged_at`, so a query for positions
//! from time `t` on starts at the blocks keyed `t - span` and merges what it finds: blocks of
//! different passes may overlap in time, and a pass replayed after a crash may repeat positions
//! (merged queries drop the duplicates).
//!
//! Message ids and request ids are nearly unique, so a block per value would still be one sled
//! insert per exchange. Ids that carry their creation time (UUIDv7: every request id and message
//! id a security server generates) go into *id blocks* instead: one per pass and id-creation
//! second, keyed by that second, listing `(id, position)` sorted by id. A lookup reads only the
//! blocks of its id's second. Other ids (chosen by clients, or from older versions) keep their
//! own block per value, and a lookup always reads both.

use std::collections::BTreeMap;
use std::ops::Bound;

use time::OffsetDateTime;
use uuid::Uuid;

use super::record::RecordId;
use super::record::RecordMeta;
use super::store::StoreError;

/// The widest `logged_at` range one block covers (1 s).
pub const BLOCK_SPAN_NANOS: u64 = 1_000_000_000;
/// The most positions one block holds.
pub const BLOCK_MAX: usize = 1024;
/// Format tag of a block value.
const BLOCK_V1: u8 = 1;
/// Bytes of one position: sortable time (12) and record id (8).
const POS_LEN: usize = 20;
/// Format tag of an id block value.
const ID_BLOCK_V1: u8 = 2;
/// Bytes of one id block entry: the id (16) and its position (20).
const ID_ENTRY_LEN: usize = 16 + POS_LEN;

/// Which index a posting block belongs to (the first byte of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexTag {
    /// Every record.
    All = b'T' as isize,
    /// By message id.
    MessageId = b'M' as isize,
    /// By request id.
    RequestId = b'R' as isize,
    /// By client.
    Client = b'C' as isize,
    /// By service.
    Service = b'S' as isize,
    /// By end user.
    User = b'U' as isize,
    /// By message id, for ids that carry their creation time ([`TimedId`]).
    MessageIdByTime = b'm' as isize,
    /// By request id, for ids that carry their creation time ([`TimedId`]).
    RequestIdByTime = b'r' as isize,
}

/// An id that carries its creation time: a UUIDv7 (for message ids, only in its canonical
/// lower-case hyphenated text, so that the 16 bytes stand for exactly one string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedId {
    /// [`IndexTag::MessageIdByTime`] or [`IndexTag::RequestIdByTime`].
    tag: IndexTag,
    /// Unix seconds of the id's creation time.
    second: u64,
    /// The UUID's bytes.
    uuid: [u8; 16],
}

impl TimedId {
    fn v7(tag: IndexTag, u: &Uuid) -> Option<Self> {
        if u.get_version_num() != 7 || u.get_variant() != uuid::Variant::RFC4122 {
            return None;
        }
        let millis = (u.as_u128() >> 80) as u64;
        Some(Self {
            tag,
            second: millis / 1000,
            uuid: *u.as_bytes(),
        })
    }

    /// A request id's timed form, if it is a UUIDv7.
    pub fn request(u: &Uuid) -> Option<Self> {
        Self::v7(IndexTag::RequestIdByTime, u)
    }

    /// A message id's timed form, if it is a UUIDv7 in canonical text.
    pub fn message(s: &str) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        let u = Uuid::try_parse(s).ok()?;
        let mut canonical = [0u8; 36];
        u.hyphenated().encode_lower(&mut canonical);
        if canonical != s.as_bytes() {
            return None;
        }
        Self::v7(IndexTag::MessageIdByTime, &u)
    }

    /// The key prefix of this id's blocks: the tag and the creation second.
    fn prefix(&self) -> [u8; 9] {
        let mut p = [0u8; 9];
        p[0] = self.tag as u8;
        p[1..].copy_from_slice(&self.second.to_be_bytes());
        p
    }
}

/// A record's place in every index: when it was logged, then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// `logged_at` as a sortable key ([`time_key`]).
    pub time: [u8; 12],
    /// The record.
    pub id: u64,
}

impl Position {
    /// The position of a record logged at `t`.
    pub fn new(t: OffsetDateTime, id: RecordId) -> Self {
        Self {
            time: time_key(t),
            id: id.0,
        }
    }

    /// The 20 bytes a cursor and a block entry hold.
    pub fn to_bytes(self) -> [u8; POS_LEN] {
        let mut out = [0u8; POS_LEN];
        out[..12].copy_from_slice(&self.time);
        out[12..].copy_from_slice(&self.id.to_be_bytes());
        out
    }

    /// Reads [`Position::to_bytes`]; `None` unless exactly 20 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != POS_LEN {
            return None;
        }
        Some(Self {
            time: b[..12].try_into().ok()?,
            id: u64::from_be_bytes(b[12..].try_into().ok()?),
        })
    }
}

/// 12-byte sortable time key: seconds with the sign bit flipped, then nanoseconds, big-endian.
pub fn time_key(t: OffsetDateTime) -> [u8; 12] {
    let mut out = [0u8; 12];
    let secs = (t.unix_timestamp() as u64) ^ (1u64 << 63);
    out[..8].copy_from_slice(&secs.to_be_bytes());
    out[8..].copy_from_slice(&t.nanosecond().to_be_bytes());
    out
}

/// Nanoseconds since the smallest representable time key (order-preserving).
fn key_nanos(k: &[u8; 12]) -> u128 {
    let secs = u64::from_be_bytes(k[..8].try_into().unwrap_or_default());
    let nanos = u32::from_be_bytes(k[8..].try_into().unwrap_or_default());
    u128::from(secs) * 1_000_000_000 + u128::from(nanos)
}

fn nanos_key(n: u128) -> [u8; 12] {
    let mut out = [0u8; 12];
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    out[..8].copy_from_slice(&secs.to_be_bytes());
    out[8..].copy_from_slice(&((n % 1_000_000_000) as u32).to_be_bytes());
    out
}

fn time_minus_span(k: [u8; 12]) -> [u8; 12] {
    nanos_key(key_nanos(&k).saturating_sub(u128::from(BLOCK_SPAN_NANOS)))
}

fn lp(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The key prefix of one index value: the tag, then the value (length-prefixed, so that no
/// value's prefix is another value's prefix).
pub fn prefix(tag: IndexTag, value: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + value.len());
    p.push(tag as u8);
    if tag != IndexTag::All {
        lp(&mut p, value);
    }
    p
}

fn block_key(prefix: &[u8], first: Position) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + POS_LEN);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&first.to_bytes());
    k
}

/// The smallest key of a block under `prefix` that can hold a position logged at `time` or
/// later (a block spans at most [`BLOCK_SPAN_NANOS`]).
fn floor_key(prefix: &[u8], time: [u8; 12]) -> Vec<u8> {
    block_key(
        prefix,
        Position {
            time: time_minus_span(time),
            id: 0,
        },
    )
}

fn encode_block(ps: &[Position]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + POS_LEN * ps.len());
    v.push(BLOCK_V1);
    for p in ps {
        v.extend_from_slice(&p.to_bytes());
    }
    v
}

fn decode_block(v: &[u8]) -> Result<Vec<Position>, StoreError> {
    let bad = || StoreError::Corrupt {
        id: RecordId(0),
        reason: "bad posting block in the index".into(),
    };
    let body = match v.split_first() {
        Some((&BLOCK_V1, body)) if body.len() % POS_LEN == 0 => body,
        _ => return Err(bad()),
    };
    body.chunks_exact(POS_LEN)
        .map(|c| Position::from_bytes(c).ok_or_else(bad))
        .collect()
}

fn encode_id_block(entries: &[([u8; 16], Position)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + ID_ENTRY_LEN * entries.len());
    v.push(ID_BLOCK_V1);
    for (id, p) in entries {
        v.extend_from_slice(id);
        v.extend_from_slice(&p.to_bytes());
    }
    v
}

/// The entries of an id block, checked for shape once so that callers can slice freely.
fn id_block_entries(v: &[u8]) -> Result<std::slice::ChunksExact<'_, u8>, StoreError> {
    match v.split_first() {
        Some((&ID_BLOCK_V1, body)) if body.len() % ID_ENTRY_LEN == 0 => {
            Ok(body.chunks_exact(ID_ENTRY_LEN))
        }
        _ => Err(StoreError::Corrupt {
            id: RecordId(0),
            reason: "bad id block in the index".into(),
        }),
    }
}

/// The position in one id block entry (its shape already checked).
fn entry_position(e: &[u8]) -> Position {
    Position::from_bytes(&e[16..]).unwrap_or(Position {
        time: [0; 12],
        id: 0,
    })
}

/// Positions grouped by index prefix: what one pass adds to (or removes from) the index.
#[derive(Debug, Default)]
pub struct Postings {
    /// Per-value blocks: index prefix to positions.
    values: BTreeMap<Vec<u8>, Vec<Position>>,
    /// Id blocks: [`TimedId::prefix`] to `(id, position)` entries.
    ids: BTreeMap<[u8; 9], Vec<([u8; 16], Position)>>,
}

impl Postings {
    /// Adds a record to every index it belongs to.
    pub fn add(&mut self, meta: &RecordMeta, id: RecordId) {
        let pos = Position::new(meta.logged_at, id);
        let mut value = |tag: IndexTag, v: &[u8]| {
            self.values.entry(prefix(tag, v)).or_default().push(pos);
        };
        value(IndexTag::All, b"");
        value(IndexTag::Client, meta.client.as_bytes());
        value(IndexTag::Service, meta.service.as_bytes());
        if let Some(u) = &meta.user {
            value(IndexTag::User, u.id.as_bytes());
        }
        // An id that carries its creation time goes into its second's id block, any other
        // into a block of its own value.
        let message = TimedId::message(&meta.message_id);
        if message.is_none() {
            value(IndexTag::MessageId, meta.message_id.as_bytes());
        }
        let request = TimedId::request(&meta.request_id);
        if request.is_none() {
            value(IndexTag::RequestId, meta.request_id.as_bytes());
        }
        for t in [message, request].into_iter().flatten() {
            self.ids.entry(t.prefix()).or_default().push((t.uuid, pos));
        }
    }

    /// Writes one block per index value and one id block per id second (more if a block would
    /// hold more than [`BLOCK_MAX`] or, for values, span more than [`BLOCK_SPAN_NANOS`]).
    pub fn write(self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (prefix, mut ps) in self.values {
            ps.sort_unstable();
            ps.dedup();
            for block in split(&ps) {
                tree.insert(block_key(&prefix, block[0]), encode_block(block))?;
            }
        }
        for (prefix, mut entries) in self.ids {
            entries.sort_unstable();
            entries.dedup();
            for block in entries.chunks(BLOCK_MAX) {
                let first = block.iter().map(|(_, p)| *p).min().unwrap_or(block[0].1);
                tree.insert(block_key(&prefix, first), encode_id_block(block))?;
            }
        }
        Ok(())
    }

    /// Deletes these positions from every block holding them (a block left empty is removed).
    pub fn remove_from(self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (prefix, entries) in self.ids {
            let mut gone: Vec<Position> = entries.into_iter().map(|(_, p)| p).collect();
            gone.sort_unstable();
            gone.dedup();
            for item in tree.scan_prefix(prefix) {
                let (k, v) = item?;
                let all = id_block_entries(&v)?;
                let total = all.len();
                let kept: Vec<([u8; 16], Position)> = all
                    .filter(|e| gone.binary_search(&entry_position(e)).is_err())
                    .map(|e| (e[..16].try_into().unwrap_or([0; 16]), entry_position(e)))
                    .collect();
                if kept.len() == total {
                    continue;
                }
                if kept.is_empty() {
                    tree.remove(k)?;
                } else {
                    tree.insert(k, encode_id_block(&kept))?;
                }
            }
        }
        for (prefix, mut ps) in self.values {
            ps.sort_unstable();
            ps.dedup();
            let (Some(first), Some(last)) = (ps.first(), ps.last()) else {
                continue;
            };
            let upper = block_key(&prefix, *last);
            for item in tree.range(floor_key(&prefix, first.time)..=upper) {
                let (k, v) = item?;
                let block = decode_block(&v)?;
                let kept: Vec<Position> = block
                    .iter()
                    .copied()
                    .filter(|p| ps.binary_search(p).is_err())
                    .collect();
                if kept.len() == block.len() {
                    continue;
                }
                // A block keeps its key when its first entry goes: its key stays a lower bound
                // of its positions, which is all a query needs.
                if kept.is_empty() {
                    tree.remove(k)?;
                } else {
                    tree.insert(k, encode_block(&kept))?;
                }
            }
        }
        Ok(())
    }
}

/// Sorted positions cut into blocks of at most [`BLOCK_MAX`] entries and [`BLOCK_SPAN_NANOS`].
fn split(ps: &[Position]) -> Vec<&[Position]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=ps.len() {
        let cut = i == ps.len()
            || i - start >= BLOCK_MAX
            || key_nanos(&ps[i].time) - key_nanos(&ps[start].time) > u128::from(BLOCK_SPAN_NANOS);
        if cut {
            out.push(&ps[start..i]);
            start = i;
        }
    }
    out
}

/// Which positions a query wants.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Earliest `logged_at` (inclusive).
    pub from: Option<[u8; 12]>,
    /// Latest `logged_at` (exclusive).
    pub to: Option<[u8; 12]>,
    /// Only positions after this one (the previous page's last).
    pub after: Option<Position>,
}

impl Window {
    fn admits(&self, p: &Position) -> bool {
        self.from.is_none_or(|f| p.time >= f)
            && self.to.is_none_or(|t| p.time < t)
            && self.after.is_none_or(|a| *p > a)
    }
}

/// The first `limit` positions (in time, then id order, without duplicates) under `prefix` that
/// `w` admits; fewer only if there are no more.
pub fn scan(
    tree: &sled::Tree,
    prefix: &[u8],
    w: &Window,
    limit: usize,
) -> Result<Vec<Position>, StoreError> {
    let lower_time = match (w.from, w.after) {
        (Some(f), Some(a)) => Some(f.max(a.time)),
        (f, a) => f.or(a.map(|a| a.time)),
    };
    let lower = match lower_time {
        Some(t) => floor_key(prefix, t),
        None => prefix.to_vec(),
    };
    let upper = match w.to {
        Some(t) => Bound::Excluded(block_key(prefix, Position { time: t, id: 0 })),
        None => prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
    };
    let mut found: Vec<Position> = Vec::new();
    for item in tree.range::<Vec<u8>, _>((Bound::Included(lower), upper)) {
        let (k, v) = item?;
        if found.len() >= limit {
            // Every later block starts at or after its key: once that is past the last position
            // kept, nothing later can make the page.
            let start = k.get(prefix.len()..).and_then(Position::from_bytes);
            if start.is_some_and(|s| found.last().is_some_and(|l| s > *l)) {
                break;
            }
        }
        found.extend(decode_block(&v)?.into_iter().filter(|p| w.admits(p)));
        if found.len() >= limit {
            found.sort_unstable();
            found.dedup();
            found.truncate(limit);
        }
    }
    found.sort_unstable();
    found.dedup();
    found.truncate(limit);
    Ok(found)
}

/// The first `limit` positions of records with this timed id that `w` admits, from the id
/// blocks of the id's creation second.
pub fn scan_id(
    tree: &sled::Tree,
    id: &TimedId,
    w: &Window,
    limit: usize,
) -> Result<Vec<Position>, StoreError> {
    let mut found = Vec::new();
    for item in tree.scan_prefix(id.prefix()) {
        let (_, v) = item?;
        found.extend(
            id_block_entries(&v)?
                .filter(|e| e[..16] == id.uuid)
                .map(entry_position)
                .filter(|p| w.admits(p)),
        );
    }
    found.sort_unstable();
    found.dedup();
    found.truncate(limit);
    Ok(found)
}

/// [`scan`] of the per-value blocks under `prefix`, merged with [`scan_id`] when the queried id
/// carries its time (records of older versions hold such ids in per-value blocks).
pub fn scan_merged(
    tree: &sled::Tree,
    prefix: &[u8],
    timed: Option<&TimedId>,
    w: &Window,
    limit: usize,
) -> Result<Vec<Position>, StoreError> {
    let mut found = scan(tree, prefix, w, limit)?;
    if let Some(id) = timed {
        found.extend(scan_id(tree, id, w, limit)?);
        found.sort_unstable();
        found.dedup();
        found.truncate(limit);
    }
    Ok(found)
}

/// The smallest byte string greater than every string starting with `prefix` (None: unbounded).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(nanos: u64, id: u64) -> Position {
        Position {
            time: nanos_key(u128::from(nanos) + (1u128 << 63) * 1_000_000_000),
            id,
        }
    }

    fn write(tree: &sled::Tree, prefix: &[u8], ps: &[Position]) {
        let mut p = Postings::default();
        p.values.insert(prefix.to_vec(), ps.to_vec());
        p.write(tree).unwrap();
    }

    fn tree() -> sled::Tree {
        sled::Config::new()
            .temporary(true)
            .open()
            .unwrap()
            .open_tree("p")
            .unwrap()
    }

    #[test]
    fn time_keys_sort_like_times() {
        let a = OffsetDateTime::from_unix_timestamp(-5).unwrap();
        let b = OffsetDateTime::from_unix_timestamp(3).unwrap();
        assert!(time_key(a) < time_key(b));
        assert_eq!(
            key_nanos(&time_key(b)) - key_nanos(&time_key(a)),
            8_000_000_000
        );
        assert_eq!(nanos_key(key_nanos(&time_key(b))), time_key(b));
    }

    #[test]
    fn blocks_are_cut_by_span_and_size() {
        let ps: Vec<_> = (0..3000u64).map(|i| pos(i * 1_000_000, i)).collect();
        let blocks = split(&ps);
        // 3 s of positions 1 ms apart: no block spans more than 1 s or holds more than 1024.
        assert!(blocks.iter().all(|b| b.len() <= BLOCK_MAX));
        assert!(blocks.iter().all(|b| {
            key_nanos(&b[b.len() - 1].time) - key_nanos(&b[0].time) <= u128::from(BLOCK_SPAN_NANOS)
        }));
        assert_eq!(blocks.iter().map(|b| b.len()).sum::<usize>(), 3000);
        assert_eq!(blocks.len(), 3);
    }

    #[test]
    fn a_damaged_block_is_reported_not_read() {
        assert!(decode_block(&[2]).is_err());
        assert!(decode_block(&[BLOCK_V1, 0, 1]).is_err());
        assert_eq!(decode_block(&[BLOCK_V1]).unwrap(), vec![]);
    }

    #[test]
    fn removal_rewrites_or_drops_the_blocks_holding_a_position() {
        let t = tree();
        let p = prefix(IndexTag::Client, b"c");
        write(&t, &p, &[pos(10, 1), pos(20, 2)]);
        write(&t, &p, &[pos(15, 3)]);
        let mut gone = Postings::default();
        gone.values.insert(p.clone(), vec![pos(10, 1), pos(15, 3)]);
        gone.remove_from(&t).unwrap();
        assert_eq!(t.len(), 1);
        let w = Window {
            from: None,
            to: None,
            after: None,
        };
        assert_eq!(scan(&t, &p, &w, 10).unwrap(), vec![pos(20, 2)]);
    }

    /// Every page `next` returns from `w` on, each continuing after the previous page's last
    /// position, until a page is short; no page may hold more than `limit`.
    fn all_pages(
        mut w: Window,
        limit: usize,
        next: impl Fn(&Window) -> Vec<Position>,
    ) -> Result<Vec<Position>, TestCaseError> {
        let mut got = Vec::new();
        loop {
            let page = next(&w);
            prop_assert!(page.len() <= limit);
            got.extend(page.iter().copied());
            if page.len() < limit {
                return Ok(got);
            }
            w.after = page.last().copied();
        }
    }

    fn v7(millis: u64, n: u8) -> Uuid {
        uuid::Builder::from_unix_timestamp_millis(millis, &[n; 10]).into_uuid()
    }

    fn meta(message_id: &str, request_id: Uuid, nanos: u64) -> RecordMeta {
        RecordMeta {
            kind: super::super::record::MessageKind::RequestSent,
            message_id: message_id.into(),
            request_id,
            client: "EE/GOV/1/c".into(),
            service: "EE/GOV/2/s/v1".into(),
            user: None,
            issue: None,
            logged_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).unwrap(),
            payload_size: 0,
            outcome: super::super::record::Outcome::Ok,
        }
    }

    #[test]
    fn only_uuid_v7_ids_in_canonical_text_are_timed() {
        let u = v7(1_763_000_000_123, 9);
        let t = TimedId::request(&u).unwrap();
        assert_eq!(t.second, 1_763_000_000);
        assert_eq!(t.prefix()[0], b'r');
        assert_eq!(&t.prefix()[1..], &1_763_000_000u64.to_be_bytes());
        let text = u.hyphenated().to_string();
        assert_eq!(TimedId::message(&text).map(|m| m.uuid), Some(*u.as_bytes()));
        assert_eq!(TimedId::message(&text).unwrap().prefix()[0], b'm');
        // Another spelling of the same UUID is another message id: it keeps its own block.
        assert_eq!(TimedId::message(&text.to_uppercase()), None);
        assert_eq!(TimedId::message(&u.simple().to_string()), None);
        assert_eq!(TimedId::message(&u.braced().to_string()), None);
        assert_eq!(TimedId::message("msg-4"), None);
        let v4 = Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);
        assert_eq!(TimedId::request(&v4), None);
        assert_eq!(TimedId::message(&v4.hyphenated().to_string()), None);
    }

    #[test]
    fn timed_ids_of_a_pass_share_one_block_per_second() {
        let t = tree();
        let mut p = Postings::default();
        for i in 0..50u64 {
            let id = v7(1_763_000_000_000 + i * 30, i as u8);
            p.add(
                &meta(&id.hyphenated().to_string(), id, 1_000 + i),
                RecordId(i),
            );
        }
        p.write(&t).unwrap();
        // Ids created in two seconds: two message-id and two request-id blocks, plus one block
        // each for "all", the client and the service.
        assert_eq!(t.len(), 7);
        assert_eq!(
            t.scan_prefix([b'M']).count() + t.scan_prefix([b'R']).count(),
            0
        );
        let w = Window {
            from: None,
            to: None,
            after: None,
        };
        let id = v7(1_763_000_000_000 + 40 * 30, 40);
        let found = scan_id(&t, &TimedId::request(&id).unwrap(), &w, 10).unwrap();
        assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), vec![40]);
    }

    #[test]
    fn timed_ids_indexed_by_older_versions_are_still_found() {
        // Before id blocks, every id had its own per-value block.
        let t = tree();
        let id = v7(1_763_000_000_000, 3);
        write(
            &t,
            &prefix(IndexTag::RequestId, id.as_bytes()),
            &[pos(5, 1)],
        );
        let mut p = Postings::default();
        p.add(&meta("m", id, 9), RecordId(2));
        p.write(&t).unwrap();
        let w = Window {
            from: None,
            to: None,
            after: None,
        };
        let timed = TimedId::request(&id).unwrap();
        let found = scan_merged(
            &t,
            &prefix(IndexTag::RequestId, id.as_bytes()),
            Some(&timed),
            &w,
            10,
        );
        assert_eq!(
            found.unwrap().iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn a_damaged_id_block_is_reported_not_read() {
        let t = tree();
        let id = TimedId::request(&v7(5_000, 1)).unwrap();
        t.insert(block_key(&id.prefix(), pos(1, 1)), vec![ID_BLOCK_V1, 0, 0])
            .unwrap();
        let w = Window {
            from: None,
            to: None,
            after: None,
        };
        assert!(scan_id(&t, &id, &w, 10).is_err());
        assert!(id_block_entries(&[BLOCK_V1]).is_err());
    }

    proptest! {
        /// Records with timed and untimed message and request ids, indexed in passes and partly
        /// removed again: a paged lookup by any id returns exactly the positions of the records
        /// left with that id, once each, in order.
        #[test]
        fn id_lookups_match_a_model_after_passes_and_removals(
            records in prop::collection::vec((0usize..6, 0usize..4, 0u64..3_000_000_000), 1..80),
            cuts in prop::collection::vec(0usize..80, 0..4),
            removed in prop::collection::vec(any::<bool>(), 80),
            limit in 1usize..6,
        ) {
            let base = 1_763_000_000_000u64;
            let timed: Vec<Uuid> = (0..3).map(|i| v7(base + i * 700, i as u8)).collect();
            let message_ids = [
                timed[0].hyphenated().to_string(),
                timed[1].hyphenated().to_string(),
                timed[2].hyphenated().to_string(),
                timed[0].hyphenated().to_string().to_uppercase(),
                "msg-1".to_string(),
                Uuid::from_u128(0xAB).hyphenated().to_string(),
            ];
            let request_ids = [timed[0], timed[2], Uuid::from_u128(0xAB), Uuid::from_u128(0xCD)];
            let metas: Vec<RecordMeta> = records
                .iter()
                .map(|&(m, r, n)| meta(&message_ids[m], request_ids[r], n))
                .collect();
            let t = tree();
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % metas.len()).collect();
            bounds.push(0);
            bounds.push(metas.len());
            bounds.sort_unstable();
            for pass in bounds.windows(2) {
                let mut p = Postings::default();
                for (i, m) in metas.iter().enumerate().take(pass[1]).skip(pass[0]) {
                    p.add(m, RecordId(i as u64));
                }
                p.write(&t).unwrap();
            }
            let mut gone = Postings::default();
            for (i, m) in metas.iter().enumerate() {
                if removed[i] {
                    gone.add(m, RecordId(i as u64));
                }
            }
            gone.remove_from(&t).unwrap();
            let w0 = Window { from: None, to: None, after: None };
            let check = |tag: IndexTag, value: &[u8], timed: Option<TimedId>, want: Vec<Position>| {
                let got = all_pages(w0, limit, |w| {
                    scan_merged(&t, &prefix(tag, value), timed.as_ref(), w, limit).unwrap()
                })?;
                prop_assert_eq!(got, want);
                Ok(())
            };
            let model = |keep: &dyn Fn(&RecordMeta) -> bool| {
                let mut v: Vec<Position> = metas
                    .iter()
                    .enumerate()
                    .filter(|(i, m)| !removed[*i] && keep(m))
                    .map(|(i, m)| Position::new(m.logged_at, RecordId(i as u64)))
                    .collect();
                v.sort_unstable();
                v
            };
            for m in &message_ids {
                check(IndexTag::MessageId, m.as_bytes(), TimedId::message(m),
                    model(&|x: &RecordMeta| x.message_id == *m))?;
            }
            for r in &request_ids {
                check(IndexTag::RequestId, r.as_bytes(), TimedId::request(r),
                    model(&|x: &RecordMeta| x.request_id == *r))?;
            }
        }
    }

    proptest! {
        /// However positions are spread over passes (overlapping, repeated), a paged scan returns
        /// exactly the sorted, distinct positions the window admits.
        #[test]
        fn paged_scans_return_every_admitted_position_once(
            passes in prop::collection::vec(
                prop::collection::vec((0u64..5_000_000_000, 0u64..400), 0..60), 1..8),
            from in prop::option::of(0u64..5_000_000_000),
            to in prop::option::of(0u64..5_000_000_000),
            limit in 1usize..40,
        ) {
            let t = tree();
            let p = prefix(IndexTag::User, b"u");
            let other = prefix(IndexTag::User, b"u2");
            let mut all = Vec::new();
            for pass in &passes {
                let ps: Vec<_> = pass.iter().map(|&(n, id)| pos(n, id)).collect();
                write(&t, &p, &ps);
                write(&t, &other, &ps);
                all.extend(ps);
            }
            let w0 = Window {
                from: from.map(|f| pos(f, 0).time),
                to: to.map(|x| pos(x, 0).time),
                after: None,
            };
            let mut want: Vec<_> = all.into_iter().filter(|x| w0.admits(x)).collect();
            want.sort_unstable();
            want.dedup();
            let got = all_pages(w0, limit, |w| scan(&t, &p, w, limit).unwrap())?;
            prop_assert_eq!(got, want);
        }
    }
}
