//! A hardened XML event reader and output escaping, shared by the SOAP code.
//!
//! Messages come from untrusted information systems and peers, so the reader refuses every
//! feature that lets a document make the parser do more work than its size suggests or reach
//! outside itself: document type declarations (and with them every entity declaration, external
//! entity and "billion laughs" expansion), processing instructions other than the XML
//! declaration, references to entities other than the five predefined ones, and nesting deeper
//! than a configured limit. Namespaces are resolved, so any prefix (or a default namespace)
//! works wherever a qualified name is expected.

use std::borrow::Cow;

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::NsReader;

/// Why a document was refused by the hardened reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// The bytes are not UTF-8, or the declaration names another encoding.
    Encoding(String),
    /// Not well-formed.
    Malformed(String),
    /// A `<!DOCTYPE …>` (and so possibly entity declarations).
    Doctype,
    /// A processing instruction other than the XML declaration.
    ProcessingInstruction,
    /// A reference to an entity that is not predefined.
    UnknownEntity(String),
    /// Elements nested deeper than the limit.
    TooDeep(usize),
    /// The document is larger than the limit.
    TooLarge(usize),
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Encoding(m) => write!(f, "unsupported encoding: {m}"),
            Self::Malformed(m) => write!(f, "XML is not well-formed: {m}"),
            Self::Doctype => f.write_str("document type declarations are not allowed"),
            Self::ProcessingInstruction => f.write_str("processing instructions are not allowed"),
            Self::UnknownEntity(e) => write!(f, "reference to undeclared entity &{e};"),
            Self::TooDeep(n) => write!(f, "elements are nested deeper than {n} levels"),
            Self::TooLarge(n) => write!(f, "document is larger than {n} bytes"),
        }
    }
}

impl From<quick_xml::Error> for XmlError {
    fn from(e: quick_xml::Error) -> Self {
        Self::Malformed(e.to_string())
    }
}

/// The namespace and local name of an element, owned so they outlive the reader's scope stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ExpandedName {
    /// The namespace URI, empty when the name is in no namespace.
    pub(crate) ns: String,
    /// The local part.
    pub(crate) local: String,
}

impl ExpandedName {
    pub(crate) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }
}

/// One event with the byte offsets it covers in the input (relative to the input given to
/// [`Reader::new`] plus its base offset).
pub(crate) struct Positioned<'a> {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) event: Event<'a>,
}

/// Pull reader that enforces the rules in the module documentation.
pub(crate) struct Reader<'a> {
    inner: NsReader<&'a [u8]>,
    base: usize,
    depth: usize,
    max_depth: usize,
    seen_anything: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, which must be at most `max_size` long. A leading UTF-8 byte order
    /// mark is skipped; reported offsets still count from the start of `bytes`.
    pub(crate) fn new(
        bytes: &'a [u8],
        max_size: usize,
        max_depth: usize,
    ) -> Result<Self, XmlError> {
        if bytes.len() > max_size {
            return Err(XmlError::TooLarge(max_size));
        }
        let (base, body) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => (3, rest),
            None => (0, bytes),
        };
        if body.starts_with(b"\xFE\xFF") || body.starts_with(b"\xFF\xFE") {
            return Err(XmlError::Encoding("UTF-16 (only UTF-8 is accepted)".into()));
        }
        let text = std::str::from_utf8(body).map_err(|e| {
            XmlError::Encoding(format!("not UTF-8 at byte {}", base + e.valid_up_to()))
        })?;
        let mut inner = NsReader::from_str(text);
        let config = inner.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Ok(Self {
            inner,
            base,
            depth: 0,
            max_depth,
            seen_anything: false,
        })
    }

    /// Offset just past the last event read.
    pub(crate) fn position(&self) -> usize {
        // The input is at most `max_size` bytes, which fits in usize.
        usize::try_from(self.inner.buffer_position()).unwrap_or(usize::MAX) + self.base
    }

    /// The next event that passed the checks. `Empty` elements are reported as they are
    /// (no synthetic end event) and do not change the depth.
    pub(crate) fn next(&mut self) -> Result<Positioned<'a>, XmlError> {
        let start = self.position();
        let event = self.inner.read_event()?;
        let end = self.position();
        let first = !self.seen_anything;
        self.seen_anything = true;
        match &event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Decl(d) => {
                if !first {
                    return Err(XmlError::ProcessingInstruction);
                }
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(XmlError::Encoding(enc.into_owned()));
                    }
                }
            }
            Event::Start(_) => {
                self.depth += 1;
                if self.depth > self.max_depth {
                    return Err(XmlError::TooDeep(self.max_depth));
                }
            }
            Event::Empty(_) => {
                if self.depth + 1 > self.max_depth {
                    return Err(XmlError::TooDeep(self.max_depth));
                }
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            Event::GeneralRef(r) => {
                resolve_ref(r)?;
            }
            Event::Eof => {
                if self.depth != 0 {
                    return Err(XmlError::Malformed("unexpected end of document".into()));
                }
            }
            Event::Text(_) | Event::CData(_) | Event::Comment(_) => {}
        }
        Ok(Positioned { start, end, event })
    }

    /// The namespace and local name of an element name, as bound at the current position.
    pub(crate) fn element_name(&self, name: QName<'_>) -> Result<ExpandedName, XmlError> {
        let (ns, local) = self.inner.resolver().resolve_element(name);
        Ok(ExpandedName {
            ns: namespace(ns)?,
            local: local.as_ref().to_owned(),
        })
    }

    /// The value of the attribute with the given namespace (empty for none) and local name.
    pub(crate) fn attribute(
        &self,
        start: &BytesStart<'_>,
        ns: &str,
        local: &str,
    ) -> Result<Option<String>, XmlError> {
        for attr in start.attributes() {
            let attr = attr.map_err(|e| XmlError::Malformed(e.to_string()))?;
            let (ans, alocal) = self.inner.resolver().resolve_attribute(attr.key);
            if alocal.as_ref() == local && namespace(ans)? == ns {
                return Ok(Some(unescape(&attr.value)?.into_owned()));
            }
        }
        Ok(None)
    }

    /// Reads the text content of the element whose start tag was just read, up to and including
    /// its end tag. Child elements are an error reported as `Err(None)`; reader errors as
    /// `Err(Some(_))`.
    pub(crate) fn text_content(&mut self) -> Result<String, Option<XmlError>> {
        let mut out = String::new();
        loop {
            let ev = self.next().map_err(Some)?;
            match ev.event {
                Event::Text(t) => out.push_str(&t.xml10_content()),
                Event::CData(c) => out.push_str(&c.xml10_content()),
                Event::GeneralRef(r) => out.push_str(&resolve_ref(&r).map_err(Some)?),
                Event::Comment(_) => {}
                Event::End(_) => return Ok(out),
                _ => return Err(None),
            }
        }
    }

    /// Consumes events up to and including the end tag of the element whose start tag was just
    /// read; returns the offset just past that end tag.
    pub(crate) fn skip_element(&mut self) -> Result<usize, XmlError> {
        let target = self.depth.saturating_sub(1);
        loop {
            let ev = self.next()?;
            if matches!(ev.event, Event::End(_)) && self.depth == target {
                return Ok(ev.end);
            }
            if matches!(ev.event, Event::Eof) {
                return Err(XmlError::Malformed("unexpected end of document".into()));
            }
        }
    }
}

fn namespace(r: ResolveResult<'_>) -> Result<String, XmlError> {
    match r {
        ResolveResult::Bound(ns) => Ok(ns.as_ref().to_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(XmlError::Malformed(format!(
            "namespace prefix `{p}` is not declared"
        ))),
    }
}

/// The replacement text of a character or predefined entity reference.
fn resolve_ref(r: &BytesRef<'_>) -> Result<Cow<'static, str>, XmlError> {
    if r.is_char_ref() {
        match r.resolve_char_ref() {
            Ok(Some(c)) => return Ok(Cow::Owned(c.to_string())),
            _ => {
                return Err(XmlError::Malformed(format!(
                    "bad character reference &{};",
                    &**r
                )));
            }
        }
    }
    resolve_xml_entity(r)
        .map(Cow::Borrowed)
        .ok_or_else(|| XmlError::UnknownEntity(r.to_string()))
}

/// Attribute value with references resolved; only predefined entities are allowed.
fn unescape<'v>(value: &'v str) -> Result<Cow<'v, str>, XmlError> {
    if !value.contains('&') {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| XmlError::Malformed("unterminated reference in attribute".into()))?;
        let name = &after[..semi];
        out.push_str(&resolve_ref(&BytesRef::new(name))?);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Escapes text for element content or a double-quoted attribute value.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are replaced rather than emitted
            // as a document nobody can parse.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(doc: &str) -> Result<(), XmlError> {
        let mut r = Reader::new(doc.as_bytes(), 1 << 20, 8)?;
        loop {
            if matches!(r.next()?.event, Event::Eof) {
                return Ok(());
            }
        }
    }

    #[test]
    fn refuses_doctype_and_entities() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>"#;
        assert_eq!(drain(bomb), Err(XmlError::Doctype));
        let xxe = r#"<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>"#;
        assert_eq!(drain(xxe), Err(XmlError::Doctype));
        assert_eq!(
            drain("<a>&x;</a>"),
            Err(XmlError::UnknownEntity("x".into()))
        );
        assert!(drain("<a>&amp;&#65;&#x42;</a>").is_ok());
    }

    #[test]
    fn refuses_processing_instructions_but_not_the_declaration() {
        assert!(drain(r#"<?xml version="1.0" encoding="UTF-8"?><a/>"#).is_ok());
        assert_eq!(
            drain(r#"<?xml-stylesheet href="x"?><a/>"#),
            Err(XmlError::ProcessingInstruction)
        );
        assert_eq!(
            drain("<a><?php x?></a>"),
            Err(XmlError::ProcessingInstruction)
        );
        assert!(matches!(
            drain(r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#),
            Err(XmlError::Encoding(_))
        ));
    }

    #[test]
    fn depth_size_and_structure_limits() {
        assert!(drain("<a><a><a><a><a><a><a><a/></a></a></a></a></a></a></a>").is_ok());
        assert_eq!(
            drain("<a><a><a><a><a><a><a><a><a/></a></a></a></a></a></a></a></a>"),
            Err(XmlError::TooDeep(8))
        );
        assert!(matches!(
            Reader::new(b"<a/>", 3, 8).err(),
            Some(XmlError::TooLarge(3))
        ));
        assert!(matches!(drain("<a><b></a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(drain("<a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(drain("<p:a/>"), Ok(())));
        assert!(matches!(drain("\u{FEFF}<a/>"), Ok(())));
    }

    #[test]
    fn attributes_resolve_namespaces_and_references() {
        let doc = r#"<r xmlns:q="urn:q" q:k="a&amp;b" k="plain"/>"#;
        let mut r = Reader::new(doc.as_bytes(), 1024, 8).unwrap();
        let ev = r.next().unwrap();
        let Event::Empty(s) = ev.event else {
            panic!("expected empty element")
        };
        assert_eq!(
            r.attribute(&s, "urn:q", "k").unwrap().as_deref(),
            Some("a&b")
        );
        assert_eq!(r.attribute(&s, "", "k").unwrap().as_deref(), Some("plain"));
        assert_eq!(r.attribute(&s, "urn:x", "k").unwrap(), None);
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_into(&mut s, "<a href=\"x\">&'\u{1}</a>");
        assert_eq!(
            s,
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{FFFD}&lt;/a&gt;"
        );
    }
}
