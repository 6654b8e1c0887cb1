//! Compact JWS parsing (RFC 7515 §7.1): `BASE64URL(header).BASE64URL(payload).BASE64URL(sig)`.
//!
//! Parsing checks only the shape: three base64url parts without padding, a JSON object header
//! with a string `alg`, and a JSON object payload. Nothing here is trusted until
//! [`super::verify`] has checked the signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::IdentityError;

/// Largest token accepted, in bytes. ID tokens are usually below 2 KiB; the limit keeps a
/// hostile header from costing more than a few allocations.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The protected header fields this implementation looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsHeader {
    /// `alg` exactly as sent (checked against the allow-list before any key is used).
    pub alg: String,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `typ`, if present.
    pub typ: Option<String>,
    /// Whether the header has a `crit` member (we understand no extensions, so such tokens fail).
    pub has_crit: bool,
}

/// A parsed, not yet verified compact JWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactJws<'a> {
    /// The decoded protected header.
    pub header: JwsHeader,
    /// `BASE64URL(header) . BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The decoded payload (the claims set for a JWT).
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct RawHeader {
    alg: Option<serde_json::Value>,
    kid: Option<serde_json::Value>,
    typ: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

fn malformed(what: &'static str) -> IdentityError {
    IdentityError::Malformed(what)
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, IdentityError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed(what))
}

fn opt_string(
    v: Option<serde_json::Value>,
    what: &'static str,
) -> Result<Option<String>, IdentityError> {
    match v {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(what)),
    }
}

impl<'a> CompactJws<'a> {
    /// Splits and decodes a compact JWS. Surrounding whitespace is ignored.
    pub fn parse(token: &'a str) -> Result<Self, IdentityError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(malformed("empty token"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                "not three dot-separated parts (JWE and JSON serialisation are not accepted)",
            ));
        };
        let header_bytes = b64(h, "header is not base64url")?;
        let raw: RawHeader = serde_json::from_slice(&header_bytes)
            .map_err(|_| malformed("header is not a JSON object"))?;
        let alg =
            opt_string(raw.alg, "alg is not a string")?.ok_or(malformed("header has no alg"))?;
        let header = JwsHeader {
            alg,
            kid: opt_string(raw.kid, "kid is not a string")?,
            typ: opt_string(raw.typ, "typ is not a string")?,
            has_crit: raw.crit.is_some(),
        };
        let payload = b64(p, "payload is not base64url")?;
        let signature = b64(s, "signature is not base64url")?;
        Ok(Self {
            header,
            signing_input: &token[..h.len() + 1 + p.len()],
            payload,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn parses_three_parts() {
        let t = format!(
            "{}.{}.{}",
            enc(r#"{"alg":"ES256","kid":"k1"}"#),
            enc(r#"{"sub":"x"}"#),
            enc("sig")
        );
        let j = CompactJws::parse(&t).unwrap();
        assert_eq!(j.header.alg, "ES256");
        assert_eq!(j.header.kid.as_deref(), Some("k1"));
        assert_eq!(j.payload, br#"{"sub":"x"}"#);
        assert_eq!(j.signature, b"sig");
        assert_eq!(j.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    #[test]
    fn rejects_bad_shapes() {
        let h = enc(r#"{"alg":"ES256"}"#);
        for bad in [
            String::new(),
            "a.b".to_owned(),
            format!("{h}.{h}.{h}.{h}"),
            format!("{h}.{}.", "!!"),
            format!("{}.{h}.", enc("[1]")),
            format!("{}.{h}.", enc(r#"{"alg":1}"#)),
            format!("{}.{h}.", enc(r#"{"kid":"x"}"#)),
            format!("{h}.{h}=.{h}"),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(
                matches!(CompactJws::parse(&bad), Err(IdentityError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
