//! Certificate profiles: how a certificate's subject names a member or a security server.
//!
//! | profile | subject attribute | X-Road identifier part |
//! |---|---|---|
//! | sign, auth | `C` (2.5.4.6) | instance |
//! | sign, auth | `businessCategory` (2.5.4.15) | member class |
//! | sign, auth | `serialNumber` (2.5.4.5) | member code |
//! | sign, auth | `O` (2.5.4.10) | member name (free text, not part of the identifier) |
//! | auth | `CN` (2.5.4.3) | security server code |
//!
//! A **signing** certificate maps to a member [`ClientId`]; an **authentication** certificate
//! maps to a [`SecurityServerId`]. Each attribute must occur exactly once; the identifier parts
//! must satisfy the X-Road character rules. A certificate that does not map is rejected with a
//! [`ProfileError`] naming the reason. The issuing side ([`sign_subject`], [`auth_subject`])
//! writes the attributes in the order `C, O, businessCategory, serialNumber[, CN]`, with
//! `PrintableString` for the identifier parts and `UTF8String` for the member name.

use trustbus_sdk::id::{ClientId, IdError, SecurityServerId};

use crate::cert::Certificate;

/// OID of `countryName`.
pub const OID_COUNTRY: &str = "2.5.4.6";
/// OID of `organizationName`.
pub const OID_ORGANIZATION: &str = "2.5.4.10";
/// OID of `businessCategory`.
pub const OID_BUSINESS_CATEGORY: &str = "2.5.4.15";
/// OID of `serialNumber` (the subject attribute, not the certificate serial).
pub const OID_SERIAL_NUMBER: &str = "2.5.4.5";
/// OID of `commonName`.
pub const OID_COMMON_NAME: &str = "2.5.4.3";

/// Which profile a certificate is issued under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertProfile {
    /// A member's signing certificate (message signatures).
    Sign,
    /// A security server's authentication certificate (TLS).
    Auth,
}

impl std::str::FromStr for CertProfile {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, ProfileError> {
        match s {
            "sign" => Ok(Self::Sign),
            "auth" => Ok(Self::Auth),
            other => Err(ProfileError::UnknownProfile(other.to_owned())),
        }
    }
}

/// Why a certificate subject does not map to an identifier (or an identifier to a subject).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A required subject attribute is absent; the value is its short name.
    #[error("certificate subject has no {0} attribute")]
    MissingAttribute(&'static str),
    /// A subject attribute the profile needs once occurs more than once.
    #[error("certificate subject has more than one {0} attribute")]
    DuplicateAttribute(&'static str),
    /// A subject attribute is not a string type we read (PrintableString, UTF8String, IA5String).
    #[error("certificate subject attribute {0} is not a readable string")]
    UnreadableAttribute(&'static str),
    /// The attribute's value is not a valid identifier part.
    #[error("certificate subject attribute {attribute} is not a valid identifier: {source}")]
    InvalidIdentifier {
        /// The attribute's short name.
        attribute: &'static str,
        /// Why the identifier rules reject it.
        source: IdError,
    },
    /// The member name (`O`) is empty.
    #[error("member name must not be empty")]
    EmptyName,
    /// A subsystem was given where a member is needed.
    #[error("a certificate names a member, not a subsystem: {0}")]
    NotAMember(String),
    /// An unknown profile name.
    #[error("unknown certificate profile {0:?} (expected sign or auth)")]
    UnknownProfile(String),
}

/// The attribute kinds our profiles write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameAttr {
    /// `C`
    Country,
    /// `O`
    Organization,
    /// `businessCategory`
    BusinessCategory,
    /// `serialNumber`
    SerialNumber,
    /// `CN`
    CommonName,
}

impl NameAttr {
    /// The short name used in error messages and OpenSSL's one-line form.
    pub const fn short_name(self) -> &'static str {
        match self {
            Self::Country => "C",
            Self::Organization => "O",
            Self::BusinessCategory => "businessCategory",
            Self::SerialNumber => "serialNumber",
            Self::CommonName => "CN",
        }
    }

    /// The attribute type's OID in dotted form.
    pub const fn oid(self) -> &'static str {
        match self {
            Self::Country => OID_COUNTRY,
            Self::Organization => OID_ORGANIZATION,
            Self::BusinessCategory => OID_BUSINESS_CATEGORY,
            Self::SerialNumber => OID_SERIAL_NUMBER,
            Self::CommonName => OID_COMMON_NAME,
        }
    }

    fn is_identifier(self) -> bool {
        !matches!(self, Self::Organization)
    }
}

/// A subject distinguished name, one attribute per RDN, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectName {
    attrs: Vec<(NameAttr, String)>,
}

impl SubjectName {
    /// An empty name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an attribute.
    pub fn push(mut self, attr: NameAttr, value: impl Into<String>) -> Self {
        self.attrs.push((attr, value.into()));
        self
    }

    /// The attributes in order.
    pub fn attributes(&self) -> &[(NameAttr, String)] {
        &self.attrs
    }

    /// Converts to rcgen's form, with PrintableString for identifier parts.
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::DistinguishedName, rcgen::Error> {
        let mut dn = rcgen::DistinguishedName::new();
        for (attr, value) in &self.attrs {
            let ty = match attr {
                NameAttr::Country => rcgen::DnType::CountryName,
                NameAttr::Organization => rcgen::DnType::OrganizationName,
                NameAttr::CommonName => rcgen::DnType::CommonName,
                NameAttr::BusinessCategory => rcgen::DnType::CustomDnType(vec![2, 5, 4, 15]),
                NameAttr::SerialNumber => rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            };
            let v = if attr.is_identifier() {
                rcgen::DnValue::PrintableString(value.as_str().try_into()?)
            } else {
                rcgen::DnValue::Utf8String(value.clone())
            };
            dn.push(ty, v);
        }
        Ok(dn)
    }
}

/// What a signing certificate says about its member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignSubject {
    /// The member.
    pub member: ClientId,
    /// The member's name (`O`).
    pub name: String,
}

/// What an authentication certificate says about its security server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSubject {
    /// The security server.
    pub server: SecurityServerId,
    /// The owner member's name (`O`).
    pub member_name: String,
}

fn one(cert: &Certificate, attr: NameAttr) -> Result<&str, ProfileError> {
    let mut found = None;
    for a in cert.subject_attributes() {
        if a.oid == attr.oid() {
            if found.is_some() {
                return Err(ProfileError::DuplicateAttribute(attr.short_name()));
            }
            found = Some(a);
        }
    }
    let a = found.ok_or(ProfileError::MissingAttribute(attr.short_name()))?;
    a.value
        .as_deref()
        .ok_or(ProfileError::UnreadableAttribute(attr.short_name()))
}

fn member_from(cert: &Certificate) -> Result<(ClientId, String), ProfileError> {
    let instance = one(cert, NameAttr::Country)?;
    let class = one(cert, NameAttr::BusinessCategory)?;
    let code = one(cert, NameAttr::SerialNumber)?;
    let name = one(cert, NameAttr::Organization)?;
    for (attr, v) in [
        (NameAttr::Country, instance),
        (NameAttr::BusinessCategory, class),
        (NameAttr::SerialNumber, code),
    ] {
        trustbus_sdk::id::validate_segment(attr.short_name(), v).map_err(|source| {
            ProfileError::InvalidIdentifier {
                attribute: attr.short_name(),
                source,
            }
        })?;
    }
    if name.trim().is_empty() {
        return Err(ProfileError::EmptyName);
    }
    let id = ClientId::member(instance, class, code).map_err(|source| {
        ProfileError::InvalidIdentifier {
            attribute: "C/businessCategory/serialNumber",
            source,
        }
    })?;
    Ok((id, name.to_owned()))
}

/// Maps a signing certificate to its member.
pub fn sign_cert_member(cert: &Certificate) -> Result<SignSubject, ProfileError> {
    let (member, name) = member_from(cert)?;
    Ok(SignSubject { member, name })
}

/// Maps an authentication certificate to its security server.
pub fn auth_cert_server(cert: &Certificate) -> Result<AuthSubject, ProfileError> {
    let (member, member_name) = member_from(cert)?;
    let code = one(cert, NameAttr::CommonName)?;
    let server =
        SecurityServerId::new(&member, code).map_err(|source| ProfileError::InvalidIdentifier {
            attribute: "CN",
            source,
        })?;
    Ok(AuthSubject {
        server,
        member_name,
    })
}

fn member_subject(member: &ClientId, member_name: &str) -> Result<SubjectName, ProfileError> {
    if member.subsystem_code().is_some() {
        return Err(ProfileError::NotAMember(member.to_string()));
    }
    if member_name.trim().is_empty() {
        return Err(ProfileError::EmptyName);
    }
    Ok(SubjectName::new()
        .push(NameAttr::Country, member.instance())
        .push(NameAttr::Organization, member_name)
        .push(NameAttr::BusinessCategory, member.member_class())
        .push(NameAttr::SerialNumber, member.member_code()))
}

/// The subject to put in a member's signing certificate.
pub fn sign_subject(member: &ClientId, member_name: &str) -> Result<SubjectName, ProfileError> {
    member_subject(member, member_name)
}

/// The subject to put in a security server's authentication certificate.
pub fn auth_subject(
    server: &SecurityServerId,
    member_name: &str,
) -> Result<SubjectName, ProfileError> {
    Ok(member_subject(server.owner(), member_name)?
        .push(NameAttr::CommonName, server.server_code()))
}
