//! Small helpers shared by the modules: hex, base64, SHA-256 and RFC 3339 time.

use base64::Engine;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&sha256(data))
}

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard base64; `what` names the field in the error.
pub fn unb64(what: &str, s: &str) -> Result<Vec<u8>, crate::Error> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| crate::Error::BadRequest(format!("{what}: not valid base64: {e}")))
}

/// The current time, truncated to whole seconds (what we publish).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// RFC 3339 UTC form of `t`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Checks that `cert_der` parses as an X.509 certificate; returns its `SubjectPublicKeyInfo` DER.
pub fn cert_spki(cert_der: &[u8]) -> Result<Vec<u8>, crate::Error> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| crate::Error::BadRequest(format!("not a DER X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(crate::Error::BadRequest(
            "trailing bytes after the certificate".into(),
        ));
    }
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_and_sha() {
        assert_eq!(super::hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(
            super::sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
