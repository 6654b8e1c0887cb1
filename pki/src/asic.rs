//! ASiC-E containers with a CAdES (CMS) signature over an ASiC manifest (ETSI EN 319 162-1).
//!
//! Layout: `mimetype` (first, STORED, `application/vnd.etsi.asic-e+zip`), the data files,
//! `META-INF/ASiCManifest.xml` listing each data file's digest, `META-INF/signature001.p7s`
//! (a detached CMS signature over the manifest bytes), and optional further `META-INF/`
//! entries (a timestamp token, a Merkle proof) that the manifest does not cover.

use base64::Engine;
use quick_xml::events::Event;
use time::OffsetDateTime;

use crate::cms::{self, CmsError, CmsSigner, SignatureTimestamper, VerifiedCms};
use crate::digest::DigestAlgorithm;
use crate::zip::{self, ZipError, ZipLimits};

/// The ASiC-E media type, the content of `mimetype`.
pub const MIMETYPE: &str = "application/vnd.etsi.asic-e+zip";
/// Where the manifest lives.
pub const MANIFEST_PATH: &str = "META-INF/ASiCManifest.xml";
/// Where the signature lives.
pub const SIGNATURE_PATH: &str = "META-INF/signature001.p7s";

const ASIC_NS: &str = "http://uri.etsi.org/02918/v1.2.1#";
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Why a container could not be written or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AsicError {
    /// The zip structure is broken.
    #[error("malformed zip: {0}")]
    Zip(String),
    /// A zip feature we do not accept (compressed data entries, encryption, ZIP64).
    #[error("unsupported zip feature: {0}")]
    Unsupported(String),
    /// The container exceeds a size or count limit.
    #[error("container too large: {0}")]
    TooLarge(String),
    /// An entry name that could escape the extraction directory or is otherwise unsafe.
    #[error("unsafe entry name {0:?}")]
    UnsafeName(String),
    /// Two entries with the same name (compared case-insensitively).
    #[error("duplicate entry {0:?}")]
    DuplicateEntry(String),
    /// No `mimetype` entry.
    #[error("no mimetype entry")]
    MissingMimetype,
    /// `mimetype` is not the first entry at offset 0.
    #[error("mimetype is not the first entry")]
    MisplacedMimetype,
    /// `mimetype` is compressed.
    #[error("mimetype is compressed")]
    CompressedMimetype,
    /// `mimetype` has the wrong content.
    #[error("mimetype is {0:?}, not {MIMETYPE}")]
    WrongMimetype(String),
    /// The manifest is missing.
    #[error("no META-INF/ASiCManifest.xml")]
    MissingManifest,
    /// The signature named by the manifest is missing.
    #[error("signature {0:?} not found")]
    MissingSignature(String),
    /// The manifest is not the XML we expect.
    #[error("malformed manifest: {0}")]
    MalformedManifest(String),
    /// A data file is not listed in the manifest.
    #[error("data file {0:?} is not covered by the manifest")]
    UncoveredFile(String),
    /// The manifest lists a file that is not in the container.
    #[error("manifest lists {0:?}, which is not in the container")]
    MissingDataFile(String),
    /// A data file's digest differs from the manifest.
    #[error("digest of {0:?} does not match the manifest")]
    DigestMismatch(String),
    /// The signature over the manifest failed.
    #[error("manifest signature: {0}")]
    Signature(#[from] CmsError),
}

impl From<ZipError> for AsicError {
    fn from(e: ZipError) -> Self {
        match e {
            ZipError::Malformed(s) => Self::Zip(s),
            ZipError::Unsupported(s) => Self::Unsupported(s),
            ZipError::TooLarge(s) => Self::TooLarge(s),
        }
    }
}

/// Limits applied when reading a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsicLimits {
    /// Most entries.
    pub max_entries: usize,
    /// Largest single entry, bytes.
    pub max_entry_size: u64,
    /// Largest sum of entry sizes, bytes.
    pub max_total_size: u64,
}

impl Default for AsicLimits {
    /// 1,000 entries, 256 MiB per entry, 1 GiB in total.
    fn default() -> Self {
        Self {
            max_entries: 1000,
            max_entry_size: 256 << 20,
            max_total_size: 1 << 30,
        }
    }
}

/// A data file in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Path inside the container (relative, `/`-separated).
    pub name: String,
    /// Its media type, as recorded in the manifest.
    pub mime_type: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Checks that an entry name is safe to extract anywhere: relative, no `..`, no backslash,
/// no drive letter, no empty or dot segments, no control characters.
pub fn check_name(name: &str) -> Result<(), AsicError> {
    let bad = || AsicError::UnsafeName(name.to_owned());
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains(':')
        || name.chars().any(|c| c.is_control())
    {
        return Err(bad());
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    if trimmed
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad());
    }
    Ok(())
}

/// Appends `s` with the five XML special characters escaped.
fn push_xml_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// Appends a path percent-encoded for a manifest URI (RFC 3986 unreserved characters and `/`
/// kept).
fn push_uri_encoded(out: &mut String, name: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

fn uri_decode(uri: &str) -> Result<String, AsicError> {
    let bytes = uri.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AsicError::MalformedManifest(format!("bad URI {uri:?}")))?;
            out.push(h);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AsicError::MalformedManifest(format!("bad URI {uri:?}")))
}

/// The manifest [`AsicBuilder::manifest`] would write for data files with these names, MIME
/// types and precomputed digests (under `digest`), in this order. Lets a sender that hashes
/// while streaming build the manifest without holding the files in memory, and lets a
/// receiver check received data objects by comparing manifests byte for byte.
pub fn manifest_from_digests(digest: DigestAlgorithm, files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    // Written into one buffer: both security servers build a manifest for every message.
    let mut x = String::with_capacity(400 + 300 * files.len());
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n");
    x.push_str("<asic:ASiCManifest xmlns:asic=\"");
    x.push_str(ASIC_NS);
    x.push_str("\" xmlns:ds=\"");
    x.push_str(DS_NS);
    x.push_str("\">\n  <asic:SigReference URI=\"");
    x.push_str(SIGNATURE_PATH);
    x.push_str("\" MimeType=\"application/pkcs7-signature\"/>\n");
    let mut uri = String::new();
    for (name, mime, d) in files {
        uri.clear();
        push_uri_encoded(&mut uri, name);
        x.push_str("  <asic:DataObjectReference URI=\"");
        push_xml_escaped(&mut x, &uri);
        x.push_str("\" MimeType=\"");
        push_xml_escaped(&mut x, mime);
        x.push_str("\">\n    <ds:DigestMethod Algorithm=\"");
        x.push_str(digest.uri());
        x.push_str("\"/>\n    <ds:DigestValue>");
        base64::engine::general_purpose::STANDARD.encode_string(d, &mut x);
        x.push_str("</ds:DigestValue>\n  </asic:DataObjectReference>\n");
    }
    x.push_str("</asic:ASiCManifest>\n");
    x.into_bytes()
}

/// Builds ASiC-E containers.
#[derive(Debug, Clone)]
pub struct AsicBuilder {
    digest: DigestAlgorithm,
    files: Vec<DataFile>,
    meta_inf: Vec<(String, Vec<u8>)>,
}

impl AsicBuilder {
    /// An empty container whose manifest uses `digest` (SHA-256 or SHA-512).
    pub fn new(digest: DigestAlgorithm) -> Self {
        Self {
            digest,
            files: Vec::new(),
            meta_inf: Vec::new(),
        }
    }

    fn check_new(&self, full: &str) -> Result<(), AsicError> {
        check_name(full)?;
        let taken = |n: &str| n.eq_ignore_ascii_case(full);
        if taken("mimetype")
            || taken(MANIFEST_PATH)
            || taken(SIGNATURE_PATH)
            || self.files.iter().any(|f| taken(&f.name))
            || self.meta_inf.iter().any(|(n, _)| taken(n))
        {
            return Err(AsicError::DuplicateEntry(full.to_owned()));
        }
        Ok(())
    }

    /// Adds a data file (not under `META-INF/`).
    pub fn add_file(
        &mut self,
        name: &str,
        mime_type: &str,
        data: Vec<u8>,
    ) -> Result<&mut Self, AsicError> {
        if name.to_ascii_uppercase().starts_with("META-INF/") || name.ends_with('/') {
            return Err(AsicError::UnsafeName(name.to_owned()));
        }
        self.check_new(name)?;
        self.files.push(DataFile {
            name: name.to_owned(),
            mime_type: mime_type.to_owned(),
            data,
        });
        Ok(self)
    }

    /// Adds an extra entry `META-INF/<name>` that the manifest does not cover (for example
    /// `timestamp.tst` or `merkle-proof.json`).
    pub fn add_meta_inf(&mut self, name: &str, data: Vec<u8>) -> Result<&mut Self, AsicError> {
        let full = format!("META-INF/{name}");
        self.check_new(&full)?;
        self.meta_inf.push((full, data));
        Ok(self)
    }

    /// The manifest bytes (deterministic for the same files, in insertion order).
    pub fn manifest(&self) -> Vec<u8> {
        let digests: Vec<(&str, &str, Vec<u8>)> = self
            .files
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.mime_type.as_str(),
                    self.digest.digest(&f.data),
                )
            })
            .collect();
        let refs: Vec<(&str, &str, &[u8])> = digests
            .iter()
            .map(|(n, m, d)| (*n, *m, d.as_slice()))
            .collect();
        manifest_from_digests(self.digest, &refs)
    }

    /// Writes the container with a signature made elsewhere over [`Self::manifest`].
    pub fn build_with_signature(&self, signature_der: &[u8]) -> Result<Vec<u8>, AsicError> {
        let mut entries = vec![("mimetype".to_owned(), MIMETYPE.as_bytes().to_vec())];
        entries.extend(self.files.iter().map(|f| (f.name.clone(), f.data.clone())));
        entries.push((MANIFEST_PATH.to_owned(), self.manifest()));
        entries.push((SIGNATURE_PATH.to_owned(), signature_der.to_vec()));
        entries.extend(self.meta_inf.iter().cloned());
        Ok(zip::write_stored(&entries)?)
    }

    /// Signs the manifest with `signer` and writes the container.
    pub fn sign(
        &self,
        signer: &CmsSigner<'_>,
        signing_time: OffsetDateTime,
        timestamper: Option<&dyn SignatureTimestamper>,
    ) -> Result<Vec<u8>, AsicError> {
        let sig = signer.sign_detached(&self.manifest(), signing_time, timestamper)?;
        self.build_with_signature(&sig)
    }
}

/// A container that passed the structural checks and whose data files match the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsicContainer {
    /// The data files, in manifest order.
    pub data_files: Vec<DataFile>,
    /// The manifest bytes (what the signature covers).
    pub manifest: Vec<u8>,
    /// The detached CMS signature over the manifest.
    pub signature: Vec<u8>,
    /// Other `META-INF/` entries (full names), not covered by the manifest.
    pub meta_inf: Vec<(String, Vec<u8>)>,
}

struct ManifestRef {
    uri: String,
    mime: String,
    alg: Option<DigestAlgorithm>,
    digest: Option<Vec<u8>>,
}

fn parse_manifest(xml: &[u8]) -> Result<(String, Vec<ManifestRef>), AsicError> {
    let bad = |s: String| AsicError::MalformedManifest(s);
    let text = std::str::from_utf8(xml).map_err(|_| bad("not UTF-8".into()))?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut sig_ref: Option<String> = None;
    let mut refs: Vec<ManifestRef> = Vec::new();
    let mut in_ref = false;
    let mut in_digest_value = false;
    let mut depth = 0usize;
    let mut saw_root = false;
    loop {
        let ev = reader.read_event().map_err(|e| bad(format!("XML: {e}")))?;
        match ev {
            Event::DocType(_) => return Err(bad("DOCTYPE not allowed".into())),
            Event::GeneralRef(_) if in_digest_value => {
                return Err(bad("entity in DigestValue".into()));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(ev, Event::Empty(_));
                let local = e.local_name();
                let local: &str = local.as_ref();
                let mut attrs = std::collections::HashMap::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| bad(format!("attribute: {e}")))?;
                    let key = a.key.local_name();
                    let key: &str = key.as_ref();
                    let v = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| bad(format!("attribute: {e}")))?
                        .into_owned();
                    attrs.insert(key.to_owned(), v);
                }
                match (depth, local) {
                    (0, "ASiCManifest") => saw_root = true,
                    (1, "SigReference") => {
                        if sig_ref.is_some() {
                            return Err(bad("more than one SigReference".into()));
                        }
                        sig_ref = Some(
                            attrs
                                .remove("URI")
                                .ok_or_else(|| bad("SigReference without URI".into()))?,
                        );
                    }
                    (1, "DataObjectReference") => {
                        in_ref = !is_empty;
                        refs.push(ManifestRef {
                            uri: attrs
                                .remove("URI")
                                .ok_or_else(|| bad("DataObjectReference without URI".into()))?,
                            mime: attrs.remove("MimeType").unwrap_or_default(),
                            alg: None,
                            digest: None,
                        });
                    }
                    (2, "DigestMethod") if in_ref => {
                        let alg = attrs
                            .remove("Algorithm")
                            .ok_or_else(|| bad("DigestMethod without Algorithm".into()))?;
                        let alg = DigestAlgorithm::from_uri(&alg)
                            .filter(|a| *a != DigestAlgorithm::Sha1)
                            .ok_or_else(|| bad(format!("digest algorithm {alg}")))?;
                        if let Some(r) = refs.last_mut() {
                            r.alg = Some(alg);
                        }
                    }
                    (2, "DigestValue") if in_ref => in_digest_value = !is_empty,
                    (0, other) => return Err(bad(format!("root element {other}"))),
                    _ => {}
                }
                if !is_empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    in_ref = false;
                }
                in_digest_value = false;
            }
            Event::Text(t) if in_digest_value => {
                let s: String = t
                    .xml10_content()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                let d = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| bad(format!("DigestValue: {e}")))?;
                if let Some(r) = refs.last_mut() {
                    if r.digest.is_some() {
                        return Err(bad("two DigestValues".into()));
                    }
                    r.digest = Some(d);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(bad("no ASiCManifest element".into()));
    }
    let sig_ref = sig_ref.ok_or_else(|| bad("no SigReference".into()))?;
    Ok((sig_ref, refs))
}

impl AsicContainer {
    /// Reads and checks a container: zip structure and limits, entry names, `mimetype`,
    /// duplicates, the manifest, and that every data file is covered with a matching digest.
    /// The signature is not checked here; call [`Self::verify_signature`].
    pub fn read(bytes: &[u8], limits: &AsicLimits) -> Result<Self, AsicError> {
        let entries = zip::read(
            bytes,
            &ZipLimits {
                max_entries: limits.max_entries,
                max_entry_size: limits.max_entry_size,
                max_total_size: limits.max_total_size,
                max_name_len: 255,
            },
        )?;
        // names and duplicates first: nothing else matters if a name is unsafe
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            check_name(&e.name)?;
            if !seen.insert(e.name.to_lowercase()) {
                return Err(AsicError::DuplicateEntry(e.name.clone()));
            }
        }
        let first = entries.first().ok_or(AsicError::MissingMimetype)?;
        if first.name != "mimetype" {
            return Err(if entries.iter().any(|e| e.name == "mimetype") {
                AsicError::MisplacedMimetype
            } else {
                AsicError::MissingMimetype
            });
        }
        if first.offset != 0 {
            return Err(AsicError::MisplacedMimetype);
        }
        if first.method != 0 {
            return Err(AsicError::CompressedMimetype);
        }
        if first.data != MIMETYPE.as_bytes() {
            return Err(AsicError::WrongMimetype(
                String::from_utf8_lossy(&first.data).into_owned(),
            ));
        }
        for e in &entries[1..] {
            if e.method != 0 {
                return Err(AsicError::Unsupported(format!(
                    "entry {} uses compression method {}",
                    e.name, e.method
                )));
            }
        }
        let manifest = entries
            .iter()
            .find(|e| e.name == MANIFEST_PATH)
            .ok_or(AsicError::MissingManifest)?
            .data
            .clone();
        let (sig_uri, refs) = parse_manifest(&manifest)?;
        let sig_name = uri_decode(&sig_uri)?;
        if !sig_name.starts_with("META-INF/") {
            return Err(AsicError::MalformedManifest(
                "signature must be under META-INF/".into(),
            ));
        }
        let signature = entries
            .iter()
            .find(|e| e.name == sig_name)
            .ok_or_else(|| AsicError::MissingSignature(sig_name.clone()))?
            .data
            .clone();

        let mut data_files = Vec::new();
        let mut covered = std::collections::HashSet::new();
        for r in &refs {
            let name = uri_decode(&r.uri)?;
            check_name(&name)?;
            if !covered.insert(name.clone()) {
                return Err(AsicError::MalformedManifest(format!("{name} listed twice")));
            }
            let e = entries
                .iter()
                .find(|e| e.name == name && !e.name.starts_with("META-INF/"))
                .ok_or_else(|| AsicError::MissingDataFile(name.clone()))?;
            let (Some(alg), Some(digest)) = (r.alg, r.digest.as_ref()) else {
                return Err(AsicError::MalformedManifest(format!(
                    "{name} without digest"
                )));
            };
            if alg.digest(&e.data) != *digest {
                return Err(AsicError::DigestMismatch(name));
            }
            data_files.push(DataFile {
                name,
                mime_type: r.mime.clone(),
                data: e.data.clone(),
            });
        }
        let mut meta_inf = Vec::new();
        for e in &entries[1..] {
            let is_dir = e.name.ends_with('/');
            if is_dir {
                if !e.data.is_empty() {
                    return Err(AsicError::UnsafeName(e.name.clone()));
                }
                continue;
            }
            if e.name.starts_with("META-INF/") {
                if e.name != MANIFEST_PATH && e.name != sig_name {
                    meta_inf.push((e.name.clone(), e.data.clone()));
                }
            } else if !covered.contains(&e.name) {
                return Err(AsicError::UncoveredFile(e.name.clone()));
            }
        }
        Ok(Self {
            data_files,
            manifest,
            signature,
            meta_inf,
        })
    }

    /// Verifies the CMS signature over the manifest at time `now`.
    pub fn verify_signature(&self, now: OffsetDateTime) -> Result<VerifiedCms, AsicError> {
        Ok(cms::verify_detached(&self.signature, &self.manifest, now)?)
    }

    /// An extra `META-INF/` entry by its name under `META-INF/`.
    pub fn meta_inf(&self, name: &str) -> Option<&[u8]> {
        let full = format!("META-INF/{name}");
        self.meta_inf
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, d)| d.as_slice())
    }

    /// A data file by name.
    pub fn data_file(&self, name: &str) -> Option<&DataFile> {
        self.data_files.iter().find(|f| f.name == name)
    }
}

/// Writes a STORED zip of `(name, data)` entries with no checks at all, so that tests and
/// fuzzers can build hostile containers. Never use it to produce evidence.
#[doc(hidden)]
pub fn write_unchecked_zip(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, AsicError> {
    Ok(zip::write_stored(entries)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_written_exactly_in_our_layout() {
        let got = manifest_from_digests(
            DigestAlgorithm::Sha256,
            &[
                ("dir/a b&\u{e4}.txt", "text/x\"y'<z>&", &[0xfb, 0xff]),
                ("payload-body", "application/octet-stream", &[1, 2, 3]),
            ],
        );
        let want = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
             <asic:ASiCManifest xmlns:asic=\"{ASIC_NS}\" xmlns:ds=\"{DS_NS}\">\n  \
             <asic:SigReference URI=\"{SIGNATURE_PATH}\" MimeType=\"application/pkcs7-signature\"/>\n  \
             <asic:DataObjectReference URI=\"dir/a%20b%26%C3%A4.txt\" \
             MimeType=\"text/x&quot;y&apos;&lt;z&gt;&amp;\">\n    \
             <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\n    \
             <ds:DigestValue>+/8=</ds:DigestValue>\n  </asic:DataObjectReference>\n  \
             <asic:DataObjectReference URI=\"payload-body\" MimeType=\"application/octet-stream\">\n    \
             <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\n    \
             <ds:DigestValue>AQID</ds:DigestValue>\n  </asic:DataObjectReference>\n\
             </asic:ASiCManifest>\n"
        );
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }

    #[test]
    fn names() {
        for ok in ["a.txt", "dir/b.xml", "META-INF/x", "x y", "dir/"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a\\b",
            "C:x",
            "a//b",
            "./a",
            "a\u{0}",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manifest_parses_our_own() {
        let mut b = AsicBuilder::new(DigestAlgorithm::Sha256);
        b.add_file("a b&c.xml", "text/xml", b"<x/>".to_vec())
            .unwrap();
        let m = b.manifest();
        let (sig, refs) = parse_manifest(&m).unwrap();
        assert_eq!(sig, SIGNATURE_PATH);
        assert_eq!(uri_decode(&refs[0].uri).unwrap(), "a b&c.xml");
        assert_eq!(refs[0].alg, Some(DigestAlgorithm::Sha256));
        assert!(parse_manifest(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>").is_err());
    }
}
