//! The canonical encoding of an exchange's data objects (the files the signed ASiC manifest
//! lists), stored as a record's payload.
//!
//! ```text
//! payload = "TBDO" | version u8 (1) | count u16 | object*
//! object  = name str | mime type str | data bytes
//! str     = len u32 | UTF-8 bytes        bytes = len u64 | bytes
//! ```
//!
//! Integers are big-endian. Names are container entry names (checked with
//! `pki::asic::check_name`, never under `META-INF/`, no duplicates ignoring case); the order is
//! the manifest's. The decoder is strict (anything it accepts re-encodes to the same bytes) and
//! never panics, so an evidence verifier can rebuild a record's exact bytes from a container.

use trustbus_pki::asic;

/// Leading bytes of an encoded data-object list.
pub const MAGIC: [u8; 4] = *b"TBDO";
/// The only version so far.
pub const VERSION: u8 = 1;
/// Most data objects in one message.
pub const MAX_OBJECTS: usize = 64;
/// Longest name or MIME type.
const MAX_STR: usize = 255;

/// One data object: a file of the signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataObject {
    /// Entry name in the container (`message.json`, `payload-head`, `payload-body`).
    pub name: String,
    /// Media type, as listed in the manifest.
    pub mime_type: String,
    /// The bytes exactly as signed.
    pub data: Vec<u8>,
}

impl DataObject {
    /// A data object.
    pub fn new(name: impl Into<String>, mime_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            mime_type: mime_type.into(),
            data,
        }
    }
}

/// Why a data-object list could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataObjectError {
    /// The bytes are not a data-object list.
    #[error("malformed data-object list: {0}")]
    Malformed(String),
    /// A name is unsafe, reserved or repeated.
    #[error("bad data-object name {0:?}")]
    BadName(String),
    /// A MIME type is empty, too long or has control characters.
    #[error("bad MIME type {0:?}")]
    BadMimeType(String),
    /// More objects than [`MAX_OBJECTS`] (or none).
    #[error("a message has 1 to {MAX_OBJECTS} data objects, not {0}")]
    Count(usize),
}

fn check_list(objects: &[DataObject]) -> Result<(), DataObjectError> {
    if objects.is_empty() || objects.len() > MAX_OBJECTS {
        return Err(DataObjectError::Count(objects.len()));
    }
    for (i, o) in objects.iter().enumerate() {
        let reserved = o.name.eq_ignore_ascii_case("mimetype")
            || o.name.to_ascii_uppercase().starts_with("META-INF/")
            || o.name.ends_with('/');
        if reserved || o.name.len() > MAX_STR || asic::check_name(&o.name).is_err() {
            return Err(DataObjectError::BadName(o.name.clone()));
        }
        if objects[..i]
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(&o.name))
        {
            return Err(DataObjectError::BadName(o.name.clone()));
        }
        if o.mime_type.is_empty()
            || o.mime_type.len() > MAX_STR
            || o.mime_type.chars().any(|c| c.is_control())
        {
            return Err(DataObjectError::BadMimeType(o.mime_type.clone()));
        }
    }
    Ok(())
}

/// Encodes a data-object list canonically.
pub fn encode(objects: &[DataObject]) -> Result<Vec<u8>, DataObjectError> {
    check_list(objects)?;
    let size: usize = objects
        .iter()
        .map(|o| 16 + o.name.len() + o.mime_type.len() + o.data.len())
        .sum();
    let mut out = Vec::with_capacity(7 + size);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    // check_list bounds the count by MAX_OBJECTS, so it fits.
    out.extend_from_slice(&(objects.len() as u16).to_be_bytes());
    for o in objects {
        for s in [&o.name, &o.mime_type] {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&(o.data.len() as u64).to_be_bytes());
        out.extend_from_slice(&o.data);
    }
    Ok(out)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DataObjectError> {
        if self.rest.len() < n {
            return Err(DataObjectError::Malformed(format!("truncated {what}")));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DataObjectError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn string(&mut self, what: &str) -> Result<String, DataObjectError> {
        let len = u32::from_be_bytes(self.array(what)?) as usize;
        if len > MAX_STR {
            return Err(DataObjectError::Malformed(format!("{what} too long")));
        }
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| DataObjectError::Malformed(format!("{what} is not UTF-8")))
    }
}

/// Decodes a data-object list; strict (see the module documentation) and never panics.
pub fn decode(bytes: &[u8]) -> Result<Vec<DataObject>, DataObjectError> {
    let mut r = Reader { rest: bytes };
    if r.array::<4>("magic")? != MAGIC {
        return Err(DataObjectError::Malformed("not a data-object list".into()));
    }
    let version = r.array::<1>("version")?[0];
    if version != VERSION {
        return Err(DataObjectError::Malformed(format!("version {version}")));
    }
    let count = usize::from(u16::from_be_bytes(r.array("count")?));
    if count == 0 || count > MAX_OBJECTS {
        return Err(DataObjectError::Count(count));
    }
    let mut objects = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.string("name")?;
        let mime_type = r.string("MIME type")?;
        let len = usize::try_from(u64::from_be_bytes(r.array("data length")?))
            .map_err(|_| DataObjectError::Malformed("data length".into()))?;
        let data = r.take(len, "data")?.to_vec();
        objects.push(DataObject {
            name,
            mime_type,
            data,
        });
    }
    if !r.rest.is_empty() {
        return Err(DataObjectError::Malformed(
            "bytes after the last object".into(),
        ));
    }
    check_list(&objects)?;
    Ok(objects)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<DataObject> {
        vec![
            DataObject::new("message.json", "application/json", b"{}".to_vec()),
            DataObject::new("payload-head", "text/xml", b"<x/>".to_vec()),
        ]
    }

    #[test]
    fn round_trip_and_rules() {
        let b = encode(&sample()).unwrap();
        assert_eq!(decode(&b).unwrap(), sample());
        assert_eq!(encode(&[]), Err(DataObjectError::Count(0)));
        for bad in ["META-INF/x", "mimetype", "../x", "a/", ""] {
            let o = vec![DataObject::new(bad, "a/b", vec![])];
            assert!(
                matches!(encode(&o), Err(DataObjectError::BadName(_))),
                "{bad}"
            );
        }
        let mut dup = sample();
        dup[1].name = "Message.JSON".into();
        assert!(matches!(encode(&dup), Err(DataObjectError::BadName(_))));
        let mut trailing = b;
        trailing.push(0);
        assert!(decode(&trailing).is_err());
    }

    fn arb_objects() -> impl Strategy<Value = Vec<DataObject>> {
        prop::collection::vec(
            (
                "[a-z][a-z0-9.-]{0,20}",
                "[a-z]{1,8}/[a-z.+-]{1,20}",
                prop::collection::vec(any::<u8>(), 0..64),
            ),
            1..5,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (n, m, d))| DataObject::new(format!("{n}{i}"), m, d))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(objs in arb_objects()) {
            let b = encode(&objs).unwrap();
            prop_assert_eq!(decode(&b).unwrap(), objs);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let mut with_magic = b"TBDO\x01".to_vec();
            with_magic.extend_from_slice(&bytes);
            if let Ok(objs) = decode(&with_magic) {
                prop_assert_eq!(encode(&objs).unwrap(), with_magic);
            }
        }

        #[test]
        fn mutations_never_panic_and_stay_canonical(objs in arb_objects(), at in any::<prop::sample::Index>(), x in 1u8..=255) {
            let mut b = encode(&objs).unwrap();
            let i = at.index(b.len());
            b[i] ^= x;
            if let Ok(o) = decode(&b) {
                prop_assert_eq!(encode(&o).unwrap(), b);
            }
        }
    }
}
