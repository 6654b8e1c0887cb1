//! Plain stored (uncompressed) zip files for bundles that are not ASiC containers themselves:
//! the request + response pair of an exchange and the verification configuration. Evidence
//! containers are written by `pki::asic`.

/// Why a zip could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zip: {0}")]
pub struct ZipError(pub String);

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const EOCD: u32 = 0x0605_4b50;
/// 1980-01-01 00:00: the files are deterministic.
const DOS_DATE: u16 = (1 << 5) | 1;

/// Writes `(name, data)` entries, stored, in order.
pub fn write(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, ZipError> {
    let too_big = || ZipError("entry or archive too large for a zip without ZIP64".into());
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        let crc = crc32fast::hash(data);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&DOS_DATE.to_le_bytes());
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&name_len.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&LOCAL.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&CENTRAL.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend_from_slice(&[0u8; 6]); // comment len, disk, internal attrs
        central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = u32::try_from(out.len()).map_err(|_| too_big())?;
    let cd_size = u32::try_from(central.len()).map_err(|_| too_big())?;
    let count = u16::try_from(entries.len()).map_err(|_| too_big())?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&EOCD.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, ZipError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or_else(|| ZipError("truncated".into()))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, ZipError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| ZipError("truncated".into()))
}

/// Reads a stored zip (as [`write`] makes them): entries in central-directory order, every
/// CRC checked. Compressed entries are refused.
pub fn read(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ZipError> {
    let bad = |s: &str| ZipError(s.to_owned());
    let eocd = bytes
        .len()
        .checked_sub(22)
        .ok_or_else(|| bad("too short"))?;
    if u32_at(bytes, eocd)? != EOCD {
        return Err(bad(
            "no end of central directory (comments are not supported)",
        ));
    }
    let count = usize::from(u16_at(bytes, eocd + 10)?);
    let mut at = u32_at(bytes, eocd + 16)? as usize;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(bytes, at)? != CENTRAL {
            return Err(bad("bad central directory entry"));
        }
        let method = u16_at(bytes, at + 10)?;
        let crc = u32_at(bytes, at + 16)?;
        let size = u32_at(bytes, at + 20)? as usize;
        let name_len = usize::from(u16_at(bytes, at + 28)?);
        let extra_len = usize::from(u16_at(bytes, at + 30)?);
        let comment_len = usize::from(u16_at(bytes, at + 32)?);
        let local = u32_at(bytes, at + 42)? as usize;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| bad("truncated name"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("name is not UTF-8"))?;
        if method != 0 {
            return Err(ZipError(format!(
                "{name}: compressed entries are not supported"
            )));
        }
        if u32_at(bytes, local)? != LOCAL {
            return Err(bad("bad local header"));
        }
        let lname = usize::from(u16_at(bytes, local + 26)?);
        let lextra = usize::from(u16_at(bytes, local + 28)?);
        let start = local + 30 + lname + lextra;
        let data = bytes
            .get(start..start + size)
            .ok_or_else(|| bad("truncated entry"))?;
        if crc32fast::hash(data) != crc {
            return Err(ZipError(format!("{name}: CRC mismatch")));
        }
        out.push((name, data.to_vec()));
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let e = vec![
            ("a.txt".to_owned(), b"hello".to_vec()),
            ("b/c".to_owned(), vec![]),
        ];
        let z = write(&e).unwrap();
        assert_eq!(read(&z).unwrap(), e);
        for i in 0..z.len() {
            let mut y = z.clone();
            y[i] ^= 0xff;
            let _ = read(&y);
        }
        assert!(read(b"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn read_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = read(&bytes);
        }

        #[test]
        fn mutated_zips_never_panic(at in proptest::prelude::any::<proptest::sample::Index>(), x in 1u8..=255) {
            let mut z = write(&[("a".to_owned(), b"hello".to_vec()), ("b".to_owned(), vec![7; 30])]).unwrap();
            let i = at.index(z.len());
            z[i] ^= x;
            let _ = read(&z);
        }
    }
}
