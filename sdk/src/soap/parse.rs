//! Single-pass envelope parser.

use std::ops::Range;

use quick_xml::events::{BytesStart, Event};

use super::fault::read_fault;
use super::{
    BodyElement, HeaderElement, HeaderField, Limits, PROTOCOL_VERSION, REPRESENTATION_NS,
    RequestHash, SOAP_ENV_NS, SOAP12_ENV_NS, SoapFault, SoapHeader, SoapMessage, SoapResponse,
    XROAD_NS,
};
use crate::fault::{ErrorKind, Fault, Origin};
use crate::id::{IDENTIFIERS_NS, IdField, ObjectType, RepresentedParty, XRoadId};
use crate::xml::{ExpandedName, Reader, XmlError};

/// Parses and validates a request from an information system (or a peer's request as
/// forwarded). Rejections carry `Client.*` codes; see `docs/protocol-soap.md`.
pub fn parse_request(bytes: impl Into<Vec<u8>>, limits: &Limits) -> Result<SoapMessage, Fault> {
    match parse(bytes.into(), limits, Mode::Request)? {
        SoapResponse::Message(m) => Ok(*m),
        // `Mode::Request` never yields a fault; treat it as a wrong body just in case.
        SoapResponse::Fault { .. } => {
            Err(client(ErrorKind::InvalidBody, "request body is a fault"))
        }
    }
}

/// Parses a service's or security server's response: either a message with X-Road headers or a
/// SOAP fault (which needs no headers).
pub fn parse_response(bytes: impl Into<Vec<u8>>, limits: &Limits) -> Result<SoapResponse, Fault> {
    parse(bytes.into(), limits, Mode::Response)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Request,
    Response,
}

pub(super) fn client(kind: ErrorKind, msg: impl Into<String>) -> Fault {
    Fault::of(Origin::Client, kind, msg)
}

pub(super) fn invalid_xml(e: XmlError) -> Fault {
    client(ErrorKind::InvalidXml, e.to_string())
}

fn is_blank(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Header fields as found, before the mandatory ones are checked.
#[derive(Default)]
struct Found {
    client: Option<crate::id::ClientId>,
    service: Option<crate::id::ServiceId>,
    id: Option<String>,
    user_id: Option<String>,
    issue: Option<String>,
    protocol_version: Option<String>,
    request_hash: Option<RequestHash>,
    security_server: Option<crate::id::SecurityServerId>,
    represented_party: Option<RepresentedParty>,
}

struct Envelope {
    header: Option<(Found, Vec<HeaderElement>, usize)>,
    body: Option<BodyOutcome>,
}

enum BodyOutcome {
    Content {
        content: Range<usize>,
        element: Option<BodyElement>,
    },
    Fault(SoapFault),
}

fn parse(bytes: Vec<u8>, limits: &Limits, mode: Mode) -> Result<SoapResponse, Fault> {
    let env = {
        let mut r =
            Reader::new(&bytes, limits.max_envelope_size, limits.max_depth).map_err(invalid_xml)?;
        read_document(&mut r, limits, mode)?
    };
    let Envelope { header, body } = env;
    if let Some(BodyOutcome::Fault(fault)) = body {
        if mode == Mode::Request {
            return Err(client(
                ErrorKind::InvalidBody,
                "a request body must not be a SOAP fault",
            ));
        }
        return Ok(SoapResponse::Fault { fault, bytes });
    }
    let Some((found, elements, header_close)) = header else {
        return Err(client(
            ErrorKind::MissingHeader,
            "the SOAP envelope has no Header",
        ));
    };
    let Some(BodyOutcome::Content { content, element }) = body else {
        return Err(client(
            ErrorKind::MissingBody,
            "the SOAP envelope has no Body",
        ));
    };
    let header = validate(found)?;
    if mode == Mode::Request {
        match &element {
            Some(e) if e.local_name == header.service.code() => {}
            Some(e) => {
                return Err(client(
                    ErrorKind::InvalidBody,
                    format!(
                        "body element `{}` does not match service code `{}`",
                        e.local_name,
                        header.service.code()
                    ),
                ));
            }
            None => {
                return Err(client(ErrorKind::InvalidBody, "the SOAP body is empty"));
            }
        }
    }
    Ok(SoapResponse::Message(Box::new(SoapMessage {
        bytes,
        header,
        elements,
        header_close,
        body_content: content,
        body_element: element,
    })))
}

fn missing(field: &str) -> Fault {
    client(
        ErrorKind::MissingHeaderField,
        format!("required header field `{field}` is missing"),
    )
}

fn validate(f: Found) -> Result<SoapHeader, Fault> {
    let client_id = f.client.ok_or_else(|| missing("client"))?;
    let service = f.service.ok_or_else(|| missing("service"))?;
    let id = f.id.filter(|s| !is_blank(s)).ok_or_else(|| missing("id"))?;
    let protocol_version = f
        .protocol_version
        .ok_or_else(|| missing("protocolVersion"))?;
    if protocol_version != PROTOCOL_VERSION {
        return Err(client(
            ErrorKind::InvalidProtocolVersion,
            format!("protocolVersion must be `{PROTOCOL_VERSION}`"),
        ));
    }
    Ok(SoapHeader {
        client: client_id,
        service,
        id,
        user_id: f.user_id,
        issue: f.issue,
        protocol_version,
        request_hash: f.request_hash,
        security_server: f.security_server,
        represented_party: f.represented_party,
    })
}

fn read_document(r: &mut Reader<'_>, limits: &Limits, mode: Mode) -> Result<Envelope, Fault> {
    // Prolog: declaration, comments and whitespace, then the root element.
    let env = loop {
        let ev = r.next().map_err(invalid_xml)?;
        match ev.event {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            Event::Start(s) => {
                let env = read_envelope(r, &s, limits, mode)?;
                break env;
            }
            Event::Empty(s) => {
                check_envelope_name(r, &s)?;
                return Err(client(
                    ErrorKind::MissingHeader,
                    "the SOAP envelope is empty",
                ));
            }
            Event::Eof => return Err(client(ErrorKind::InvalidSoap, "the message is empty")),
            _ => {
                return Err(invalid_xml(XmlError::Malformed(
                    "content before the root element".into(),
                )));
            }
        }
    };
    // Epilog: only comments and whitespace.
    loop {
        let ev = r.next().map_err(invalid_xml)?;
        match ev.event {
            Event::Comment(_) => {}
            Event::Text(t) if is_blank(&t) => {}
            Event::Eof => return Ok(env),
            _ => {
                return Err(invalid_xml(XmlError::Malformed(
                    "content after the root element".into(),
                )));
            }
        }
    }
}

fn check_envelope_name(r: &Reader<'_>, s: &BytesStart<'_>) -> Result<(), Fault> {
    let name = r.element_name(s.name()).map_err(invalid_xml)?;
    if name.is(SOAP_ENV_NS, "Envelope") {
        Ok(())
    } else if name.is(SOAP12_ENV_NS, "Envelope") {
        Err(client(
            ErrorKind::InvalidSoap,
            "SOAP 1.2 is not supported; X-Road uses SOAP 1.1",
        ))
    } else {
        Err(client(
            ErrorKind::InvalidSoap,
            format!(
                "root element {{{}}}{} is not a SOAP 1.1 Envelope",
                name.ns, name.local
            ),
        ))
    }
}

fn malformed(msg: impl Into<String>) -> Fault {
    client(ErrorKind::MalformedSoap, msg)
}

fn read_envelope(
    r: &mut Reader<'_>,
    start: &BytesStart<'_>,
    limits: &Limits,
    mode: Mode,
) -> Result<Envelope, Fault> {
    check_envelope_name(r, start)?;
    let mut env = Envelope {
        header: None,
        body: None,
    };
    loop {
        let ev = r.next().map_err(invalid_xml)?;
        let (s, empty) = match ev.event {
            Event::Comment(_) => continue,
            Event::Text(t) if is_blank(&t) => continue,
            Event::End(_) => return Ok(env),
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            _ => return Err(malformed("unexpected content in the SOAP Envelope")),
        };
        let name = r.element_name(s.name()).map_err(invalid_xml)?;
        if name.is(SOAP_ENV_NS, "Header") {
            if env.header.is_some() {
                return Err(malformed("the SOAP envelope has two Header elements"));
            }
            if env.body.is_some() {
                return Err(malformed("the SOAP Header must come before the Body"));
            }
            env.header = Some(if empty {
                // No fields, so validation rejects the message before anything is spliced at
                // this offset.
                (Found::default(), Vec::new(), ev.start)
            } else {
                read_header(r, limits)?
            });
        } else if name.is(SOAP_ENV_NS, "Body") {
            if env.body.is_some() {
                return Err(malformed("the SOAP envelope has two Body elements"));
            }
            env.body = Some(if empty {
                BodyOutcome::Content {
                    content: ev.end..ev.end,
                    element: None,
                }
            } else {
                read_body(r, ev.end, mode)?
            });
        } else if env.body.is_some() && !name.ns.is_empty() {
            // SOAP 1.1 allows namespace-qualified elements after the Body.
            if !empty {
                r.skip_element().map_err(invalid_xml)?;
            }
        } else {
            return Err(malformed(format!(
                "unexpected element `{}` in the SOAP Envelope",
                name.local
            )));
        }
    }
}

fn duplicate(field: &str) -> Fault {
    client(
        ErrorKind::DuplicateHeaderField,
        format!("header field `{field}` appears more than once"),
    )
}

fn set_once<T>(slot: &mut Option<T>, value: T, field: &str) -> Result<(), Fault> {
    if slot.is_some() {
        return Err(duplicate(field));
    }
    *slot = Some(value);
    Ok(())
}

fn read_header(
    r: &mut Reader<'_>,
    limits: &Limits,
) -> Result<(Found, Vec<HeaderElement>, usize), Fault> {
    let mut found = Found::default();
    let mut elements = Vec::new();
    loop {
        let ev = r.next().map_err(invalid_xml)?;
        let (s, empty) = match ev.event {
            Event::Comment(_) => continue,
            Event::Text(t) if is_blank(&t) => continue,
            Event::End(_) => return Ok((found, elements, ev.start)),
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            _ => return Err(malformed("unexpected text in the SOAP Header")),
        };
        if elements.len() >= limits.max_header_elements {
            return Err(client(
                ErrorKind::InvalidSoap,
                format!(
                    "the SOAP Header has more than {} elements",
                    limits.max_header_elements
                ),
            ));
        }
        let name = r.element_name(s.name()).map_err(invalid_xml)?;
        let field = classify(&name);
        let end = read_field(r, &s, empty, field, &mut found)?.unwrap_or(ev.end);
        elements.push(HeaderElement {
            field,
            namespace: name.ns,
            local_name: name.local,
            range: ev.start..end,
        });
    }
}

fn classify(name: &ExpandedName) -> HeaderField {
    if name.ns == XROAD_NS {
        match name.local.as_str() {
            "client" => HeaderField::Client,
            "service" => HeaderField::Service,
            "id" => HeaderField::Id,
            "userId" => HeaderField::UserId,
            "issue" => HeaderField::Issue,
            "protocolVersion" => HeaderField::ProtocolVersion,
            "requestHash" => HeaderField::RequestHash,
            "securityServer" => HeaderField::SecurityServer,
            _ => HeaderField::Extension,
        }
    } else if name.is(REPRESENTATION_NS, "representedParty") {
        HeaderField::RepresentedParty
    } else {
        HeaderField::Extension
    }
}

/// Reads one header field whose start tag was just read, storing its value. Returns the offset
/// past its end tag (`None` for an empty-element tag, which ends where it starts).
fn read_field(
    r: &mut Reader<'_>,
    s: &BytesStart<'_>,
    empty: bool,
    field: HeaderField,
    found: &mut Found,
) -> Result<Option<usize>, Fault> {
    let name = field.local_name().unwrap_or("extension");
    let mut end = None;
    let mut text = |r: &mut Reader<'_>| -> Result<String, Fault> {
        if empty {
            return Ok(String::new());
        }
        let v = r.text_content().map_err(|e| match e {
            Some(e) => invalid_xml(e),
            None => client(
                ErrorKind::InvalidSoap,
                format!("header field `{name}` must contain only text"),
            ),
        })?;
        end = Some(r.position());
        Ok(v)
    };
    match field {
        HeaderField::Client => {
            let id = read_identifier(r, s, empty, ErrorKind::InvalidClientIdentifier, name)?;
            let XRoadId::Client(c) = id.0 else {
                return Err(client(
                    ErrorKind::InvalidClientIdentifier,
                    "`client` must have objectType MEMBER or SUBSYSTEM",
                ));
            };
            set_once(&mut found.client, c, name)?;
            return Ok(id.1);
        }
        HeaderField::Service => {
            let id = read_identifier(r, s, empty, ErrorKind::InvalidClientIdentifier, name)?;
            let XRoadId::Service(v) = id.0 else {
                return Err(client(
                    ErrorKind::InvalidClientIdentifier,
                    "`service` must have objectType SERVICE",
                ));
            };
            set_once(&mut found.service, v, name)?;
            return Ok(id.1);
        }
        HeaderField::SecurityServer => {
            let id = read_identifier(r, s, empty, ErrorKind::InvalidSecurityServer, name)?;
            let XRoadId::Server(v) = id.0 else {
                return Err(client(
                    ErrorKind::InvalidSecurityServer,
                    "`securityServer` must have objectType SERVER",
                ));
            };
            set_once(&mut found.security_server, v, name)?;
            return Ok(id.1);
        }
        HeaderField::Id => {
            let v = text(r)?;
            set_once(&mut found.id, v, name)?;
        }
        HeaderField::UserId => {
            let v = text(r)?;
            set_once(&mut found.user_id, v, name)?;
        }
        HeaderField::Issue => {
            let v = text(r)?;
            set_once(&mut found.issue, v, name)?;
        }
        HeaderField::ProtocolVersion => {
            let v = text(r)?;
            set_once(&mut found.protocol_version, v, name)?;
        }
        HeaderField::RequestHash => {
            let algorithm_id = r
                .attribute(s, "", "algorithmId")
                .map_err(invalid_xml)?
                .unwrap_or_default();
            let value = text(r)?.trim().to_owned();
            set_once(
                &mut found.request_hash,
                RequestHash {
                    algorithm_id,
                    value,
                },
                name,
            )?;
        }
        HeaderField::RepresentedParty => {
            let (party, e) = read_party(r, empty)?;
            set_once(&mut found.represented_party, party, name)?;
            return Ok(e);
        }
        HeaderField::Extension => {
            if !empty {
                return r.skip_element().map(Some).map_err(invalid_xml);
            }
        }
    }
    Ok(end)
}

/// Reads an identifier element (`client`, `service`, `securityServer`).
fn read_identifier(
    r: &mut Reader<'_>,
    s: &BytesStart<'_>,
    empty: bool,
    kind: ErrorKind,
    field: &str,
) -> Result<(XRoadId, Option<usize>), Fault> {
    let bad = |msg: String| client(kind, format!("invalid `{field}` identifier: {msg}"));
    let ty = match r
        .attribute(s, IDENTIFIERS_NS, "objectType")
        .map_err(invalid_xml)?
    {
        Some(t) => t,
        // Tolerate the unqualified spelling some hand-written clients use.
        None => r
            .attribute(s, "", "objectType")
            .map_err(invalid_xml)?
            .ok_or_else(|| bad("objectType is missing".into()))?,
    };
    let ty: ObjectType = ty.trim().parse().map_err(|e| bad(format!("{e}")))?;
    let mut fields: Vec<(IdField, String)> = Vec::with_capacity(6);
    let mut end = None;
    if !empty {
        loop {
            let ev = r.next().map_err(invalid_xml)?;
            let (c, child_empty) = match ev.event {
                Event::Comment(_) => continue,
                Event::Text(t) if is_blank(&t) => continue,
                Event::End(_) => {
                    end = Some(ev.end);
                    break;
                }
                Event::Start(c) => (c, false),
                Event::Empty(c) => (c, true),
                _ => return Err(bad("unexpected text".into())),
            };
            let name = r.element_name(c.name()).map_err(invalid_xml)?;
            let f = (name.ns == IDENTIFIERS_NS)
                .then(|| IdField::from_local_name(&name.local))
                .flatten()
                .ok_or_else(|| bad(format!("unexpected element `{}`", name.local)))?;
            let value = if child_empty {
                String::new()
            } else {
                r.text_content().map_err(|e| match e {
                    Some(e) => invalid_xml(e),
                    None => bad(format!("`{}` must contain only text", name.local)),
                })?
            };
            fields.push((f, value));
        }
    }
    let id = XRoadId::from_xml_fields(ty, &fields).map_err(|e| bad(e.to_string()))?;
    Ok((id, end))
}

fn read_party(r: &mut Reader<'_>, empty: bool) -> Result<(RepresentedParty, Option<usize>), Fault> {
    let bad = |msg: &str| {
        client(
            ErrorKind::InvalidClientIdentifier,
            format!("invalid `representedParty`: {msg}"),
        )
    };
    let mut class = None;
    let mut code = None;
    let mut end = None;
    if !empty {
        loop {
            let ev = r.next().map_err(invalid_xml)?;
            let (c, child_empty) = match ev.event {
                Event::Comment(_) => continue,
                Event::Text(t) if is_blank(&t) => continue,
                Event::End(_) => {
                    end = Some(ev.end);
                    break;
                }
                Event::Start(c) => (c, false),
                Event::Empty(c) => (c, true),
                _ => return Err(bad("unexpected text")),
            };
            let name = r.element_name(c.name()).map_err(invalid_xml)?;
            let value = if child_empty {
                String::new()
            } else {
                r.text_content().map_err(|e| match e {
                    Some(e) => invalid_xml(e),
                    None => bad("fields must contain only text"),
                })?
            };
            let slot = match (name.ns == REPRESENTATION_NS, name.local.as_str()) {
                (true, "partyClass") if code.is_none() => &mut class,
                (true, "partyCode") => &mut code,
                _ => return Err(bad("expected partyClass? then partyCode")),
            };
            if slot.is_some() {
                return Err(bad("a field appears twice"));
            }
            *slot = Some(value.trim().to_owned());
        }
    }
    let code = code.ok_or_else(|| bad("partyCode is missing"))?;
    let party = RepresentedParty::new(class.as_deref(), &code).map_err(|e| bad(&e.to_string()))?;
    Ok((party, end))
}

fn read_body(r: &mut Reader<'_>, content_start: usize, mode: Mode) -> Result<BodyOutcome, Fault> {
    let mut element: Option<BodyElement> = None;
    loop {
        let ev = r.next().map_err(invalid_xml)?;
        let (s, empty) = match ev.event {
            Event::End(_) => {
                return Ok(BodyOutcome::Content {
                    content: content_start..ev.start,
                    element,
                });
            }
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::Eof => return Err(invalid_xml(XmlError::Malformed("unexpected end".into()))),
            // Text, comments and references are carried through untouched.
            _ => continue,
        };
        let name = r.element_name(s.name()).map_err(invalid_xml)?;
        if element.is_none() && name.is(SOAP_ENV_NS, "Fault") {
            if mode == Mode::Request {
                return Err(client(
                    ErrorKind::InvalidBody,
                    "a request body must not be a SOAP fault",
                ));
            }
            if empty {
                return Err(malformed("SOAP fault has no faultcode"));
            }
            let fault = read_fault(r)?;
            // The fault must be the body's only content.
            loop {
                let ev = r.next().map_err(invalid_xml)?;
                match ev.event {
                    Event::End(_) => return Ok(BodyOutcome::Fault(fault)),
                    Event::Comment(_) => {}
                    Event::Text(t) if is_blank(&t) => {}
                    _ => return Err(malformed("a SOAP Fault must be alone in the Body")),
                }
            }
        }
        let end = if empty {
            ev.end
        } else {
            r.skip_element().map_err(invalid_xml)?
        };
        if element.is_none() {
            element = Some(BodyElement {
                namespace: name.ns,
                local_name: name.local,
                range: ev.start..end,
            });
        }
    }
}
