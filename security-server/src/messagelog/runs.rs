//! Record runs: where the store finds each record in the journal, one sled entry per indexing
//! pass instead of one per record.
//!
//! Record ids are consecutive and an indexing pass stores consecutive records, so a pass's
//! journal positions fit one value keyed by the pass's first id: slot `i` belongs to record
//! `first + i`. A lookup for id `n` reads the run with the greatest key at or below `n`. One
//! key per record cost sled an insert, a leaf split every 16 records and a log write per
//! record on every security server, twice per exchange (docs/performance.md).
//!
//! Value: `RUN_V1 ‖ slot × n`, a slot being `entry_hash[32] ‖ segment u64 ‖ offset u64 ‖
//! length u32` (big-endian). Archiving removes records from the front of the log: removed
//! slots at either end are cut off (a run that loses its front is stored under its new first
//! id), one inside the run is marked ([`REMOVED`] as its length) and stays removed, and a run
//! with no live slot is deleted. A run therefore never covers ids past its last live record,
//! which is what the store reports as its last and replays the journal after.

use super::chain::ChainHash;

/// Format tag of a run value.
const RUN_V1: u8 = 1;
/// Bytes of one slot.
pub const SLOT_LEN: usize = 32 + 8 + 8 + 4;
/// The most slots one run holds (a longer pass is stored as several runs), so that a lookup
/// never copies or scans a large value.
pub const MAX_RUN: usize = 256;
/// The length field of a removed slot (no journal entry is that long: bodies over 1 MiB are
/// logged by reference).
const REMOVED: u32 = u32::MAX;

/// Where one record's entry frame is in the journal, with its entry hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The record's journal entry hash.
    pub hash: ChainHash,
    /// Segment number.
    pub segment: u64,
    /// Byte offset of the entry frame in the segment.
    pub offset: u64,
    /// Length of the record inside the frame.
    pub len: u32,
}

impl Slot {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.segment.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }

    fn read(b: &[u8]) -> Option<Slot> {
        let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        let len = u32::from_be_bytes(b[48..52].try_into().unwrap_or([0; 4]));
        (len != REMOVED).then(|| Slot {
            hash: ChainHash(b[..32].try_into().unwrap_or([0; 32])),
            segment: u64_at(32),
            offset: u64_at(40),
            len,
        })
    }
}

/// The value of a run holding `slots`, in id order.
pub fn encode(slots: &[Slot]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + SLOT_LEN * slots.len());
    v.push(RUN_V1);
    for s in slots {
        s.put(&mut v);
    }
    v
}

/// A run as stored: its first id and its slots.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    first: u64,
    slots: &'a [u8],
}

/// Why a stored run cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record run {first}: {reason}")]
pub struct RunError {
    /// The run's key, as far as it could be read.
    pub first: u64,
    /// What is wrong.
    pub reason: &'static str,
}

/// What removing records from a run leaves to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Nothing changed.
    Keep,
    /// Delete the run.
    Delete,
    /// Delete the run and store this value under key `first` (which may be the same key).
    Replace {
        /// The new first id.
        first: u64,
        /// The new value.
        value: Vec<u8>,
    },
}

impl<'a> Run<'a> {
    /// Reads a run from its key and value.
    pub fn parse(key: &[u8], value: &'a [u8]) -> Result<Self, RunError> {
        let first = <[u8; 8]>::try_from(key).map(u64::from_be_bytes);
        let err = |reason| RunError {
            first: *first.as_ref().unwrap_or(&0),
            reason,
        };
        let first = first.map_err(|_| err("key is not an 8-byte id"))?;
        let slots = match value.split_first() {
            Some((&RUN_V1, slots)) => slots,
            Some(_) => return Err(err("unknown format")),
            None => return Err(err("empty value")),
        };
        if slots.is_empty() || slots.len() % SLOT_LEN != 0 {
            return Err(err("length is not a whole number of slots"));
        }
        if first
            .checked_add(slots.len() as u64 / SLOT_LEN as u64)
            .is_none()
        {
            return Err(err("ids beyond the id space"));
        }
        Ok(Run { first, slots })
    }

    /// The id of the first slot.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The id of the last slot.
    pub fn last(&self) -> u64 {
        self.first + (self.slots.len() / SLOT_LEN) as u64 - 1
    }

    /// Whether the run has a slot (live or removed) for `id`.
    pub fn covers(&self, id: u64) -> bool {
        (self.first..=self.last()).contains(&id)
    }

    /// The slot of `id`: `None` when the run does not cover it or the record was removed.
    pub fn get(&self, id: u64) -> Option<Slot> {
        if !self.covers(id) {
            return None;
        }
        let at = (id - self.first) as usize * SLOT_LEN;
        Slot::read(&self.slots[at..at + SLOT_LEN])
    }

    /// The live slots with id `>= from`, in id order.
    pub fn live_from(&self, from: u64) -> impl Iterator<Item = (u64, Slot)> + 'a {
        let first = self.first;
        let skip = from.saturating_sub(first);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.slots
            .chunks_exact(SLOT_LEN)
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, s)| Some((first + i as u64, Slot::read(s)?)))
    }

    /// The live slot with the highest id.
    pub fn last_live(&self) -> Option<(u64, Slot)> {
        let first = self.first;
        self.slots
            .chunks_exact(SLOT_LEN)
            .enumerate()
            .rev()
            .find_map(|(i, s)| Some((first + i as u64, Slot::read(s)?)))
    }

    /// What is left once the records `ids` are removed (ids the run does not cover are
    /// ignored).
    pub fn without(&self, ids: &[u64]) -> Edit {
        let mut slots = self.slots.to_vec();
        let mut changed = false;
        for &id in ids.iter().filter(|&&id| self.covers(id)) {
            let at = (id - self.first) as usize * SLOT_LEN;
            let s = &mut slots[at..at + SLOT_LEN];
            if Slot::read(s).is_some() {
                s.fill(0);
                s[48..].copy_from_slice(&REMOVED.to_be_bytes());
                changed = true;
            }
        }
        if !changed {
            return Edit::Keep;
        }
        let live = |s: &[u8]| Slot::read(s).is_some();
        let Some(lead) = slots.chunks_exact(SLOT_LEN).position(live) else {
            return Edit::Delete;
        };
        let trail = slots.chunks_exact(SLOT_LEN).rposition(live).unwrap_or(lead);
        let kept = &slots[lead * SLOT_LEN..(trail + 1) * SLOT_LEN];
        let mut value = Vec::with_capacity(1 + kept.len());
        value.push(RUN_V1);
        value.extend_from_slice(kept);
        Edit::Replace {
            first: self.first + lead as u64,
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slot(n: u64) -> Slot {
        Slot {
            hash: ChainHash([n as u8; 32]),
            segment: n / 7,
            offset: n * 100,
            len: n as u32 + 1,
        }
    }

    fn run_of(first: u64, n: u64) -> (Vec<u8>, Vec<u8>) {
        let slots: Vec<_> = (first..first + n).map(slot).collect();
        (first.to_be_bytes().to_vec(), encode(&slots))
    }

    #[test]
    fn a_run_answers_for_exactly_its_ids() {
        let (k, v) = run_of(10, 3);
        let r = Run::parse(&k, &v).unwrap();
        assert_eq!((r.first(), r.last()), (10, 12));
        assert_eq!(r.get(9), None);
        assert_eq!(r.get(10), Some(slot(10)));
        assert_eq!(r.get(12), Some(slot(12)));
        assert_eq!(r.get(13), None);
        assert_eq!(
            r.live_from(11).map(|(i, _)| i).collect::<Vec<_>>(),
            vec![11, 12]
        );
        assert_eq!(r.live_from(0).count(), 3);
        assert_eq!(r.last_live(), Some((12, slot(12))));
        assert_eq!(v.len(), 1 + 3 * SLOT_LEN);
    }

    #[test]
    fn removing_cuts_the_front_marks_the_middle_and_deletes_an_empty_run() {
        let (k, v) = run_of(10, 4);
        let r = Run::parse(&k, &v).unwrap();
        assert_eq!(r.without(&[3, 20]), Edit::Keep);
        let Edit::Replace { first, value } = r.without(&[10, 12]) else {
            panic!("expected a rewrite");
        };
        assert_eq!(first, 11);
        let r2 = Run::parse(&first.to_be_bytes(), &value).unwrap();
        assert_eq!((r2.first(), r2.last()), (11, 13));
        assert_eq!(r2.get(11), Some(slot(11)));
        assert_eq!(r2.get(12), None);
        assert!(r2.covers(12));
        assert_eq!(
            r2.live_from(0).map(|(i, _)| i).collect::<Vec<_>>(),
            vec![11, 13]
        );
        // Removing an already removed slot changes nothing.
        assert_eq!(r2.without(&[12]), Edit::Keep);
        assert_eq!(r2.without(&[11, 13]), Edit::Delete);
        let Edit::Replace { first, value } = r2.without(&[13]) else {
            panic!("expected a rewrite");
        };
        let r3 = Run::parse(&first.to_be_bytes(), &value).unwrap();
        assert_eq!((r3.first(), r3.last()), (11, 11));
        assert_eq!(r3.last_live(), Some((11, slot(11))));
    }

    #[test]
    fn damaged_values_are_refused() {
        let (k, v) = run_of(5, 2);
        let bad = |key: &[u8], value: &[u8]| Run::parse(key, value).unwrap_err().reason;
        assert_eq!(bad(&k[..7], &v), "key is not an 8-byte id");
        assert_eq!(bad(&k, &[]), "empty value");
        assert_eq!(bad(&k, &[2]), "unknown format");
        assert_eq!(bad(&k, &[RUN_V1]), "length is not a whole number of slots");
        assert_eq!(
            bad(&k, &v[..v.len() - 1]),
            "length is not a whole number of slots"
        );
        assert_eq!(bad(&u64::MAX.to_be_bytes(), &v), "ids beyond the id space");
    }

    proptest! {
        #[test]
        fn parse_never_panics(key in proptest::collection::vec(any::<u8>(), 0..12),
                              value in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(r) = Run::parse(&key, &value) {
                let _ = (r.get(r.first()), r.last_live(), r.live_from(0).count());
                let _ = r.without(&[r.first(), r.last()]);
            }
        }

        #[test]
        fn removal_keeps_exactly_the_other_records(
            first in 0u64..1_000_000,
            n in 1u64..40,
            gone in proptest::collection::btree_set(0u64..40, 0..40),
        ) {
            let (k, v) = run_of(first, n);
            let r = Run::parse(&k, &v).unwrap();
            let ids: Vec<u64> = gone.iter().map(|g| first + g).collect();
            let want: Vec<u64> = (first..first + n).filter(|i| !ids.contains(i)).collect();
            let got: Vec<u64> = match r.without(&ids) {
                Edit::Keep => r.live_from(0).map(|(i, _)| i).collect(),
                Edit::Delete => Vec::new(),
                Edit::Replace { first: f, value } => {
                    let r2 = Run::parse(&f.to_be_bytes(), &value).unwrap();
                    prop_assert_eq!(Some(f), want.first().copied());
                    prop_assert_eq!(Some(r2.last()), want.last().copied());
                    r2.live_from(0).map(|(i, s)| { assert_eq!(s, slot(i)); i }).collect()
                }
            };
            prop_assert_eq!(got, want);
        }
    }
}
