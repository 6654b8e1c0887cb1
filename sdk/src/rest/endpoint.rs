//! Endpoint paths for REST access rights: a safe normal form and `*`-wildcard patterns.
//!
//! Access rights grant a method and a path pattern (`GET /pets/*`). Matching is done on a
//! normal form of the request path, and any path whose meaning a backend might read
//! differently from us (dot segments, encoded slashes or dots, backslashes, empty segments) is
//! refused outright instead of being "cleaned": a request we cannot match unambiguously is
//! never granted. Default deny is the caller's job: no matching pattern means no access.

use crate::fault::{ErrorKind, Fault, Origin};

/// Why a request path cannot be used for access-right matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("endpoint path must start with '/'")]
    NotAbsolute,
    /// `//` somewhere in the path.
    #[error("endpoint path contains an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("endpoint path contains a dot segment")]
    DotSegment,
    /// An escape that could hide a separator or a dot segment (`%2e`, `%2f`, `%5c`), or a backslash.
    #[error("endpoint path contains an encoded separator, dot or backslash")]
    AmbiguousEncoding,
    /// A `%` not followed by two hex digits, or a control, space, `?` or `#` character.
    #[error("endpoint path contains a malformed escape or a forbidden character")]
    Malformed,
}

impl PathError {
    /// The fault for a client proxy that refuses such a request: `Client.InvalidRest`.
    pub fn fault(&self) -> Fault {
        Fault::of(Origin::Client, ErrorKind::InvalidRest, self.to_string())
    }
}

/// RFC 3986 unreserved characters except `.`, which we refuse encoded (see [`PathError`]).
fn is_unreserved_no_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The normal form of a request path (the part after the service code, without the query)
/// used for access-right matching.
///
/// An empty path is `/`. Escapes of unreserved characters are decoded (`%41` → `A`), other
/// escapes get upper-case hex (`%c3%a4` → `%C3%A4`), and one trailing slash is dropped
/// (`/pets/` → `/pets`), so equivalent spellings match the same patterns. Paths that could
/// mean something else to the backend are refused; see [`PathError`].
pub fn normalize_endpoint_path(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() || raw == "/" {
        return Ok("/".to_owned());
    }
    let body = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let body = body.strip_suffix('/').unwrap_or(body);
    let mut out = String::with_capacity(raw.len());
    for seg in body.split('/') {
        out.push('/');
        push_segment(&mut out, seg)?;
    }
    Ok(out)
}

fn push_segment(out: &mut String, seg: &str) -> Result<(), PathError> {
    if seg.is_empty() {
        return Err(PathError::EmptySegment);
    }
    if seg == "." || seg == ".." {
        return Err(PathError::DotSegment);
    }
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if is_ordinary(b[i]) {
            // Copy a run of ordinary bytes at once; it is valid UTF-8 because `seg` is and
            // runs only break at ASCII bytes.
            let start = i;
            while i < b.len() && is_ordinary(b[i]) {
                i += 1;
            }
            out.push_str(&seg[start..i]);
            continue;
        }
        if b[i] != b'%' {
            return Err(if b[i] == b'\\' {
                PathError::AmbiguousEncoding
            } else {
                PathError::Malformed
            });
        }
        let hex = |j: usize| b.get(j).copied().and_then(hex_val);
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(PathError::Malformed);
        };
        let v = hi << 4 | lo;
        if matches!(v, b'.' | b'/' | b'\\') {
            return Err(PathError::AmbiguousEncoding);
        }
        if is_unreserved_no_dot(v) {
            out.push(char::from(v));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(hi)]));
            out.push(char::from(HEX[usize::from(lo)]));
        }
        i += 3;
    }
    Ok(())
}

/// Bytes copied as they are: everything but `%`, `\`, `?`, `#`, space and controls.
fn is_ordinary(b: u8) -> bool {
    b > b' ' && !matches!(b, b'%' | b'\\' | b'?' | b'#' | 0x7f)
}

/// A method and path pattern from an access right, such as `GET /pets/*`.
///
/// * The method is an exact, case-sensitive HTTP method or `*` for any method.
/// * The path is split into segments. A segment `**` matches zero or more whole segments;
///   anywhere else `*` matches any run of characters within one segment, so a lone `*`
///   matches exactly one (non-empty) segment and `*.json` matches `a.json`.
/// * `/**` therefore matches every path, the service-wide grant.
/// * The pattern itself is normalised like request paths and must be safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointPattern {
    method: String,
    path: String,
}

impl EndpointPattern {
    /// A pattern for `method` (or `*`) and `path`.
    pub fn new(method: &str, path: &str) -> Result<Self, PathError> {
        if method.is_empty() || !(method == "*" || super::headers::is_token(method)) {
            return Err(PathError::Malformed);
        }
        Ok(Self {
            method: method.to_owned(),
            path: normalize_endpoint_path(path)?,
        })
    }

    /// The method, or `*`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The normalised path pattern.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a request with `method` and raw (not normalised) `path` falls under this
    /// pattern. Unsafe paths never match.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if self.method != "*" && self.method != method {
            return false;
        }
        match normalize_endpoint_path(path) {
            Ok(p) => self.matches_normalized(&p),
            Err(_) => false,
        }
    }

    /// Like [`EndpointPattern::matches`] for a path already passed through
    /// [`normalize_endpoint_path`], to normalise once and try many patterns.
    pub fn matches_normalized(&self, path: &str) -> bool {
        let pat: Vec<&str> = segments(&self.path).collect();
        let segs: Vec<&str> = segments(path).collect();
        match_segments(&pat, &segs)
    }
}

fn segments(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|s| !s.is_empty())
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => {
            // `**/**` means the same as `**`; collapsing keeps backtracking polynomial.
            let rest = &rest[rest.iter().take_while(|p| **p == "**").count()..];
            (0..=segs.len()).any(|skip| match_segments(rest, &segs[skip..]))
        }
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => glob(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest),
            None => false,
        },
    }
}

/// `*` matches any run of bytes within a segment; everything else is literal.
fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no recursion blow-up.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_form() {
        let n = |p| normalize_endpoint_path(p);
        assert_eq!(n("").as_deref(), Ok("/"));
        assert_eq!(n("/").as_deref(), Ok("/"));
        assert_eq!(n("/pets/").as_deref(), Ok("/pets"));
        assert_eq!(n("/p%65ts/%c3%a4").as_deref(), Ok("/pets/%C3%A4"));
        assert_eq!(n("/a/b.json").as_deref(), Ok("/a/b.json"));
        assert_eq!(n("/ä").as_deref(), Ok("/ä"));
    }

    #[test]
    fn traversal_and_ambiguity_rejected() {
        let n = |p| normalize_endpoint_path(p);
        assert_eq!(n("/a/../b"), Err(PathError::DotSegment));
        assert_eq!(n("/a/./b"), Err(PathError::DotSegment));
        assert_eq!(n("/.."), Err(PathError::DotSegment));
        assert_eq!(n("/a/%2e%2e/b"), Err(PathError::AmbiguousEncoding));
        assert_eq!(n("/a/.%2E/b"), Err(PathError::AmbiguousEncoding));
        assert_eq!(n("/a%2fb"), Err(PathError::AmbiguousEncoding));
        assert_eq!(n("/a%5Cb"), Err(PathError::AmbiguousEncoding));
        assert_eq!(n("/a\\b"), Err(PathError::AmbiguousEncoding));
        assert_eq!(n("//a"), Err(PathError::EmptySegment));
        assert_eq!(n("/a//b"), Err(PathError::EmptySegment));
        assert_eq!(n("/a%zz"), Err(PathError::Malformed));
        assert_eq!(n("/a%2"), Err(PathError::Malformed));
        assert_eq!(n("/a b"), Err(PathError::Malformed));
        assert_eq!(n("a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn wildcards() {
        let p = |m, s| EndpointPattern::new(m, s).unwrap();
        let one = p("GET", "/pets/*");
        assert!(one.matches("GET", "/pets/1"));
        assert!(one.matches("GET", "/pets/1/"));
        assert!(!one.matches("GET", "/pets"));
        assert!(!one.matches("GET", "/pets/1/toys"));
        assert!(!one.matches("POST", "/pets/1"));
        assert!(!one.matches("get", "/pets/1"));
        assert!(!one.matches("GET", "/pets/../admin"));
        assert!(!one.matches("GET", "/pets/%2e%2e"));
        assert!(!one.matches("GET", "/pets/a%2Fb"));

        let mid = p("*", "/pets/*/toys");
        assert!(mid.matches("DELETE", "/pets/7/toys"));
        assert!(!mid.matches("DELETE", "/pets/toys"));

        let all = p("*", "/**");
        assert!(all.matches("GET", ""));
        assert!(all.matches("PUT", "/a/b/c"));
        assert!(!all.matches("PUT", "/a/../../etc"));

        let tail = p("GET", "/files/**");
        assert!(tail.matches("GET", "/files"));
        assert!(tail.matches("GET", "/files/a/b"));
        assert!(!tail.matches("GET", "/filesystem"));

        let many = p("GET", "/**/**/**/**/**/**/x");
        assert!(many.matches("GET", "/a/b/c/x"));
        assert!(!many.matches("GET", &"/a".repeat(200)));
        let inner = p("GET", "/a/**/z");
        assert!(inner.matches("GET", "/a/z"));
        assert!(inner.matches("GET", "/a/b/c/z"));
        assert!(!inner.matches("GET", "/a/b/c"));

        let glob = p("GET", "/docs/*.json");
        assert!(glob.matches("GET", "/docs/a.json"));
        assert!(!glob.matches("GET", "/docs/a.xml"));
        assert!(!glob.matches("GET", "/docs/x/a.json"));

        let exact = p("GET", "/pets");
        assert!(exact.matches("GET", "/pets"));
        assert!(exact.matches("GET", "/p%65ts"));
        assert!(!exact.matches("GET", "/pets/1"));

        assert!(EndpointPattern::new("GET", "/a/../b").is_err());
        assert!(EndpointPattern::new("", "/a").is_err());
        assert!(EndpointPattern::new("G T", "/a").is_err());
    }
}
