//! A minimal ZIP writer and a defensive ZIP reader, enough for ASiC containers.
//!
//! The writer stores entries uncompressed (method 0, STORED), which is what ASiC requires for
//! `mimetype` and is fine for already compact evidence. The reader accepts STORED entries only
//! (DEFLATE is reported as unsupported, never inflated, so there is no decompression bomb to
//! defuse), no ZIP64, no encryption, no multi-disk archives, and checks that entries do not
//! overlap, that sizes agree between local and central headers, and every CRC-32.

/// Why an archive was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZipError {
    /// Structurally broken (bad signatures, offsets, sizes).
    Malformed(String),
    /// A feature we do not accept (compression, encryption, ZIP64, multi-disk).
    Unsupported(String),
    /// A size or count limit was exceeded.
    TooLarge(String),
}

/// Limits on what the reader accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ZipLimits {
    pub(crate) max_entries: usize,
    pub(crate) max_entry_size: u64,
    pub(crate) max_total_size: u64,
    pub(crate) max_name_len: usize,
}

/// One entry as read.
#[derive(Debug, Clone)]
pub(crate) struct ZipEntry {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
    /// Compression method from the central directory (0 = STORED).
    pub(crate) method: u16,
    /// Offset of the local header.
    pub(crate) offset: u64,
}

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
/// DOS date 1980-01-01, time 00:00 (the writer is deterministic).
const DOS_DATE: u16 = (1 << 5) | 1;

fn crc32(data: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE 802.3, reflected), table built once per call site via const.
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c ^ 0xffff_ffff
}

/// Writes a STORED zip of `entries` (name, data), in order.
pub(crate) fn write_stored(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, ZipError> {
    let too_large = |w: &str| ZipError::TooLarge(format!("{w} does not fit a non-ZIP64 archive"));
    if entries.len() > usize::from(u16::MAX) {
        return Err(too_large("entry count"));
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = u32::try_from(out.len()).map_err(|_| too_large("archive"))?;
        let size = u32::try_from(data.len()).map_err(|_| too_large("entry"))?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_large("name"))?;
        let crc = crc32(data);
        // local file header
        out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        out.extend_from_slice(&10u16.to_le_bytes()); // version needed 1.0
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
        out.extend_from_slice(&0u16.to_le_bytes()); // STORED
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // no extra field
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // central directory header
        central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        central.extend_from_slice(&10u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes()); // rw-r--r--
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = u32::try_from(out.len()).map_err(|_| too_large("archive"))?;
    let cd_size = u32::try_from(central.len()).map_err(|_| too_large("directory"))?;
    let count = u16::try_from(entries.len()).map_err(|_| too_large("entry count"))?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&EOCD_SIG.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ZipError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| ZipError::Malformed("truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, ZipError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ZipError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads a zip archive defensively; entries come back in central-directory order.
pub(crate) fn read(buf: &[u8], limits: &ZipLimits) -> Result<Vec<ZipEntry>, ZipError> {
    let malformed = |s: &str| ZipError::Malformed(s.to_owned());
    if buf.len() < 22 {
        return Err(malformed("too short for a zip archive"));
    }
    // The end-of-central-directory record sits at the end, before an optional comment.
    let min_start = buf.len().saturating_sub(22 + usize::from(u16::MAX));
    let mut eocd = None;
    let mut p = buf.len() - 22;
    loop {
        if buf[p..p + 4] == EOCD_SIG.to_le_bytes() {
            let comment_len = usize::from(u16::from_le_bytes([buf[p + 20], buf[p + 21]]));
            if p + 22 + comment_len == buf.len() {
                eocd = Some(p);
                break;
            }
        }
        if p == min_start {
            break;
        }
        p -= 1;
    }
    let eocd = eocd.ok_or_else(|| malformed("no end of central directory"))?;
    let mut c = Cursor::at(buf, eocd + 4);
    let disk = c.u16()?;
    let cd_disk = c.u16()?;
    let count_disk = c.u16()?;
    let count = c.u16()?;
    let cd_size = c.u32()?;
    let cd_offset = c.u32()?;
    if disk != 0 || cd_disk != 0 || count_disk != count {
        return Err(ZipError::Unsupported("multi-disk archive".into()));
    }
    if count == u16::MAX || cd_size == u32::MAX || cd_offset == u32::MAX {
        return Err(ZipError::Unsupported("ZIP64".into()));
    }
    if usize::from(count) > limits.max_entries {
        return Err(ZipError::TooLarge(format!("{count} entries")));
    }
    let cd_offset = usize::try_from(cd_offset).map_err(|_| malformed("offset"))?;
    let cd_end = cd_offset
        .checked_add(usize::try_from(cd_size).map_err(|_| malformed("size"))?)
        .filter(|e| *e <= eocd)
        .ok_or_else(|| malformed("central directory out of bounds"))?;

    let mut c = Cursor::at(&buf[..cd_end], cd_offset);
    let mut entries = Vec::with_capacity(usize::from(count));
    let mut total: u64 = 0;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for _ in 0..count {
        if c.u32()? != CENTRAL_SIG {
            return Err(malformed("bad central directory signature"));
        }
        let _made_by = c.u16()?;
        let _needed = c.u16()?;
        let flags = c.u16()?;
        let method = c.u16()?;
        let _time = c.u16()?;
        let _date = c.u16()?;
        let crc = c.u32()?;
        let csize = c.u32()?;
        let usize_ = c.u32()?;
        let name_len = usize::from(c.u16()?);
        let extra_len = usize::from(c.u16()?);
        let comment_len = usize::from(c.u16()?);
        let disk_start = c.u16()?;
        let _int_attr = c.u16()?;
        let _ext_attr = c.u32()?;
        let offset = c.u32()?;
        let name_bytes = c.take(name_len)?;
        c.take(extra_len)?;
        c.take(comment_len)?;
        if flags & 0x0001 != 0 || flags & 0x0040 != 0 {
            return Err(ZipError::Unsupported("encrypted entry".into()));
        }
        if csize == u32::MAX || usize_ == u32::MAX || offset == u32::MAX {
            return Err(ZipError::Unsupported("ZIP64".into()));
        }
        if disk_start != 0 {
            return Err(ZipError::Unsupported("multi-disk archive".into()));
        }
        if name_len > limits.max_name_len {
            return Err(ZipError::TooLarge("entry name".into()));
        }
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| malformed("entry name is not UTF-8"))?
            .to_owned();
        if u64::from(usize_) > limits.max_entry_size || u64::from(csize) > limits.max_entry_size {
            return Err(ZipError::TooLarge(format!("entry {name}")));
        }
        total += u64::from(usize_);
        if total > limits.max_total_size {
            return Err(ZipError::TooLarge("total uncompressed size".into()));
        }

        // local header
        let offset_us = usize::try_from(offset).map_err(|_| malformed("offset"))?;
        let mut l = Cursor::at(&buf[..cd_offset], offset_us);
        if l.u32()? != LOCAL_SIG {
            return Err(malformed("bad local header signature"));
        }
        let _needed = l.u16()?;
        let l_flags = l.u16()?;
        let l_method = l.u16()?;
        let _t = l.u16()?;
        let _d = l.u16()?;
        let l_crc = l.u32()?;
        let l_csize = l.u32()?;
        let l_usize = l.u32()?;
        let l_name_len = usize::from(l.u16()?);
        let l_extra_len = usize::from(l.u16()?);
        let l_name = l.take(l_name_len)?;
        l.take(l_extra_len)?;
        if l_name != name_bytes || l_method != method {
            return Err(malformed("local and central headers disagree"));
        }
        // With a data descriptor (flag bit 3) the local sizes may be zero.
        if l_flags & 0x0008 == 0 && (l_crc != crc || l_csize != csize || l_usize != usize_) {
            return Err(malformed("local and central sizes disagree"));
        }
        let start = l.pos;
        let data = l.take(usize::try_from(csize).map_err(|_| malformed("size"))?)?;
        spans.push((offset_us, start + data.len()));
        let data = match method {
            0 => {
                if csize != usize_ {
                    return Err(malformed("stored entry sizes differ"));
                }
                if crc32(data) != crc {
                    return Err(malformed(&format!("CRC mismatch in {name}")));
                }
                data.to_vec()
            }
            // Compressed entries are reported, not inflated; the caller decides.
            _ => Vec::new(),
        };
        entries.push(ZipEntry {
            name,
            data,
            method,
            offset: u64::from(offset),
        });
    }
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(malformed("overlapping entries"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ZipLimits = ZipLimits {
        max_entries: 100,
        max_entry_size: 1 << 20,
        max_total_size: 1 << 22,
        max_name_len: 255,
    };

    #[test]
    fn crc_known_answer() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn round_trip_and_limits() {
        let z = write_stored(&[
            ("a.txt".into(), b"hello".to_vec()),
            ("dir/b".into(), vec![0; 1000]),
        ])
        .unwrap();
        let e = read(&z, &LIMITS).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "a.txt");
        assert_eq!(e[0].offset, 0);
        assert_eq!(e[1].data.len(), 1000);
        let small = ZipLimits {
            max_entry_size: 999,
            ..LIMITS
        };
        assert!(matches!(read(&z, &small), Err(ZipError::TooLarge(_))));
        let mut bad = z.clone();
        bad[40] ^= 1; // inside the first entry's data
        assert!(matches!(read(&bad, &LIMITS), Err(ZipError::Malformed(_))));
        for n in 0..z.len() {
            let _ = read(&z[..n], &LIMITS);
        }
    }
}
