//! An ordered HTTP header list and the filtering rules of the REST protocol.
//!
//! Order and duplicates matter: the serialised header part is hashed and signed byte for
//! byte, so headers are kept exactly as received. Values are bytes because HTTP allows
//! non-UTF-8 (obs-text) values and we must not alter them in transit.

use std::borrow::Cow;

/// `X-Road-Client`: the calling member or subsystem.
pub const X_ROAD_CLIENT: &str = "X-Road-Client";
/// `X-Road-Id`: the message id.
pub const X_ROAD_ID: &str = "X-Road-Id";
/// `X-Road-UserId`: the end user, as asserted by the client.
pub const X_ROAD_USER_ID: &str = "X-Road-UserId";
/// `X-Road-Issue`: a case or document reference.
pub const X_ROAD_ISSUE: &str = "X-Road-Issue";
/// `X-Road-Represented-Party`: `[CLASS/]CODE` of the party the client acts for.
pub const X_ROAD_REPRESENTED_PARTY: &str = "X-Road-Represented-Party";
/// `X-Road-Security-Server`: forces routing to one provider security server.
pub const X_ROAD_SECURITY_SERVER: &str = "X-Road-Security-Server";
/// `X-Road-Service`: the service id, on responses.
pub const X_ROAD_SERVICE: &str = "X-Road-Service";
/// `X-Road-Request-Id`: the bus-assigned id shared by a request and its response.
pub const X_ROAD_REQUEST_ID: &str = "X-Road-Request-Id";
/// `X-Road-Request-Hash`: the provider's hash of the request it received, on responses.
pub const X_ROAD_REQUEST_HASH: &str = "X-Road-Request-Hash";
/// `X-Road-Error`: the fault code, on responses that carry a bus error.
pub const X_ROAD_ERROR: &str = "X-Road-Error";
/// `Trustbus-Id-Token`: the end user's OpenID Connect ID token; verified, never forwarded.
pub const TRUSTBUS_ID_TOKEN: &str = "Trustbus-Id-Token";
/// `Trustbus-User-Verified: true`: set by the provider's security server on requests to the
/// service when `X-Road-UserId` is a subject verified from an ID token (and signed into the
/// exchange). The provider security server removes any copy a client sent, so a service can
/// trust it as far as it trusts its security server.
pub const TRUSTBUS_USER_VERIFIED: &str = "Trustbus-User-Verified";
/// `Information-Mediator-Client`: the GovStack Information Mediator spelling of the client header.
pub const IM_CLIENT: &str = "Information-Mediator-Client";

/// Headers that describe one connection or leak the origin, never forwarded across the bus.
/// `Content-Length` and `Expect` are listed because each hop recomputes or handles them.
const HOP_BY_HOP: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "user-agent",
    "server",
    "content-length",
    "expect",
];

/// Whether `name` is a hop-by-hop or origin-leaking header that the bus never forwards.
///
/// Headers named in a `Connection` header are hop-by-hop too; [`Headers::forwardable`]
/// handles those.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether `name` is a valid HTTP field name (an RFC 9110 token).
pub fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// One header field: a name and its raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The name, with the case it was received in.
    pub name: Cow<'a, str>,
    /// The value bytes, unmodified.
    pub value: Cow<'a, [u8]>,
}

impl HeaderField<'_> {
    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// An ordered list of header fields that keeps duplicates; lookups ignore case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    fields: Vec<HeaderField<'a>>,
}

impl<'a> Headers<'a> {
    /// An empty list.
    pub fn new() -> Self {
        Self { fields: Vec::new() }
    }

    /// An empty list with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: Vec::with_capacity(n),
        }
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, [u8]>>) {
        self.fields.push(HeaderField {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Appends a field with a text value.
    pub fn push_str(&mut self, name: impl Into<Cow<'a, str>>, value: &'a str) {
        self.push(name, value.as_bytes());
    }

    /// Builder form of [`Headers::push_str`], handy for literals.
    pub fn with(mut self, name: &'a str, value: &'a str) -> Self {
        self.push_str(name, value);
        self
    }

    /// The fields in order.
    pub fn fields(&self) -> &[HeaderField<'a>] {
        &self.fields
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|f| (&*f.name, &*f.value))
    }

    /// Number of fields, duplicates included.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every value of `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| &*f.value)
    }

    /// The last value of `name`: X-Road lets a repeated header's last occurrence win.
    pub fn get_last(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .rev()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| &*f.value)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// Removes every field called `name`.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|f| !f.name.eq_ignore_ascii_case(name));
    }

    /// Keeps the fields for which `keep(name)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.fields.retain(|f| keep(&f.name));
    }

    /// A borrowed copy without the hop-by-hop and origin-leaking headers, including those
    /// the `Connection` header names.
    pub fn forwardable(&self) -> Headers<'_> {
        self.borrowed_where(|_| true)
    }

    /// A borrowed copy of the forwardable fields that also pass `keep`.
    pub(crate) fn borrowed_where(&self, mut keep: impl FnMut(&str) -> bool) -> Headers<'_> {
        let named = self.connection_named();
        Headers {
            fields: self
                .fields
                .iter()
                .filter(|f| {
                    !is_hop_by_hop(&f.name)
                        && !named.iter().any(|n| n.eq_ignore_ascii_case(&f.name))
                        && keep(&f.name)
                })
                .map(|f| HeaderField {
                    name: Cow::Borrowed(&*f.name),
                    value: Cow::Borrowed(&*f.value),
                })
                .collect(),
        }
    }

    /// Header names listed in `Connection` values (`Connection: close, X-Foo`).
    fn connection_named(&self) -> Vec<&str> {
        self.get_all("connection")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Detaches the list from whatever it borrowed.
    pub fn into_owned(self) -> Headers<'static> {
        Headers {
            fields: self
                .fields
                .into_iter()
                .map(|f| HeaderField {
                    name: Cow::Owned(f.name.into_owned()),
                    value: Cow::Owned(f.value.into_owned()),
                })
                .collect(),
        }
    }
}

impl<'a, N, V> FromIterator<(N, V)> for Headers<'a>
where
    N: Into<Cow<'a, str>>,
    V: Into<Cow<'a, [u8]>>,
{
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.push(n, v);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_last_wins() {
        let h = Headers::new()
            .with("x-road-client", "A/B/C")
            .with("Accept", "*/*")
            .with("X-ROAD-CLIENT", "D/E/F");
        assert_eq!(h.get_last("X-Road-Client"), Some(&b"D/E/F"[..]));
        assert_eq!(h.get_all("x-road-client").count(), 2);
        assert!(h.contains("accept"));
        assert!(!h.contains("host"));
    }

    #[test]
    fn forwardable_drops_hop_by_hop_and_connection_named() {
        let h = Headers::new()
            .with("Host", "ss.example")
            .with("Connection", "keep-alive, X-Secret")
            .with("X-Secret", "1")
            .with("Accept", "application/json")
            .with("TE", "trailers")
            .with("Transfer-Encoding", "chunked")
            .with("Keep-Alive", "timeout=5")
            .with("Proxy-Authorization", "Basic x")
            .with("Proxy-Authenticate", "Basic")
            .with("Trailer", "X")
            .with("Upgrade", "h2c")
            .with("User-Agent", "curl")
            .with("Server", "nginx")
            .with("Content-Length", "3")
            .with("Expect", "100-continue")
            .with("Authorization", "Bearer abc")
            .with("accept", "text/plain");
        let f = h.forwardable();
        let names: Vec<_> = f.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Accept", "Authorization", "accept"]);
    }

    #[test]
    fn tokens() {
        assert!(is_token("X-Road-Client"));
        assert!(!is_token(""));
        assert!(!is_token("Bad Name"));
        assert!(!is_token("a:b"));
    }
}
