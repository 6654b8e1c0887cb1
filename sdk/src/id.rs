//! X-Road identifiers: clients, services, security servers, global and local groups.
//!
//! Three textual forms are supported, all strict about the characters X-Road allows
//! (`A–Z a–z 0–9 ' ( ) + , - . = ?`, see `docs/protocol.md`):
//!
//! * the **slash form** used in REST paths and `X-Road-*` headers, each segment
//!   percent-encoded (`DEV/GOV/1234/tax-board`);
//! * the **display form** with the object type in front (`SUBSYSTEM:DEV/GOV/1234/tax-board`);
//! * the **XML form** of the `http://x-road.eu/xsd/identifiers` namespace with `objectType`.
//!
//! In the slash and display forms a service is written as its provider followed by the service
//! code and optional version. Five segments are read as `INSTANCE/CLASS/MEMBER/SUBSYSTEM/CODE`
//! (the REST case), six as the same plus a version, four as a member-level service. A
//! member-level service *with* a version has the same shape as a subsystem service without one;
//! like X-Road we read it as the latter, so such a service only round-trips through XML.

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Namespace of the identifier elements and of the `objectType` attribute.
pub const IDENTIFIERS_NS: &str = "http://x-road.eu/xsd/identifiers";

/// Longest identifier segment we accept; X-Road sets no limit, but unbounded keys are an abuse vector.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Characters escaped in the slash form. Everything outside the allowed set is escaped anyway;
/// of the allowed punctuation, `?` would end a path and `+`/`=`/`,` are ambiguous in queries.
const SEGMENT_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// A segment or element that must have a value is empty.
    #[error("identifier field `{field}` is empty")]
    Empty {
        /// Name of the field, as in the XML schema.
        field: &'static str,
    },
    /// A character outside `A–Z a–z 0–9 ' ( ) + , - . = ?`.
    #[error(
        "identifier field `{field}` contains the character {ch:?}, which X-Road identifiers do not allow"
    )]
    InvalidChar {
        /// Name of the field.
        field: &'static str,
        /// The offending character.
        ch: char,
    },
    /// A segment longer than [`MAX_SEGMENT_LEN`].
    #[error("identifier field `{field}` is longer than {MAX_SEGMENT_LEN} characters")]
    TooLong {
        /// Name of the field.
        field: &'static str,
    },
    /// The slash form had a number of segments this kind of identifier cannot have.
    #[error("a {kind} identifier has {expected} segments, found {found}")]
    SegmentCount {
        /// The kind of identifier being parsed.
        kind: &'static str,
        /// What the kind allows, in words.
        expected: &'static str,
        /// How many segments there were.
        found: usize,
    },
    /// A `%` escape that is not two hex digits or does not decode to UTF-8.
    #[error("identifier segment {segment:?} is not valid percent-encoded UTF-8")]
    BadPercentEncoding {
        /// The raw segment.
        segment: String,
    },
    /// The display form lacks the `TYPE:` prefix or names an unknown type.
    #[error("unknown identifier object type {0:?}")]
    UnknownObjectType(String),
    /// The object type is known but not the one expected here.
    #[error("expected an identifier of type {expected}, found {found}")]
    WrongObjectType {
        /// The object type(s) accepted here.
        expected: &'static str,
        /// The object type found.
        found: ObjectType,
    },
    /// An XML identifier misses a field its object type requires.
    #[error("identifier of type {object_type} is missing the field `{field}`")]
    MissingField {
        /// The object type of the identifier.
        object_type: ObjectType,
        /// The missing field.
        field: &'static str,
    },
    /// An XML identifier carries a field its object type does not have, or a field twice,
    /// or fields out of the schema's order.
    #[error("identifier of type {object_type} has an unexpected field `{field}`")]
    UnexpectedField {
        /// The object type of the identifier.
        object_type: ObjectType,
        /// The unexpected field.
        field: String,
    },
}

/// The `objectType` of an identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// A member (organisation).
    Member,
    /// A subsystem of a member.
    Subsystem,
    /// A security server.
    Server,
    /// A global group defined by the central server.
    GlobalGroup,
    /// A local group defined on one security server.
    LocalGroup,
    /// A service.
    Service,
}

impl ObjectType {
    /// The name used in `objectType` and in the display form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Member => "MEMBER",
            Self::Subsystem => "SUBSYSTEM",
            Self::Server => "SERVER",
            Self::GlobalGroup => "GLOBALGROUP",
            Self::LocalGroup => "LOCALGROUP",
            Self::Service => "SERVICE",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectType {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Ok(match s {
            "MEMBER" => Self::Member,
            "SUBSYSTEM" => Self::Subsystem,
            "SERVER" => Self::Server,
            "GLOBALGROUP" => Self::GlobalGroup,
            "LOCALGROUP" => Self::LocalGroup,
            "SERVICE" => Self::Service,
            other => return Err(IdError::UnknownObjectType(other.to_owned())),
        })
    }
}

/// The XML elements of an identifier, in the order the schema's sequence requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdField {
    /// `xRoadInstance`
    Instance,
    /// `memberClass`
    MemberClass,
    /// `memberCode`
    MemberCode,
    /// `subsystemCode`
    SubsystemCode,
    /// `groupCode`
    GroupCode,
    /// `serviceCode`
    ServiceCode,
    /// `serviceVersion`
    ServiceVersion,
    /// `serverCode`
    ServerCode,
}

impl IdField {
    /// Every field in schema order.
    pub const ALL: [Self; 8] = [
        Self::Instance,
        Self::MemberClass,
        Self::MemberCode,
        Self::SubsystemCode,
        Self::GroupCode,
        Self::ServiceCode,
        Self::ServiceVersion,
        Self::ServerCode,
    ];

    /// The element's local name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Instance => "xRoadInstance",
            Self::MemberClass => "memberClass",
            Self::MemberCode => "memberCode",
            Self::SubsystemCode => "subsystemCode",
            Self::GroupCode => "groupCode",
            Self::ServiceCode => "serviceCode",
            Self::ServiceVersion => "serviceVersion",
            Self::ServerCode => "serverCode",
        }
    }

    /// The field for an element's local name, if it is one.
    pub fn from_local_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// Checks one identifier value against the strict character rules.
pub fn validate_segment(field: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { field });
    }
    if value.len() > MAX_SEGMENT_LEN {
        return Err(IdError::TooLong { field });
    }
    if let Some(ch) = value.chars().find(|c| !is_allowed_char(*c)) {
        return Err(IdError::InvalidChar { field, ch });
    }
    Ok(())
}

/// Whether X-Road's strict rules allow `c` in an identifier.
pub const fn is_allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '\'' | '(' | ')' | '+' | ',' | '-' | '.' | '=' | '?')
}

fn checked(field: &'static str, value: &str) -> Result<String, IdError> {
    validate_segment(field, value)?;
    Ok(value.to_owned())
}

fn checked_owned(field: &'static str, value: String) -> Result<String, IdError> {
    validate_segment(field, &value)?;
    Ok(value)
}

fn encode_segment(out: &mut String, value: &str) {
    out.extend(utf8_percent_encode(value, SEGMENT_ESCAPE));
}

/// Splits a slash-form identifier into percent-decoded segments.
fn split_slash(s: &str) -> Result<Vec<String>, IdError> {
    s.split('/')
        .map(|seg| {
            // percent_decode_str passes malformed escapes through; we reject them instead.
            let b = seg.as_bytes();
            let malformed = b.iter().enumerate().any(|(i, &c)| {
                c == b'%'
                    && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                        && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            });
            if malformed {
                return Err(IdError::BadPercentEncoding {
                    segment: seg.to_owned(),
                });
            }
            percent_decode_str(seg)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| IdError::BadPercentEncoding {
                    segment: seg.to_owned(),
                })
        })
        .collect()
}

/// Splits the display form `TYPE:a/b/c` into its type and the (not encoded) segments.
fn split_display(s: &str) -> Result<(ObjectType, Vec<&str>), IdError> {
    let (ty, rest) = s
        .split_once(':')
        .ok_or_else(|| IdError::UnknownObjectType(String::new()))?;
    Ok((ty.parse()?, rest.split('/').collect()))
}

/// A client: a member, or a subsystem of a member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    instance: String,
    member_class: String,
    member_code: String,
    subsystem: Option<String>,
}

impl ClientId {
    /// A member identifier.
    pub fn member(instance: &str, member_class: &str, member_code: &str) -> Result<Self, IdError> {
        Ok(Self {
            instance: checked("xRoadInstance", instance)?,
            member_class: checked("memberClass", member_class)?,
            member_code: checked("memberCode", member_code)?,
            subsystem: None,
        })
    }

    /// A subsystem identifier.
    pub fn subsystem(
        instance: &str,
        member_class: &str,
        member_code: &str,
        subsystem: &str,
    ) -> Result<Self, IdError> {
        let mut id = Self::member(instance, member_class, member_code)?;
        id.subsystem = Some(checked("subsystemCode", subsystem)?);
        Ok(id)
    }

    /// The X-Road instance code.
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// The member class.
    pub fn member_class(&self) -> &str {
        &self.member_class
    }
    /// The member code.
    pub fn member_code(&self) -> &str {
        &self.member_code
    }
    /// The subsystem code, if this is a subsystem.
    pub fn subsystem_code(&self) -> Option<&str> {
        self.subsystem.as_deref()
    }
    /// `SUBSYSTEM` or `MEMBER`.
    pub fn object_type(&self) -> ObjectType {
        if self.subsystem.is_some() {
            ObjectType::Subsystem
        } else {
            ObjectType::Member
        }
    }
    /// The member this client belongs to (itself if it is a member).
    pub fn owner(&self) -> Self {
        Self {
            subsystem: None,
            ..self.clone()
        }
    }

    fn from_segments(segs: &[String]) -> Result<Self, IdError> {
        Self::from_owned_segments(segs.to_vec())
    }

    /// Takes the (decoded) segments over instead of copying them: every message names a
    /// client and a service in slash form.
    fn from_owned_segments(segs: Vec<String>) -> Result<Self, IdError> {
        let found = segs.len();
        let mut it = segs.into_iter();
        match (it.next(), it.next(), it.next(), it.next(), it.next()) {
            (Some(i), Some(c), Some(m), s, None) => Ok(Self {
                instance: checked_owned("xRoadInstance", i)?,
                member_class: checked_owned("memberClass", c)?,
                member_code: checked_owned("memberCode", m)?,
                subsystem: s.map(|s| checked_owned("subsystemCode", s)).transpose()?,
            }),
            _ => Err(IdError::SegmentCount {
                kind: "client",
                expected: "3 (member) or 4 (subsystem)",
                found,
            }),
        }
    }

    /// Parses the slash form `INSTANCE/CLASS/MEMBER[/SUBSYSTEM]` (percent-encoded segments).
    pub fn from_slash(s: &str) -> Result<Self, IdError> {
        Self::from_owned_segments(split_slash(s)?)
    }

    /// The slash form, each segment percent-encoded.
    pub fn to_slash(&self) -> String {
        let mut out = String::with_capacity(64);
        self.write_slash(&mut out);
        out
    }

    fn write_slash(&self, out: &mut String) {
        encode_segment(out, &self.instance);
        out.push('/');
        encode_segment(out, &self.member_class);
        out.push('/');
        encode_segment(out, &self.member_code);
        if let Some(s) = &self.subsystem {
            out.push('/');
            encode_segment(out, s);
        }
    }

    fn write_plain(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.instance, self.member_class, self.member_code
        )?;
        if let Some(s) = &self.subsystem {
            write!(f, "/{s}")?;
        }
        Ok(())
    }

    /// Parses the display form `MEMBER:…` or `SUBSYSTEM:…`.
    pub fn from_display(s: &str) -> Result<Self, IdError> {
        let (ty, segs) = split_display(s)?;
        let segs: Vec<String> = segs.into_iter().map(str::to_owned).collect();
        let id = Self::from_segments(&segs)?;
        if id.object_type() != ty {
            return Err(IdError::WrongObjectType {
                expected: id.object_type().as_str(),
                found: ty,
            });
        }
        Ok(id)
    }

    /// The XML form's fields, in schema order.
    pub fn xml_fields(&self) -> Vec<(IdField, &str)> {
        let mut v = vec![
            (IdField::Instance, self.instance.as_str()),
            (IdField::MemberClass, self.member_class.as_str()),
            (IdField::MemberCode, self.member_code.as_str()),
        ];
        if let Some(s) = &self.subsystem {
            v.push((IdField::SubsystemCode, s.as_str()));
        }
        v
    }
}

/// The display form (`SUBSYSTEM:DEV/GOV/1234/tax-board`).
impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.object_type())?;
        self.write_plain(f)
    }
}

/// A service offered by a provider (member or subsystem), with an optional version.
///
/// Access rights ignore the version (as in X-Road); [`ServiceId::without_version`] gives the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    provider: ClientId,
    code: String,
    version: Option<String>,
}

impl ServiceId {
    /// A service of `provider` with code `code` and an optional version.
    pub fn new(provider: ClientId, code: &str, version: Option<&str>) -> Result<Self, IdError> {
        Ok(Self {
            provider,
            code: checked("serviceCode", code)?,
            version: version.map(|v| checked("serviceVersion", v)).transpose()?,
        })
    }
    /// The provider (member or subsystem).
    pub fn provider(&self) -> &ClientId {
        &self.provider
    }
    /// The service code.
    pub fn code(&self) -> &str {
        &self.code
    }
    /// The service version, if any.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
    /// Whether `other` is the same service, whatever either's version (what access rights and
    /// service entries match on), without building either's unversioned copy.
    pub fn same_service(&self, other: &ServiceId) -> bool {
        self.code == other.code && self.provider == other.provider
    }

    /// The slash form of [`ServiceId::without_version`], written directly.
    pub fn to_slash_without_version(&self) -> String {
        let mut out = String::with_capacity(96);
        self.provider.write_slash(&mut out);
        out.push('/');
        encode_segment(&mut out, &self.code);
        out
    }

    /// The same service with no version: the key access rights use.
    pub fn without_version(&self) -> Self {
        Self {
            version: None,
            ..self.clone()
        }
    }

    fn from_segments(segs: &[String]) -> Result<Self, IdError> {
        Self::from_owned_segments(segs.to_vec())
    }

    /// Takes the (decoded) segments over instead of copying them (see `ClientId`'s).
    fn from_owned_segments(mut segs: Vec<String>) -> Result<Self, IdError> {
        // A member's service has 4 segments, a subsystem's 5, and a subsystem's versioned 6.
        let version = match segs.len() {
            4 | 5 => None,
            6 => segs.pop(),
            found => {
                return Err(IdError::SegmentCount {
                    kind: "service",
                    expected: "4 to 6",
                    found,
                });
            }
        };
        let code = segs.pop().unwrap_or_default();
        let provider = ClientId::from_owned_segments(segs)?;
        Ok(Self {
            provider,
            code: checked_owned("serviceCode", code)?,
            version: version
                .map(|v| checked_owned("serviceVersion", v))
                .transpose()?,
        })
    }

    /// Parses the slash form `INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION]`.
    pub fn from_slash(s: &str) -> Result<Self, IdError> {
        Self::from_owned_segments(split_slash(s)?)
    }

    /// The slash form, each segment percent-encoded.
    pub fn to_slash(&self) -> String {
        let mut out = String::with_capacity(96);
        self.provider.write_slash(&mut out);
        out.push('/');
        encode_segment(&mut out, &self.code);
        if let Some(v) = &self.version {
            out.push('/');
            encode_segment(&mut out, v);
        }
        out
    }

    /// Parses the display form `SERVICE:…`.
    pub fn from_display(s: &str) -> Result<Self, IdError> {
        let (ty, segs) = split_display(s)?;
        if ty != ObjectType::Service {
            return Err(IdError::WrongObjectType {
                expected: "SERVICE",
                found: ty,
            });
        }
        let segs: Vec<String> = segs.into_iter().map(str::to_owned).collect();
        Self::from_segments(&segs)
    }

    /// The XML form's fields, in schema order.
    pub fn xml_fields(&self) -> Vec<(IdField, &str)> {
        let mut v = self.provider.xml_fields();
        v.push((IdField::ServiceCode, self.code.as_str()));
        if let Some(ver) = &self.version {
            v.push((IdField::ServiceVersion, ver.as_str()));
        }
        v
    }
}

/// The display form (`SERVICE:DEV/GOV/1234/tax-board/getPerson/v1`).
impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SERVICE:")?;
        self.provider.write_plain(f)?;
        write!(f, "/{}", self.code)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A security server: its owner member and server code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecurityServerId {
    owner: ClientId,
    server_code: String,
}

impl SecurityServerId {
    /// The server `server_code` owned by member `owner` (a subsystem is reduced to its member).
    pub fn new(owner: &ClientId, server_code: &str) -> Result<Self, IdError> {
        Ok(Self {
            owner: owner.owner(),
            server_code: checked("serverCode", server_code)?,
        })
    }
    /// The owner member.
    pub fn owner(&self) -> &ClientId {
        &self.owner
    }
    /// The server code.
    pub fn server_code(&self) -> &str {
        &self.server_code
    }

    fn from_segments(segs: &[String]) -> Result<Self, IdError> {
        match segs {
            [i, c, m, code] => Self::new(&ClientId::member(i, c, m)?, code),
            _ => Err(IdError::SegmentCount {
                kind: "security server",
                expected: "4",
                found: segs.len(),
            }),
        }
    }

    /// Parses the slash form `INSTANCE/CLASS/MEMBER/SERVERCODE`.
    pub fn from_slash(s: &str) -> Result<Self, IdError> {
        Self::from_segments(&split_slash(s)?)
    }

    /// The slash form, each segment percent-encoded.
    pub fn to_slash(&self) -> String {
        let mut out = String::with_capacity(64);
        self.owner.write_slash(&mut out);
        out.push('/');
        encode_segment(&mut out, &self.server_code);
        out
    }

    /// Parses the display form `SERVER:…`.
    pub fn from_display(s: &str) -> Result<Self, IdError> {
        let (ty, segs) = split_display(s)?;
        if ty != ObjectType::Server {
            return Err(IdError::WrongObjectType {
                expected: "SERVER",
                found: ty,
            });
        }
        let segs: Vec<String> = segs.into_iter().map(str::to_owned).collect();
        Self::from_segments(&segs)
    }

    /// The XML form's fields, in schema order.
    pub fn xml_fields(&self) -> Vec<(IdField, &str)> {
        let mut v = self.owner.xml_fields();
        v.push((IdField::ServerCode, self.server_code.as_str()));
        v
    }
}

/// The display form (`SERVER:DEV/GOV/1234/ss1`).
impl fmt::Display for SecurityServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SERVER:")?;
        self.owner.write_plain(f)?;
        write!(f, "/{}", self.server_code)
    }
}

/// A global group, defined by the central server of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalGroupId {
    instance: String,
    group_code: String,
}

impl GlobalGroupId {
    /// The group `group_code` of `instance`.
    pub fn new(instance: &str, group_code: &str) -> Result<Self, IdError> {
        Ok(Self {
            instance: checked("xRoadInstance", instance)?,
            group_code: checked("groupCode", group_code)?,
        })
    }
    /// The instance code.
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// The group code.
    pub fn group_code(&self) -> &str {
        &self.group_code
    }

    fn from_segments(segs: &[String]) -> Result<Self, IdError> {
        match segs {
            [i, g] => Self::new(i, g),
            _ => Err(IdError::SegmentCount {
                kind: "global group",
                expected: "2",
                found: segs.len(),
            }),
        }
    }

    /// Parses the slash form `INSTANCE/GROUP`.
    pub fn from_slash(s: &str) -> Result<Self, IdError> {
        Self::from_segments(&split_slash(s)?)
    }

    /// The slash form, each segment percent-encoded.
    pub fn to_slash(&self) -> String {
        let mut out = String::with_capacity(32);
        encode_segment(&mut out, &self.instance);
        out.push('/');
        encode_segment(&mut out, &self.group_code);
        out
    }

    /// Parses the display form `GLOBALGROUP:INSTANCE/GROUP`.
    pub fn from_display(s: &str) -> Result<Self, IdError> {
        let (ty, segs) = split_display(s)?;
        if ty != ObjectType::GlobalGroup {
            return Err(IdError::WrongObjectType {
                expected: "GLOBALGROUP",
                found: ty,
            });
        }
        let segs: Vec<String> = segs.into_iter().map(str::to_owned).collect();
        Self::from_segments(&segs)
    }

    /// The XML form's fields, in schema order.
    pub fn xml_fields(&self) -> Vec<(IdField, &str)> {
        vec![
            (IdField::Instance, self.instance.as_str()),
            (IdField::GroupCode, self.group_code.as_str()),
        ]
    }
}

/// The display form (`GLOBALGROUP:DEV/security-server-owners`).
impl fmt::Display for GlobalGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GLOBALGROUP:{}/{}", self.instance, self.group_code)
    }
}

/// A local group, defined on one security server for its own access rights.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalGroupId {
    group_code: String,
}

impl LocalGroupId {
    /// The local group `group_code`.
    pub fn new(group_code: &str) -> Result<Self, IdError> {
        Ok(Self {
            group_code: checked("groupCode", group_code)?,
        })
    }
    /// The group code.
    pub fn group_code(&self) -> &str {
        &self.group_code
    }
    /// Parses the slash form (just the percent-encoded group code).
    pub fn from_slash(s: &str) -> Result<Self, IdError> {
        match split_slash(s)?.as_slice() {
            [g] => Self::new(g),
            segs => Err(IdError::SegmentCount {
                kind: "local group",
                expected: "1",
                found: segs.len(),
            }),
        }
    }
    /// The slash form.
    pub fn to_slash(&self) -> String {
        let mut out = String::new();
        encode_segment(&mut out, &self.group_code);
        out
    }
    /// Parses the display form `LOCALGROUP:GROUP`.
    pub fn from_display(s: &str) -> Result<Self, IdError> {
        let (ty, segs) = split_display(s)?;
        if ty != ObjectType::LocalGroup {
            return Err(IdError::WrongObjectType {
                expected: "LOCALGROUP",
                found: ty,
            });
        }
        match segs.as_slice() {
            [g] => Self::new(g),
            _ => Err(IdError::SegmentCount {
                kind: "local group",
                expected: "1",
                found: segs.len(),
            }),
        }
    }
    /// The XML form's fields.
    pub fn xml_fields(&self) -> Vec<(IdField, &str)> {
        vec![(IdField::GroupCode, self.group_code.as_str())]
    }
}

/// The display form (`LOCALGROUP:auditors`).
impl fmt::Display for LocalGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LOCALGROUP:{}", self.group_code)
    }
}

/// Any identifier, as found in an XML element with an `objectType` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XRoadId {
    /// `MEMBER` or `SUBSYSTEM`.
    Client(ClientId),
    /// `SERVICE`.
    Service(ServiceId),
    /// `SERVER`.
    Server(SecurityServerId),
    /// `GLOBALGROUP`.
    GlobalGroup(GlobalGroupId),
    /// `LOCALGROUP`.
    LocalGroup(LocalGroupId),
}

impl XRoadId {
    /// The identifier's object type.
    pub fn object_type(&self) -> ObjectType {
        match self {
            Self::Client(c) => c.object_type(),
            Self::Service(_) => ObjectType::Service,
            Self::Server(_) => ObjectType::Server,
            Self::GlobalGroup(_) => ObjectType::GlobalGroup,
            Self::LocalGroup(_) => ObjectType::LocalGroup,
        }
    }

    /// The fields of the XML form, in schema order.
    pub fn xml_fields(&self) -> Vec<(IdField, &str)> {
        match self {
            Self::Client(c) => c.xml_fields(),
            Self::Service(s) => s.xml_fields(),
            Self::Server(s) => s.xml_fields(),
            Self::GlobalGroup(g) => g.xml_fields(),
            Self::LocalGroup(g) => g.xml_fields(),
        }
    }

    /// Builds an identifier from the `objectType` and the child elements of its XML form, in
    /// document order. Fields must appear in schema order, each at most once, and only the fields
    /// the object type has; values are checked with the strict rules.
    pub fn from_xml_fields(
        object_type: ObjectType,
        fields: &[(IdField, String)],
    ) -> Result<Self, IdError> {
        let allowed: &[IdField] = match object_type {
            ObjectType::Member => &[IdField::Instance, IdField::MemberClass, IdField::MemberCode],
            ObjectType::Subsystem => &[
                IdField::Instance,
                IdField::MemberClass,
                IdField::MemberCode,
                IdField::SubsystemCode,
            ],
            ObjectType::Service => &[
                IdField::Instance,
                IdField::MemberClass,
                IdField::MemberCode,
                IdField::SubsystemCode,
                IdField::ServiceCode,
                IdField::ServiceVersion,
            ],
            ObjectType::Server => &[
                IdField::Instance,
                IdField::MemberClass,
                IdField::MemberCode,
                IdField::ServerCode,
            ],
            ObjectType::GlobalGroup => &[IdField::Instance, IdField::GroupCode],
            ObjectType::LocalGroup => &[IdField::GroupCode],
        };
        let mut values: [Option<&str>; 8] = [None; 8];
        let mut last: Option<IdField> = None;
        for (field, value) in fields {
            let in_order = last.is_none_or(|l| l < *field);
            if !allowed.contains(field) || !in_order {
                return Err(IdError::UnexpectedField {
                    object_type,
                    field: field.as_str().to_owned(),
                });
            }
            last = Some(*field);
            values[*field as usize] = Some(value.trim());
        }
        let get = |f: IdField, optional: bool| -> Result<Option<&str>, IdError> {
            match values[f as usize] {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(IdError::MissingField {
                    object_type,
                    field: f.as_str(),
                }),
            }
        };
        let req = |f: IdField| get(f, false).map(|v| v.unwrap_or_default());
        Ok(match object_type {
            ObjectType::Member => Self::Client(ClientId::member(
                req(IdField::Instance)?,
                req(IdField::MemberClass)?,
                req(IdField::MemberCode)?,
            )?),
            ObjectType::Subsystem => Self::Client(ClientId::subsystem(
                req(IdField::Instance)?,
                req(IdField::MemberClass)?,
                req(IdField::MemberCode)?,
                req(IdField::SubsystemCode)?,
            )?),
            ObjectType::Service => {
                let inst = req(IdField::Instance)?;
                let class = req(IdField::MemberClass)?;
                let code = req(IdField::MemberCode)?;
                let provider = match get(IdField::SubsystemCode, true)? {
                    Some(s) => ClientId::subsystem(inst, class, code, s)?,
                    None => ClientId::member(inst, class, code)?,
                };
                Self::Service(ServiceId::new(
                    provider,
                    req(IdField::ServiceCode)?,
                    get(IdField::ServiceVersion, true)?,
                )?)
            }
            ObjectType::Server => Self::Server(SecurityServerId::new(
                &ClientId::member(
                    req(IdField::Instance)?,
                    req(IdField::MemberClass)?,
                    req(IdField::MemberCode)?,
                )?,
                req(IdField::ServerCode)?,
            )?),
            ObjectType::GlobalGroup => Self::GlobalGroup(GlobalGroupId::new(
                req(IdField::Instance)?,
                req(IdField::GroupCode)?,
            )?),
            ObjectType::LocalGroup => {
                Self::LocalGroup(LocalGroupId::new(req(IdField::GroupCode)?)?)
            }
        })
    }

    /// Writes the XML form as element `element` (a qualified name whose prefix the caller has
    /// bound), with identifier elements and `objectType` under the prefix `id_prefix`, which must
    /// be bound to [`IDENTIFIERS_NS`].
    pub fn write_xml(&self, out: &mut String, element: &str, id_prefix: &str) {
        out.push('<');
        out.push_str(element);
        out.push(' ');
        out.push_str(id_prefix);
        out.push_str(":objectType=\"");
        out.push_str(self.object_type().as_str());
        out.push_str("\">");
        for (field, value) in self.xml_fields() {
            // Values are restricted to characters that need no XML escaping.
            out.push('<');
            out.push_str(id_prefix);
            out.push(':');
            out.push_str(field.as_str());
            out.push('>');
            out.push_str(value);
            out.push_str("</");
            out.push_str(id_prefix);
            out.push(':');
            out.push_str(field.as_str());
            out.push('>');
        }
        out.push_str("</");
        out.push_str(element);
        out.push('>');
    }

    /// Parses the display form of any identifier (`SUBSYSTEM:…`, `SERVICE:…`, …).
    pub fn from_display(s: &str) -> Result<Self, IdError> {
        let (ty, _) = split_display(s)?;
        Ok(match ty {
            ObjectType::Member | ObjectType::Subsystem => Self::Client(ClientId::from_display(s)?),
            ObjectType::Service => Self::Service(ServiceId::from_display(s)?),
            ObjectType::Server => Self::Server(SecurityServerId::from_display(s)?),
            ObjectType::GlobalGroup => Self::GlobalGroup(GlobalGroupId::from_display(s)?),
            ObjectType::LocalGroup => Self::LocalGroup(LocalGroupId::from_display(s)?),
        })
    }

    /// The slash form of the identifier.
    pub fn to_slash(&self) -> String {
        match self {
            Self::Client(c) => c.to_slash(),
            Self::Service(s) => s.to_slash(),
            Self::Server(s) => s.to_slash(),
            Self::GlobalGroup(g) => g.to_slash(),
            Self::LocalGroup(g) => g.to_slash(),
        }
    }
}

/// The display form.
impl fmt::Display for XRoadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(c) => c.fmt(f),
            Self::Service(s) => s.fmt(f),
            Self::Server(s) => s.fmt(f),
            Self::GlobalGroup(g) => g.fmt(f),
            Self::LocalGroup(g) => g.fmt(f),
        }
    }
}

/// The party a client acts for under X-Road's third-party representation extension:
/// `[CLASS/]CODE` in REST, `representedParty{partyClass?, partyCode}` in SOAP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepresentedParty {
    party_class: Option<String>,
    party_code: String,
}

impl RepresentedParty {
    /// A represented party with an optional member class.
    pub fn new(party_class: Option<&str>, party_code: &str) -> Result<Self, IdError> {
        Ok(Self {
            party_class: party_class.map(|c| checked("partyClass", c)).transpose()?,
            party_code: checked("partyCode", party_code)?,
        })
    }
    /// The party's member class, if given.
    pub fn party_class(&self) -> Option<&str> {
        self.party_class.as_deref()
    }
    /// The party's code.
    pub fn party_code(&self) -> &str {
        &self.party_code
    }
    /// Parses `[CLASS/]CODE` (percent-encoded segments), as in `X-Road-Represented-Party`.
    pub fn from_slash(s: &str) -> Result<Self, IdError> {
        match split_slash(s)?.as_slice() {
            [code] => Self::new(None, code),
            [class, code] => Self::new(Some(class), code),
            segs => Err(IdError::SegmentCount {
                kind: "represented party",
                expected: "1 or 2",
                found: segs.len(),
            }),
        }
    }
    /// The `[CLASS/]CODE` form.
    pub fn to_slash(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.party_class {
            encode_segment(&mut out, c);
            out.push('/');
        }
        encode_segment(&mut out, &self.party_code);
        out
    }
}

macro_rules! slash_from_str {
    ($($t:ty),*) => {$(
        /// Parses the slash form.
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_slash(s)
            }
        }
    )*};
}
slash_from_str!(
    ClientId,
    ServiceId,
    SecurityServerId,
    GlobalGroupId,
    LocalGroupId
);

macro_rules! serde_as_slash {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_slash())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_slash(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_slash!(
    ClientId,
    ServiceId,
    SecurityServerId,
    GlobalGroupId,
    LocalGroupId
);

#[cfg(test)]
mod tests;
