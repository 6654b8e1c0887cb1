//! SOAP faults: the shape security servers emit, and reading a fault back.

use quick_xml::events::Event;

use super::parse::{client, invalid_xml};
use super::{Limits, SOAP_ENV_NS, SoapResponse, parse_response};
use crate::fault::{ErrorKind, Fault, FaultCode, FaultDialect};
use crate::xml::{Reader, escape_into};

/// The fields of a SOAP 1.1 fault as received. The code is kept as text because services may
/// send codes that are not X-Road's (`SOAP-ENV:Server`, their own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoapFault {
    /// `faultcode`
    pub code: String,
    /// `faultstring`
    pub string: String,
    /// `faultactor`, if present.
    pub actor: Option<String>,
    /// Text of `detail/faultDetail` (the correlation id in X-Road faults), if present.
    pub detail: Option<String>,
}

impl SoapFault {
    /// The X-Road fault this is, if its code is an X-Road code in either dialect.
    pub fn to_fault(&self) -> Option<Fault> {
        let code = FaultCode::parse(self.code.trim())?;
        Some(Fault {
            code,
            message: self.string.clone(),
            correlation_id: self.detail.clone().unwrap_or_default(),
        })
    }
}

/// Renders a fault the way X-Road security servers do, with the correlation id as
/// `faultDetail`.
pub fn render_fault(fault: &Fault, dialect: FaultDialect) -> Vec<u8> {
    let mut out = String::with_capacity(320 + fault.message.len());
    out.push_str(concat!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">"#,
        "<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>"
    ));
    escape_into(&mut out, &fault.code.render(dialect));
    out.push_str("</faultcode><faultstring>");
    escape_into(&mut out, &fault.message);
    out.push_str(r#"</faultstring><detail><faultDetail xmlns="">"#);
    escape_into(&mut out, &fault.correlation_id);
    out.push_str("</faultDetail></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>");
    out.into_bytes()
}

/// Parses an envelope that must carry a SOAP fault.
pub fn parse_fault(bytes: &[u8], limits: &Limits) -> Result<SoapFault, Fault> {
    match parse_response(bytes, limits)? {
        SoapResponse::Fault { fault, .. } => Ok(fault),
        SoapResponse::Message(_) => Err(client(
            ErrorKind::InvalidSoap,
            "the envelope does not carry a SOAP fault",
        )),
    }
}

fn text(r: &mut Reader<'_>, what: &str) -> Result<String, Fault> {
    r.text_content().map_err(|e| match e {
        Some(e) => invalid_xml(e),
        None => client(
            ErrorKind::MalformedSoap,
            format!("fault `{what}` must contain only text"),
        ),
    })
}

/// Reads the children of `SOAP-ENV:Fault`, whose start tag was just read, through its end tag.
pub(super) fn read_fault(r: &mut Reader<'_>) -> Result<SoapFault, Fault> {
    let mut fault = SoapFault::default();
    let mut has_code = false;
    loop {
        let ev = r.next().map_err(invalid_xml)?;
        let (s, empty) = match ev.event {
            Event::End(_) => break,
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::Eof => return Err(client(ErrorKind::InvalidXml, "unexpected end")),
            _ => continue,
        };
        let name = r.element_name(s.name()).map_err(invalid_xml)?;
        // SOAP 1.1 puts the fault children in no namespace; some toolkits qualify them.
        if !(name.ns.is_empty() || name.ns == SOAP_ENV_NS) {
            if !empty {
                r.skip_element().map_err(invalid_xml)?;
            }
            continue;
        }
        match (name.local.as_str(), empty) {
            (_, true) => {}
            ("faultcode", false) => {
                fault.code = text(r, "faultcode")?.trim().to_owned();
                has_code = true;
            }
            ("faultstring", false) => fault.string = text(r, "faultstring")?,
            ("faultactor", false) => fault.actor = Some(text(r, "faultactor")?),
            ("detail", false) => fault.detail = read_detail(r)?,
            _ => {
                r.skip_element().map_err(invalid_xml)?;
            }
        }
    }
    if !has_code {
        return Err(client(
            ErrorKind::MalformedSoap,
            "SOAP fault has no faultcode",
        ));
    }
    Ok(fault)
}

fn read_detail(r: &mut Reader<'_>) -> Result<Option<String>, Fault> {
    let mut detail = None;
    loop {
        let ev = r.next().map_err(invalid_xml)?;
        match ev.event {
            Event::End(_) => return Ok(detail),
            Event::Start(s) => {
                let name = r.element_name(s.name()).map_err(invalid_xml)?;
                if name.local == "faultDetail" && detail.is_none() {
                    detail = Some(text(r, "faultDetail")?.trim().to_owned());
                } else {
                    r.skip_element().map_err(invalid_xml)?;
                }
            }
            Event::Eof => return Err(client(ErrorKind::InvalidXml, "unexpected end")),
            _ => {}
        }
    }
}
