//! Bus errors on REST responses: HTTP 400/500, `X-Road-Error: <code>` and a JSON or XML body
//! `{type, message, detail}` where `detail` is the correlation id from our log.
//!
//! A response without `X-Road-Error` is the service's own answer and passes through as is,
//! whatever its status; only responses with the header are bus errors.

use crate::fault::{Fault, FaultCode, FaultDialect};

use super::headers::{self, Headers};

/// Body format of a bus error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// `{"type":…,"message":…,"detail":…}`, the default.
    Json,
    /// `<error><type/><message/><detail/></error>`, when the client prefers XML.
    Xml,
}

impl ErrorFormat {
    /// Picks the format from an `Accept` value: XML only when `application/xml` or `text/xml`
    /// has a strictly higher q-value than JSON (`application/json`, `application/*`, `*/*`).
    /// No header, or a tie, means JSON.
    pub fn from_accept(accept: Option<&[u8]>) -> Self {
        let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
            return Self::Json;
        };
        let (mut xml, mut json) = (0u16, 0u16);
        for range in accept.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or_default().trim();
            let q = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(1000, |(_, v)| qvalue(v.trim()));
            let slot = if media.eq_ignore_ascii_case("application/xml")
                || media.eq_ignore_ascii_case("text/xml")
            {
                &mut xml
            } else if media.eq_ignore_ascii_case("application/json")
                || media.eq_ignore_ascii_case("application/*")
                || media == "*/*"
            {
                &mut json
            } else {
                continue;
            };
            *slot = (*slot).max(q);
        }
        if xml > json { Self::Xml } else { Self::Json }
    }

    /// The `Content-Type` of an error body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json; charset=utf-8",
            Self::Xml => "application/xml; charset=utf-8",
        }
    }
}

/// A q-value in thousandths; anything unparsable counts as 0 (not acceptable).
fn qvalue(v: &str) -> u16 {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => thousandths,
        "1" if thousandths == 0 => 1000,
        _ => 0,
    }
}

/// A complete bus-error response, ready for the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// 400 for `Client.*` codes, 500 otherwise.
    pub status: u16,
    /// The code, for the `X-Road-Error` header.
    pub code: String,
    /// The `Content-Type` of [`ErrorResponse::body`].
    pub content_type: &'static str,
    /// The serialised body.
    pub body: Vec<u8>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JsonBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    detail: std::borrow::Cow<'a, str>,
}

impl ErrorResponse {
    /// The response for `fault`, its code spelt in `dialect`, its body in `format`.
    pub fn new(fault: &Fault, dialect: FaultDialect, format: ErrorFormat) -> Self {
        let code = fault.code.render(dialect);
        let body = match format {
            ErrorFormat::Json => json_body(&code, &fault.message, &fault.correlation_id),
            ErrorFormat::Xml => xml_body(&code, &fault.message, &fault.correlation_id),
        };
        Self {
            status: fault.http_status(),
            code,
            content_type: format.content_type(),
            body,
        }
    }

    /// The response headers: `X-Road-Error` and `Content-Type`.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new()
            .with(headers::X_ROAD_ERROR, &self.code)
            .with("Content-Type", self.content_type)
    }
}

fn json_body(code: &str, message: &str, detail: &str) -> Vec<u8> {
    let body = JsonBody {
        kind: code.into(),
        message: message.into(),
        detail: detail.into(),
    };
    // Serialising three strings into a Vec cannot fail; fall back to an empty object anyway
    // rather than panic.
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
}

fn xml_body(code: &str, message: &str, detail: &str) -> Vec<u8> {
    let mut out = String::with_capacity(64 + code.len() + message.len() + detail.len());
    out.push_str("<error><type>");
    escape_into(&mut out, code);
    out.push_str("</type><message>");
    escape_into(&mut out, message);
    out.push_str("</message><detail>");
    escape_into(&mut out, detail);
    out.push_str("</detail></error>");
    out.into_bytes()
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all, even escaped.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Why a response marked with `X-Road-Error` could not be read as a bus error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorBodyError {
    /// Neither the header nor the body's `type` is a known fault code.
    #[error("unknown fault code {0:?}")]
    UnknownCode(String),
}

/// Reads a provider's response as a bus error (consumer side).
///
/// `Ok(None)` when there is no `X-Road-Error` header: the response is the service's own. The
/// code comes from the header (falling back to the body's `type`); message and correlation id
/// come from the body when it is readable JSON or XML, else they are empty.
pub fn parse_error_response(h: &Headers<'_>, body: &[u8]) -> Result<Option<Fault>, ErrorBodyError> {
    let Some(header) = h.get_last(headers::X_ROAD_ERROR) else {
        return Ok(None);
    };
    let header = String::from_utf8_lossy(header);
    let header = header.trim();
    let parsed = parse_error_body(body);
    let code = FaultCode::parse(header)
        .or_else(|| parsed.as_ref().and_then(|(t, _, _)| FaultCode::parse(t)))
        .ok_or_else(|| ErrorBodyError::UnknownCode(header.to_owned()))?;
    let (message, detail) = parsed.map(|(_, m, d)| (m, d)).unwrap_or_default();
    Ok(Some(Fault {
        code,
        message,
        correlation_id: detail,
    }))
}

/// `(type, message, detail)` from a JSON or XML error body.
pub fn parse_error_body(body: &[u8]) -> Option<(String, String, String)> {
    let text = std::str::from_utf8(body)
        .ok()?
        .trim_start_matches('\u{feff}')
        .trim();
    if text.starts_with('{') {
        let b: JsonBody<'_> = serde_json::from_str(text).ok()?;
        Some((
            b.kind.into_owned(),
            b.message.into_owned(),
            b.detail.into_owned(),
        ))
    } else if text.starts_with('<') {
        parse_xml_body(text)
    } else {
        None
    }
}

fn parse_xml_body(text: &str) -> Option<(String, String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut fields: [Option<String>; 3] = [None, None, None];
    let mut depth = 0usize;
    let mut current: Option<usize> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                depth += 1;
                let name = e.local_name();
                current = match (depth, name.as_ref()) {
                    (1, "error") => None,
                    (1, _) => return None,
                    (2, "type") => Some(0),
                    (2, "message") => Some(1),
                    (2, "detail") => Some(2),
                    _ => None,
                };
                if let Some(i) = current {
                    fields[i].get_or_insert_with(String::new);
                }
            }
            Event::Empty(e) if depth == 1 => {
                let i = match e.local_name().as_ref() {
                    "type" => 0,
                    "message" => 1,
                    "detail" => 2,
                    _ => continue,
                };
                fields[i].get_or_insert_with(String::new);
            }
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                current = None;
            }
            Event::Text(t) => {
                if let Some(i) = current {
                    fields[i].get_or_insert_with(String::new).push_str(&t);
                }
            }
            Event::CData(t) => {
                if let Some(i) = current {
                    fields[i].get_or_insert_with(String::new).push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(i) = current {
                    let c = match r.resolve_char_ref().ok()? {
                        Some(c) => c,
                        None => match &*r {
                            "lt" => '<',
                            "gt" => '>',
                            "amp" => '&',
                            "quot" => '"',
                            "apos" => '\'',
                            _ => return None,
                        },
                    };
                    fields[i].get_or_insert_with(String::new).push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let [t, m, d] = fields;
    Some((t?, m.unwrap_or_default(), d.unwrap_or_default()))
}
