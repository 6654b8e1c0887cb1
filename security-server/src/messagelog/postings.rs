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

use std::collections::BTreeMap;
use std::ops::Bound;

use time::OffsetDateTime;

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

/// The prefixes of every index a record belongs to.
pub fn prefixes(meta: &RecordMeta) -> Vec<Vec<u8>> {
    let mut out = vec![
        prefix(IndexTag::All, b""),
        prefix(IndexTag::MessageId, meta.message_id.as_bytes()),
        prefix(IndexTag::RequestId, meta.request_id.as_bytes()),
        prefix(IndexTag::Client, meta.client.as_bytes()),
        prefix(IndexTag::Service, meta.service.as_bytes()),
    ];
    if let Some(u) = &meta.user {
        out.push(prefix(IndexTag::User, u.id.as_bytes()));
    }
    out
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

/// Positions grouped by index prefix: what one pass adds to (or removes from) the index.
#[derive(Debug, Default)]
pub struct Postings(BTreeMap<Vec<u8>, Vec<Position>>);

impl Postings {
    /// Adds a record to every index it belongs to.
    pub fn add(&mut self, meta: &RecordMeta, id: RecordId) {
        let pos = Position::new(meta.logged_at, id);
        for p in prefixes(meta) {
            self.0.entry(p).or_default().push(pos);
        }
    }

    /// Writes one block per index value (more if the positions span more than a block may).
    pub fn write(self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (prefix, mut ps) in self.0 {
            ps.sort_unstable();
            ps.dedup();
            for block in split(&ps) {
                tree.insert(block_key(&prefix, block[0]), encode_block(block))?;
            }
        }
        Ok(())
    }

    /// Deletes these positions from every block holding them (a block left empty is removed).
    pub fn remove_from(self, tree: &sled::Tree) -> Result<(), StoreError> {
        for (prefix, mut ps) in self.0 {
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
        p.0.insert(prefix.to_vec(), ps.to_vec());
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
        gone.0.insert(p.clone(), vec![pos(10, 1), pos(15, 3)]);
        gone.remove_from(&t).unwrap();
        assert_eq!(t.len(), 1);
        let w = Window {
            from: None,
            to: None,
            after: None,
        };
        assert_eq!(scan(&t, &p, &w, 10).unwrap(), vec![pos(20, 2)]);
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
            let mut got = Vec::new();
            let mut w = w0;
            loop {
                let page = scan(&t, &p, &w, limit).unwrap();
                prop_assert!(page.len() <= limit);
                got.extend(page.iter().copied());
                if page.len() < limit {
                    break;
                }
                w.after = page.last().copied();
            }
            prop_assert_eq!(got, want);
        }
    }
}
