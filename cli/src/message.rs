//! `trustbus message`: check identifiers and X-Road messages offline, the way a security server
//! would, so an integrator can see the exact fault code before sending anything.

use std::path::PathBuf;

use clap::Subcommand;
use trustbus_sdk::fault::{Fault, FaultDialect};
use trustbus_sdk::id::{ClientId, SecurityServerId, ServiceId, XRoadId};
use trustbus_sdk::multipart::{self, SoapContentType};
use trustbus_sdk::rest::{Headers, RequestHeaderPart, RestRequest, XRoadHeaders, request_hash};
use trustbus_sdk::soap::{self, HashAlgorithm, Limits};

/// Offline message and identifier checks.
#[derive(Debug, Subcommand)]
pub(crate) enum MessageCommand {
    /// Prints an identifier in its slash, display and XML forms.
    ///
    /// Accepts the display form (`SUBSYSTEM:DEV/GOV/1234/tax-board`) or a slash form; a slash
    /// form is read as a client, then a service, then a security server, unless --kind says.
    Id {
        /// The identifier.
        id: String,
        /// How to read a slash form: client, service or server.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Checks a SOAP request (X-Road message protocol 4.0) and prints its header fields and
    /// request hash, or the fault a security server would answer with.
    Soap {
        /// File with the HTTP body (envelope, or multipart/related with attachments).
        file: PathBuf,
        /// The request's Content-Type header.
        #[arg(long, default_value = "text/xml; charset=UTF-8")]
        content_type: String,
        /// Emit fault codes in the X-Road 7.8 lowercase dialect.
        #[arg(long)]
        lowercase: bool,
    },
    /// Checks a REST request (`/r1/` protocol) and prints the service, the bus headers, the
    /// serialised header part and `X-Road-Request-Hash`, or the fault.
    Rest {
        /// HTTP method.
        method: String,
        /// Request target: `/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path][?query]`.
        target: String,
        /// A request header, `Name: value`; repeat for several.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// File with the request body, if any.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The request id to put into the header part (a fixed value keeps output comparable).
        #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
        request_id: String,
        /// Emit fault codes in the X-Road 7.8 lowercase dialect.
        #[arg(long)]
        lowercase: bool,
    },
}

/// Why a message command failed; a rejected message is reported, not an error of the tool.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MessageError {
    /// Reading an input file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The input was rejected; the fault is what a security server would answer.
    #[error("{0}")]
    Rejected(String),
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn run(cmd: MessageCommand) -> Result<(), MessageError> {
    match cmd {
        MessageCommand::Id { id, kind } => print_id(&id, kind.as_deref()),
        MessageCommand::Soap {
            file,
            content_type,
            lowercase,
        } => check_soap(&file, &content_type, dialect(lowercase)),
        MessageCommand::Rest {
            method,
            target,
            headers,
            body,
            request_id,
            lowercase,
        } => check_rest(
            &method,
            &target,
            &headers,
            body.as_deref(),
            &request_id,
            dialect(lowercase),
        ),
    }
}

fn dialect(lowercase: bool) -> FaultDialect {
    if lowercase {
        FaultDialect::Lowercase
    } else {
        FaultDialect::Classic
    }
}

fn rejected(f: &Fault, dialect: FaultDialect) -> MessageError {
    MessageError::Rejected(format!(
        "rejected: {} ({}), HTTP {}",
        f.code.render(dialect),
        f.message,
        f.http_status()
    ))
}

fn parse_any_id(s: &str, kind: Option<&str>) -> Result<XRoadId, String> {
    if s.contains(':') {
        return XRoadId::from_display(s).map_err(|e| e.to_string());
    }
    match kind {
        Some("client") => ClientId::from_slash(s).map(XRoadId::Client),
        Some("service") => ServiceId::from_slash(s).map(XRoadId::Service),
        Some("server") => SecurityServerId::from_slash(s).map(XRoadId::Server),
        Some(other) => {
            return Err(format!(
                "unknown --kind {other:?}; use client, service or server"
            ));
        }
        // Report the client reading's error: a mistyped client is the common case.
        None => ClientId::from_slash(s)
            .map(XRoadId::Client)
            .or_else(|client_err| {
                ServiceId::from_slash(s)
                    .map(XRoadId::Service)
                    .map_err(|_| client_err)
            }),
    }
    .map_err(|e| e.to_string())
}

fn print_id(s: &str, kind: Option<&str>) -> Result<(), MessageError> {
    let id = parse_any_id(s, kind).map_err(|e| MessageError::Rejected(format!("rejected: {e}")))?;
    let mut xml = String::new();
    id.write_xml(&mut xml, "xrd:id", "id");
    println!("display: {id}");
    println!("slash:   {}", id.to_slash());
    println!("xml:     {xml}");
    Ok(())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, MessageError> {
    std::fs::read(path).map_err(|source| MessageError::Read {
        path: path.to_owned(),
        source,
    })
}

fn check_soap(
    file: &std::path::Path,
    content_type: &str,
    dialect: FaultDialect,
) -> Result<(), MessageError> {
    let bytes = read(file)?;
    let limits = Limits::default();
    let (soap_bytes, attachments) =
        match multipart::check_content_type(content_type).map_err(|f| rejected(&f, dialect))? {
            SoapContentType::Xml => (multipart::strip_bom(&bytes).to_vec(), 0),
            SoapContentType::Multipart(ty) => {
                let mp = multipart::parse_multipart(bytes, &ty, &limits)
                    .map_err(|f| rejected(&f, dialect))?;
                (mp.soap_bytes().to_vec(), mp.attachments().count())
            }
        };
    let msg = soap::parse_request(soap_bytes, &limits).map_err(|f| rejected(&f, dialect))?;
    let h = msg.header();
    println!("accepted: X-Road message protocol {}", h.protocol_version);
    println!("client:   {}", h.client);
    println!("service:  {}", h.service);
    println!("id:       {}", h.id);
    if let Some(u) = &h.user_id {
        println!("userId:   {u} (unverified: asserted by the client)");
    }
    if let Some(i) = &h.issue {
        println!("issue:    {i}");
    }
    if let Some(s) = &h.security_server {
        println!("securityServer: {s}");
    }
    if let Some(p) = &h.represented_party {
        println!("representedParty: {}", p.to_slash());
    }
    println!("attachments: {attachments}");
    println!(
        "requestHash (sha512): {}",
        soap::request_hash(msg.bytes(), HashAlgorithm::Sha512)
    );
    Ok(())
}

fn check_rest(
    method: &str,
    target: &str,
    raw_headers: &[String],
    body: Option<&std::path::Path>,
    request_id: &str,
    dialect: FaultDialect,
) -> Result<(), MessageError> {
    let mut headers = Headers::new();
    for h in raw_headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| MessageError::Usage(format!("header {h:?} is not `Name: value`")))?;
        headers.push_str(name.trim().to_owned(), value.trim());
    }
    let body = body.map(read).transpose()?;
    let request = RestRequest::parse(method, target).map_err(|e| rejected(&e.fault(), dialect))?;
    let xroad = XRoadHeaders::from_headers(&headers).map_err(|e| rejected(&e.fault(), dialect))?;
    let part = RequestHeaderPart::for_transport(&request, &headers, &xroad, request_id);
    let part_bytes = part
        .to_bytes()
        .map_err(|e| rejected(&e.request_fault(), dialect))?;
    println!("accepted: REST r1");
    println!("service:  {}", request.service());
    println!("client:   {}", xroad.client);
    println!(
        "id:       {}{}",
        xroad.message_id,
        if xroad.message_id_generated {
            " (generated)"
        } else {
            ""
        }
    );
    println!("path:     {}", request.path());
    println!("header part:");
    for line in String::from_utf8_lossy(&part_bytes).split_inclusive("\r\n") {
        println!("  {}", line.escape_debug());
    }
    println!(
        "X-Road-Request-Hash: {}",
        request_hash(&part_bytes, body.as_deref())
    );
    Ok(())
}
