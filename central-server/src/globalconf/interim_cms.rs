//! INTERIM, replaced at the merge with pki: a minimal detached CMS `SignedData` (RFC 5652)
//! signer and verifier for configuration directories.
//!
//! It produces what `openssl cms -verify -binary -content directory -inform DER -noverify
//! -certfile anchor.pem` accepts: one `SignerInfo` identified by issuer and serial number,
//! signed attributes `contentType` (id-data), `signingTime` and `messageDigest` (SHA-256 or the
//! algorithm's digest), the signer certificate embedded. The verifier accepts only that
//! profile and checks the signature with `trustbus_pki::signature::verify` against the trusted
//! certificate whose issuer and serial match. It does no path validation (configuration-signing
//! certificates are key containers, as in X-Road). The pki CMS module supersedes this file.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911::ID_SIGNING_TIME;
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA};
use der::asn1::{OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use trustbus_pki::{DigestAlgorithm, SignatureAlgorithm, Signer};
use x509_cert::Certificate;
use x509_cert::attr::Attribute;

use super::signing::{DirectorySignatureError, DirectorySigner, DirectoryVerifier};

type E = DirectorySignatureError;

fn malformed(e: impl std::fmt::Display) -> E {
    E::Malformed(e.to_string())
}

fn attr(oid: ObjectIdentifier, value: Any) -> Result<Attribute, E> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(malformed)?,
    })
}

fn alg_id(oid: ObjectIdentifier, params: Option<&[u8]>) -> Result<AlgorithmIdentifierOwned, E> {
    Ok(AlgorithmIdentifierOwned {
        oid,
        parameters: params.map(Any::from_der).transpose().map_err(malformed)?,
    })
}

/// A directory signer over any [`Signer`] plus its certificate. INTERIM (see module docs).
pub struct InterimCmsSigner<S> {
    signer: S,
    cert_der: Vec<u8>,
}

impl<S: Signer> InterimCmsSigner<S> {
    /// Wraps a signer and its certificate (DER).
    pub fn new(signer: S, cert_der: Vec<u8>) -> Self {
        Self { signer, cert_der }
    }

    fn sign_inner(&self, content: &[u8]) -> Result<Vec<u8>, E> {
        let cert = Certificate::from_der(&self.cert_der).map_err(malformed)?;
        let alg = self.signer.algorithm();
        let digest = alg.digest();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(malformed)?;
        let signing_time =
            UtcTime::from_unix_duration(std::time::Duration::from_secs(now.as_secs()))
                .map_err(malformed)?;
        let signed_attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![
            attr(
                ID_CONTENT_TYPE,
                Any::encode_from(&ID_DATA).map_err(malformed)?,
            )?,
            attr(
                ID_SIGNING_TIME,
                Any::encode_from(&x509_cert::time::Time::UtcTime(signing_time))
                    .map_err(malformed)?,
            )?,
            attr(
                ID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(digest.digest(content)).map_err(malformed)?)
                    .map_err(malformed)?,
            )?,
        ])
        .map_err(malformed)?;
        let to_sign = signed_attrs.to_der().map_err(malformed)?;
        let signature = self
            .signer
            .sign(&to_sign)
            .map_err(|e| E::SigningFailed(e.to_string()))?;
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: cert.tbs_certificate.issuer.clone(),
                serial_number: cert.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: alg_id(digest.oid(), None)?,
            signed_attrs: Some(signed_attrs),
            signature_algorithm: alg_id(alg.oid(), alg.params_der())?,
            signature: OctetString::new(signature).map_err(malformed)?,
            unsigned_attrs: None,
        };
        let signed_data = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![alg_id(digest.oid(), None)?])
                .map_err(malformed)?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(
                cms::signed_data::CertificateSet::try_from(vec![CertificateChoices::Certificate(
                    cert,
                )])
                .map_err(malformed)?,
            ),
            crls: None,
            signer_infos: SignerInfos::try_from(vec![signer_info]).map_err(malformed)?,
        };
        let ci = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed_data).map_err(malformed)?,
        };
        ci.to_der().map_err(malformed)
    }
}

impl<S: Signer> DirectorySigner for InterimCmsSigner<S> {
    fn sign(&self, directory_bytes: &[u8]) -> Result<Vec<u8>, E> {
        self.sign_inner(directory_bytes)
    }
    fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }
}

/// The directory verifier. INTERIM (see module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct InterimCmsVerifier;

impl DirectoryVerifier for InterimCmsVerifier {
    fn verify(&self, content: &[u8], signature_der: &[u8], trusted: &[Vec<u8>]) -> Result<(), E> {
        let ci = ContentInfo::from_der(signature_der).map_err(malformed)?;
        if ci.content_type != ID_SIGNED_DATA {
            return Err(E::Malformed("not a SignedData".into()));
        }
        let sd: SignedData = ci.content.decode_as().map_err(malformed)?;
        if sd.encap_content_info.econtent.is_some() {
            return Err(E::Malformed("signature is not detached".into()));
        }
        let [si] = sd.signer_infos.0.as_slice() else {
            return Err(E::Malformed("expected exactly one SignerInfo".into()));
        };
        let SignerIdentifier::IssuerAndSerialNumber(sid) = &si.sid else {
            return Err(E::Malformed(
                "signer must be identified by issuer and serial".into(),
            ));
        };
        // Find the trusted certificate this signature claims to be made with.
        let mut signer_cert = None;
        for der in trusted {
            let Ok(c) = Certificate::from_der(der) else {
                continue;
            };
            if c.tbs_certificate.issuer == sid.issuer
                && c.tbs_certificate.serial_number == sid.serial_number
            {
                signer_cert = Some(c);
                break;
            }
        }
        let cert = signer_cert.ok_or(E::UnknownSigner)?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(malformed)?;
        let digest = DigestAlgorithm::from_oid(&si.digest_alg.oid)
            .filter(|d| *d != DigestAlgorithm::Sha1)
            .ok_or_else(|| E::Malformed("unsupported digest algorithm".into()))?;
        let alg = SignatureAlgorithm::from_oid(&si.signature_algorithm.oid).map_err(malformed)?;
        let attrs = si
            .signed_attrs
            .as_ref()
            .ok_or_else(|| E::Malformed("signed attributes are required".into()))?;
        let one = |oid: ObjectIdentifier| -> Result<&Any, E> {
            let a = attrs
                .iter()
                .find(|a| a.oid == oid)
                .ok_or_else(|| E::Malformed(format!("missing signed attribute {oid}")))?;
            match a.values.as_slice() {
                [v] => Ok(v),
                _ => Err(E::Malformed(format!("attribute {oid} must have one value"))),
            }
        };
        let ct: ObjectIdentifier = one(ID_CONTENT_TYPE)?.decode_as().map_err(malformed)?;
        if ct != ID_DATA {
            return Err(E::Malformed("content type is not id-data".into()));
        }
        let md: OctetString = one(ID_MESSAGE_DIGEST)?.decode_as().map_err(malformed)?;
        let to_verify = attrs.to_der().map_err(malformed)?;
        trustbus_pki::signature::verify(&spki, alg, &to_verify, si.signature.as_bytes())
            .map_err(|e| E::BadSignature(e.to_string()))?;
        if md.as_bytes() != digest.digest(content).as_slice() {
            return Err(E::BadSignature("content digest does not match".into()));
        }
        Ok(())
    }
}
