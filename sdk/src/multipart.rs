//! `Content-Type` checks for SOAP over HTTP and `multipart/related` messages (SOAP with
//! Attachments and MTOM/XOP).
//!
//! Parts are located, not decoded: every part keeps its MIME headers and body bytes exactly as
//! received, because they are forwarded and signed as they are. Only the SOAP part is looked at
//! more closely, and it is the part the request hash covers.

use std::ops::Range;

use memchr::memmem;

use crate::fault::{ErrorKind, Fault, Origin};
use crate::soap::Limits;

fn invalid_ct(msg: impl Into<String>) -> Fault {
    Fault::of(Origin::Client, ErrorKind::InvalidContentType, msg)
}

fn mime_failed(msg: impl Into<String>) -> Fault {
    Fault::of(Origin::Client, ErrorKind::MimeParsingFailed, msg)
}

/// A parsed `Content-Type` value: lower-cased `type/subtype` and parameters (names lower-cased,
/// values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    mime_type: String,
    params: Vec<(String, String)>,
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

impl ContentType {
    /// Parses a header value per RFC 2045 (token or quoted-string parameter values).
    pub fn parse(value: &str) -> Result<Self, Fault> {
        let bad = || invalid_ct(format!("malformed Content-Type `{}`", value.escape_debug()));
        let s = value.as_bytes();
        let mut i = 0;
        let skip_ws = |i: &mut usize| {
            while *i < s.len() && matches!(s[*i], b' ' | b'\t') {
                *i += 1;
            }
        };
        let token = |i: &mut usize| -> &str {
            let st = *i;
            while *i < s.len() && is_token_char(s[*i]) {
                *i += 1;
            }
            &value[st..*i]
        };
        skip_ws(&mut i);
        let ty = token(&mut i);
        if ty.is_empty() || s.get(i) != Some(&b'/') {
            return Err(bad());
        }
        i += 1;
        let sub = token(&mut i);
        if sub.is_empty() {
            return Err(bad());
        }
        let mime_type = format!("{ty}/{sub}").to_ascii_lowercase();
        let mut params = Vec::new();
        loop {
            skip_ws(&mut i);
            if i == s.len() {
                break;
            }
            if s[i] != b';' {
                return Err(bad());
            }
            i += 1;
            skip_ws(&mut i);
            if i == s.len() {
                break; // a trailing `;` is common and harmless
            }
            let name = token(&mut i).to_ascii_lowercase();
            skip_ws(&mut i);
            if name.is_empty() || s.get(i) != Some(&b'=') {
                return Err(bad());
            }
            i += 1;
            skip_ws(&mut i);
            let val = if s.get(i) == Some(&b'"') {
                i += 1;
                let mut v = String::new();
                loop {
                    match value[i..].chars().next() {
                        None => return Err(bad()),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let c = value[i + 1..].chars().next().ok_or_else(bad)?;
                            v.push(c);
                            i += 1 + c.len_utf8();
                        }
                        Some(c) => {
                            v.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                v
            } else {
                // `type=text/xml` is sent unquoted everywhere although `/` is not a token
                // character; accept it in values.
                let st = i;
                while i < s.len() && (is_token_char(s[i]) || s[i] == b'/') {
                    i += 1;
                }
                let t = &value[st..i];
                if t.is_empty() {
                    return Err(bad());
                }
                t.to_owned()
            };
            params.push((name, val));
        }
        Ok(Self { mime_type, params })
    }

    /// `type/subtype`, lower case.
    pub fn mime_type(&self) -> &str {
        &self.mime_type
    }

    /// A parameter's value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn check_charset(ct: &ContentType) -> Result<(), Fault> {
    match ct.param("charset") {
        None => Ok(()),
        Some(c) if c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8") => Ok(()),
        Some(c) => Err(invalid_ct(format!(
            "charset `{c}` is not supported; send UTF-8"
        ))),
    }
}

/// How the body of a SOAP message over HTTP is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapContentType {
    /// A bare envelope (`text/xml`, UTF-8).
    Xml,
    /// `multipart/related` with the envelope in one part.
    Multipart(MultipartType),
}

/// The parameters of a `multipart/related` content type that matter for SOAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartType {
    /// The boundary, without the leading `--`.
    pub boundary: String,
    /// `start`: the Content-ID of the SOAP part, if not the first part.
    pub start: Option<String>,
    /// Whether this is MTOM/XOP (root part `application/xop+xml`) rather than SwA.
    pub mtom: bool,
}

impl MultipartType {
    /// A fresh random boundary for messages we write.
    pub fn new_boundary() -> String {
        format!("trustbus-{}", uuid::Uuid::new_v4().simple())
    }

    /// The `Content-Type` value for an SwA message with this boundary.
    pub fn header_value(&self) -> String {
        let mut s = format!("multipart/related; boundary=\"{}\"", self.boundary);
        if self.mtom {
            s.push_str("; type=\"application/xop+xml\"; start-info=\"text/xml\"");
        } else {
            s.push_str("; type=\"text/xml\"");
        }
        if let Some(st) = &self.start {
            s.push_str(&format!("; start=\"{st}\""));
        }
        s
    }
}

fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// Checks the `Content-Type` of a SOAP request or response over HTTP.
pub fn check_content_type(value: &str) -> Result<SoapContentType, Fault> {
    let ct = ContentType::parse(value)?;
    match ct.mime_type() {
        "text/xml" => {
            check_charset(&ct)?;
            Ok(SoapContentType::Xml)
        }
        "multipart/related" => {
            let boundary = ct
                .param("boundary")
                .ok_or_else(|| invalid_ct("multipart/related without a boundary"))?;
            if !valid_boundary(boundary) {
                return Err(invalid_ct("multipart boundary is not valid (RFC 2046)"));
            }
            let mtom = match ct.param("type").map(str::to_ascii_lowercase).as_deref() {
                None | Some("text/xml") => false,
                Some("application/xop+xml") => true,
                Some(t) => {
                    return Err(invalid_ct(format!(
                        "multipart root type `{t}` is not a SOAP 1.1 type"
                    )));
                }
            };
            Ok(SoapContentType::Multipart(MultipartType {
                boundary: boundary.to_owned(),
                start: ct.param("start").map(str::to_owned),
                mtom,
            }))
        }
        "application/soap+xml" => Err(invalid_ct(
            "application/soap+xml is SOAP 1.2; X-Road uses SOAP 1.1 (text/xml)",
        )),
        other => Err(invalid_ct(format!(
            "Content-Type `{other}` is not text/xml or multipart/related"
        ))),
    }
}

/// `bytes` without a leading UTF-8 byte order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// One MIME part, located in [`Multipart::bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Header fields in order, names and values as received (values trimmed, folding kept).
    pub headers: Vec<(String, String)>,
    /// The header block, without the blank line that ends it.
    pub header_range: Range<usize>,
    /// The body.
    pub body_range: Range<usize>,
}

impl Part {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed `multipart/related` message, holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    bytes: Vec<u8>,
    parts: Vec<Part>,
    soap: usize,
}

impl Multipart {
    /// The message exactly as received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every part in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The part holding the SOAP envelope.
    pub fn soap_part(&self) -> &Part {
        &self.parts[self.soap]
    }

    /// The SOAP envelope bytes: what the request hash covers.
    pub fn soap_bytes(&self) -> &[u8] {
        self.body(self.soap_part())
    }

    /// The parts other than the SOAP part.
    pub fn attachments(&self) -> impl Iterator<Item = &Part> {
        let soap = self.soap;
        self.parts
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != soap)
            .map(|(_, p)| p)
    }

    /// A part's body bytes.
    pub fn body(&self, part: &Part) -> &[u8] {
        self.bytes.get(part.body_range.clone()).unwrap_or_default()
    }

    /// A part's raw header block.
    pub fn raw_headers(&self, part: &Part) -> &[u8] {
        self.bytes
            .get(part.header_range.clone())
            .unwrap_or_default()
    }
}

/// Finds the next delimiter line `--boundary` at or after `from` that starts a line. Returns
/// (start of the line break before it, or `at` if at offset 0; offset of `--`).
fn next_delimiter(
    bytes: &[u8],
    finder: &memmem::Finder<'_>,
    from: usize,
) -> Option<(usize, usize)> {
    let mut pos = from;
    while let Some(i) = finder.find(bytes.get(pos..)?) {
        let at = pos + i;
        if at == 0 {
            return Some((0, 0));
        }
        if bytes[at - 1] == b'\n' {
            let cr = at >= 2 && bytes[at - 2] == b'\r';
            return Some((at - 1 - usize::from(cr), at));
        }
        pos = at + 1;
    }
    None
}

fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, Fault> {
    let text =
        std::str::from_utf8(block).map_err(|_| mime_failed("MIME part headers are not UTF-8"))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous field.
            let last = out
                .last_mut()
                .ok_or_else(|| mime_failed("MIME header continuation without a field"))?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| mime_failed("MIME header line without a colon"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(mime_failed("malformed MIME header name"));
        }
        out.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

/// Where the header block of a part ends: (length of the block without its last line break,
/// offset of the body). A part may start with the empty line directly.
fn header_end(part: &[u8]) -> Option<(usize, usize)> {
    if part.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if part.starts_with(b"\n") {
        return Some((0, 1));
    }
    for i in memchr::memchr_iter(b'\n', part) {
        let line_end = i - usize::from(i > 0 && part[i - 1] == b'\r');
        match part.get(i + 1..) {
            Some([b'\r', b'\n', ..]) => return Some((line_end, i + 3)),
            Some([b'\n', ..]) => return Some((line_end, i + 2)),
            _ => {}
        }
    }
    None
}

fn strip_angles(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or(s)
}

/// Splits a `multipart/related` body into parts and identifies the SOAP part.
pub fn parse_multipart(
    bytes: impl Into<Vec<u8>>,
    ty: &MultipartType,
    limits: &Limits,
) -> Result<Multipart, Fault> {
    let bytes = bytes.into();
    if bytes.len() > limits.max_multipart_size {
        return Err(mime_failed(format!(
            "multipart message is larger than {} bytes",
            limits.max_multipart_size
        )));
    }
    let dash = format!("--{}", ty.boundary);
    let finder = memmem::Finder::new(dash.as_bytes());
    let (_, mut at) = next_delimiter(&bytes, &finder, 0)
        .ok_or_else(|| mime_failed("multipart boundary not found"))?;
    let mut parts = Vec::new();
    loop {
        let after = at + dash.len();
        let rest = bytes.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            break; // close delimiter; the epilogue is ignored
        }
        // Transport padding, then the line break ending the delimiter line.
        let pad = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let header_start = after
            + pad
            + match &rest[pad..] {
                [b'\r', b'\n', ..] => 2,
                [b'\n', ..] => 1,
                _ => return Err(mime_failed("malformed multipart delimiter line")),
            };
        if parts.len() >= limits.max_parts {
            return Err(mime_failed(format!(
                "multipart message has more than {} parts",
                limits.max_parts
            )));
        }
        let (next_break, next_at) = next_delimiter(&bytes, &finder, header_start)
            .ok_or_else(|| mime_failed("multipart message is not terminated"))?;
        // The line break before a delimiter belongs to it, so it cannot also end the previous
        // delimiter line: `--b\r\n--b` has no part in between.
        let part = bytes
            .get(header_start..next_break)
            .ok_or_else(|| mime_failed("empty MIME part without a header block"))?;
        let window = &part[..part.len().min(limits.max_part_header_size + 4)];
        let (header_len, body_off) = header_end(window).ok_or_else(|| {
            mime_failed(format!(
                "MIME part headers are not terminated within {} bytes",
                limits.max_part_header_size
            ))
        })?;
        if header_len > limits.max_part_header_size {
            return Err(mime_failed(format!(
                "MIME part headers are longer than {} bytes",
                limits.max_part_header_size
            )));
        }
        let header_range = header_start..header_start + header_len;
        let headers = parse_headers(&bytes[header_range.clone()])?;
        parts.push(Part {
            headers,
            header_range,
            body_range: header_start + body_off..next_break,
        });
        at = next_at;
    }
    if parts.is_empty() {
        return Err(mime_failed("multipart message has no parts"));
    }
    let soap = match &ty.start {
        None => 0,
        Some(start) => {
            let want = strip_angles(start);
            parts
                .iter()
                .position(|p| p.header("content-id").map(strip_angles) == Some(want))
                .ok_or_else(|| mime_failed(format!("no part has the start Content-ID `{want}`")))?
        }
    };
    check_soap_part(&parts[soap], ty.mtom)?;
    Ok(Multipart { bytes, parts, soap })
}

fn check_soap_part(part: &Part, mtom: bool) -> Result<(), Fault> {
    let Some(value) = part.header("content-type") else {
        // MIME's default for a part is text/plain, but SwA senders often omit it for the
        // envelope; accept that only for SwA.
        return if mtom {
            Err(invalid_ct("the MTOM root part has no Content-Type"))
        } else {
            Ok(())
        };
    };
    let ct = ContentType::parse(value)?;
    check_charset(&ct)?;
    match (ct.mime_type(), mtom) {
        ("text/xml", false) => Ok(()),
        ("application/xop+xml", _) => match ct.param("type") {
            None => Ok(()),
            Some(t) if t.eq_ignore_ascii_case("text/xml") => Ok(()),
            Some(t) => Err(invalid_ct(format!(
                "the XOP root part carries `{t}`, not a SOAP 1.1 envelope (text/xml)"
            ))),
        },
        (other, _) => Err(invalid_ct(format!(
            "the SOAP part has Content-Type `{other}`"
        ))),
    }
}

/// A body contains the boundary delimiter, so the chosen boundary cannot frame it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a part contains the multipart boundary")]
pub struct BoundaryCollision;

/// A part to write: its header fields in order and its body.
pub type OutPart<'a> = (Vec<(String, String)>, &'a [u8]);

/// Writes a `multipart/related` body: each part is its header fields and body bytes. Line
/// breaks are CRLF. Use [`MultipartType::header_value`] for the matching `Content-Type`.
pub fn write_multipart(
    boundary: &str,
    parts: &[OutPart<'_>],
) -> Result<Vec<u8>, BoundaryCollision> {
    let dash = format!("--{boundary}");
    let finder = memmem::Finder::new(dash.as_bytes());
    let size: usize = parts
        .iter()
        .map(|(h, b)| b.len() + 64 * (h.len() + 1))
        .sum();
    let mut out = Vec::with_capacity(size + dash.len() * (parts.len() + 1));
    for (headers, body) in parts {
        if finder.find(body).is_some() {
            return Err(BoundaryCollision);
        }
        out.extend_from_slice(dash.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (n, v) in headers {
            if finder.find(v.as_bytes()).is_some() || v.contains(['\r', '\n']) {
                return Err(BoundaryCollision);
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(dash.as_bytes());
    out.extend_from_slice(b"--\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests;
