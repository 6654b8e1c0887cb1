//! Service descriptions an operator points the admin API at: WSDL 1.1 documents (their
//! operations become SOAP services) and OpenAPI 3 documents (their paths and methods become
//! REST endpoints). Read from an `http://` or `https://` URL or a local file, with a size
//! limit. OpenAPI is read as JSON only: no YAML parser is a dependency of this crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use trustbus_sdk::rest::EndpointPattern;

use crate::config::EndpointConfig;
use crate::httpc::{HttpClient, full};

/// Largest description document read.
pub const MAX_DESCRIPTION_BYTES: usize = 10 << 20;
/// Most endpoints taken from one OpenAPI document.
pub const MAX_ENDPOINTS: usize = 10_000;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why a description could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DescError {
    /// It could not be fetched or read.
    #[error("cannot read {0}")]
    Unavailable(String),
    /// It was read but is not a usable description.
    #[error("{0}")]
    Invalid(String),
}

/// Reads the document at `source`: an `http://` or `https://` URL (HTTPS trusting the PEM
/// certificates in `tls_ca`) or a local file path (`file://` prefix optional).
pub async fn fetch(
    http: &HttpClient,
    source: &str,
    tls_ca: Option<&Path>,
) -> Result<Vec<u8>, DescError> {
    let unavailable = |m: String| DescError::Unavailable(format!("{source}: {m}"));
    if source.starts_with("http://") || source.starts_with("https://") {
        let req = http::Request::get(source)
            .body(full(Vec::new()))
            .map_err(|e| unavailable(e.to_string()))?;
        let read = Duration::from_secs(30);
        let resp = if source.starts_with("https://") {
            let ca = tls_ca.ok_or_else(|| {
                unavailable("an https:// description URL needs the service's tls_ca".into())
            })?;
            let tls = crate::httpc::backend_tls_config(ca).map_err(unavailable)?;
            crate::httpc::call_https(tls, req, Duration::from_secs(10), read).await
        } else {
            http.call(req, read).await
        }
        .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP status {}", resp.status())));
        }
        // A server that trickles its body must not hold the admin request forever.
        let body = tokio::time::timeout(
            read,
            Limited::new(resp.into_body(), MAX_DESCRIPTION_BYTES).collect(),
        )
        .await
        .map_err(|_| unavailable(format!("the body took longer than {read:?}")))?
        .map_err(|e| unavailable(e.to_string()))?;
        return Ok(body.to_bytes().to_vec());
    }
    if source.contains("://") && !source.starts_with("file://") {
        return Err(DescError::Invalid(format!(
            "{source}: use an http://, https:// or file:// URL or a file path"
        )));
    }
    let path = PathBuf::from(source.trim_start_matches("file://"));
    if !path.is_absolute() {
        return Err(DescError::Invalid(format!(
            "{source}: a file path must be absolute"
        )));
    }
    let meta = std::fs::metadata(&path).map_err(|e| unavailable(e.to_string()))?;
    if meta.len() > MAX_DESCRIPTION_BYTES as u64 {
        return Err(DescError::Invalid(format!(
            "{source}: larger than {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    std::fs::read(&path).map_err(|e| unavailable(e.to_string()))
}

/// The endpoints of an OpenAPI 3 JSON document: every method of every path, path templates
/// (`{id}`) becoming `*` wildcards. Every pattern must pass the same checks as configured
/// endpoints (no `..`, no encoded separators).
pub fn openapi_endpoints(doc: &[u8]) -> Result<Vec<EndpointConfig>, DescError> {
    let invalid = |m: String| DescError::Invalid(format!("invalid OpenAPI document: {m}"));
    if doc.len() > MAX_DESCRIPTION_BYTES {
        return Err(invalid(format!(
            "larger than {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    let v: Value = serde_json::from_slice(doc)
        .map_err(|e| invalid(format!("not JSON ({e}); only JSON documents are read")))?;
    let version = v.get("openapi").and_then(Value::as_str).unwrap_or("");
    if !version.starts_with("3.") {
        return Err(invalid(
            "no `openapi: 3.x` version field (Swagger 2 is not read)".into(),
        ));
    }
    let paths = v
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("no `paths` object".into()))?;
    let mut out: Vec<EndpointConfig> = Vec::new();
    for (path, item) in paths {
        let item = item
            .as_object()
            .ok_or_else(|| invalid(format!("path {path:?} is not an object")))?;
        let pattern = template_to_pattern(path).map_err(invalid)?;
        for m in METHODS {
            if !item.contains_key(m) {
                continue;
            }
            let method = m.to_ascii_uppercase();
            EndpointPattern::new(&method, &pattern)
                .map_err(|e| invalid(format!("path {path:?}: {e}")))?;
            let e = EndpointConfig {
                method,
                path: pattern.clone(),
            };
            if !out.contains(&e) {
                if out.len() >= MAX_ENDPOINTS {
                    return Err(invalid(format!("more than {MAX_ENDPOINTS} endpoints")));
                }
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// `/pets/{id}/photos/{n}.jpg` → `/pets/*/photos/*.jpg`.
fn template_to_pattern(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with /"));
    }
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match (c, in_param) {
            ('{', false) => in_param = true,
            ('}', true) => {
                in_param = false;
                out.push('*');
            }
            ('{' | '}', _) => return Err(format!("path {path:?} has unbalanced braces")),
            ('/', true) => return Err(format!("path {path:?} has a parameter spanning /")),
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    if in_param {
        return Err(format!("path {path:?} has unbalanced braces"));
    }
    Ok(out)
}

/// Where a description read for `name` is kept: `DATA_DIR/descriptions/NAME.EXT`, the
/// identifier's `/` replaced by `_`.
pub fn stored_path(data_dir: &Path, name: &str, ext: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("descriptions").join(format!("{safe}.{ext}"))
}

/// Writes `bytes` to `path` (creating its directory) atomically.
pub fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    crate::confstore::write_atomically(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC: &str = r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},
      "paths":{"/pets":{"get":{},"post":{},"parameters":[]},
               "/pets/{id}":{"get":{},"delete":{}},
               "/pets/{id}/photo.{fmt}":{"put":{}}}}"#;

    #[test]
    fn paths_and_methods_become_patterns() {
        let e = openapi_endpoints(DOC.as_bytes()).unwrap();
        let got: Vec<(String, String)> = e.into_iter().map(|e| (e.method, e.path)).collect();
        let want = [
            ("GET", "/pets"),
            ("POST", "/pets"),
            ("GET", "/pets/*"),
            ("DELETE", "/pets/*"),
            ("PUT", "/pets/*/photo.*"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn unsafe_or_malformed_documents_are_refused() {
        for bad in [
            r#"{"openapi":"3.0.0","paths":{"/a/../admin":{"get":{}}}}"#,
            r#"{"openapi":"3.0.0","paths":{"/a/%2e%2e/admin":{"get":{}}}}"#,
            r#"{"openapi":"3.0.0","paths":{"/a/%2fb":{"get":{}}}}"#,
            r#"{"openapi":"3.0.0","paths":{"a":{"get":{}}}}"#,
            r#"{"openapi":"3.0.0","paths":{"/a/{x":{"get":{}}}}"#,
            r#"{"openapi":"3.0.0","paths":{"/a/{x/y}":{"get":{}}}}"#,
            r#"{"swagger":"2.0","paths":{}}"#,
            r#"{"openapi":"3.0.0"}"#,
            "openapi: 3.0.0\npaths: {}\n",
            "",
        ] {
            assert!(
                matches!(
                    openapi_endpoints(bad.as_bytes()),
                    Err(DescError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    /// Serves `status` and `body` to every request on a loopback port.
    async fn serve_once(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
            }
        });
        format!("http://{addr}/openapi.json")
    }

    #[tokio::test]
    async fn fetches_over_http_and_from_absolute_files_only() {
        let http = HttpClient::new(Duration::from_secs(2));
        let url = serve_once(200, DOC).await;
        let got = fetch(&http, &url, None).await.unwrap();
        assert_eq!(openapi_endpoints(&got).unwrap().len(), 5);
        let missing = serve_once(404, "no").await;
        assert!(matches!(
            fetch(&http, &missing, None).await,
            Err(DescError::Unavailable(m)) if m.ends_with("HTTP status 404 Not Found")
        ));
        // https needs the service's trust; other schemes and relative paths are refused.
        assert!(matches!(
            fetch(&http, "https://127.0.0.1:1/x", None).await,
            Err(DescError::Unavailable(_))
        ));
        for bad in ["ftp://host/x.wsdl", "relative/x.wsdl"] {
            assert!(
                matches!(fetch(&http, bad, None).await, Err(DescError::Invalid(_))),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.json");
        std::fs::write(&f, DOC).unwrap();
        let url = format!("file://{}", f.display());
        assert_eq!(fetch(&http, &url, None).await.unwrap(), DOC.as_bytes());
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = openapi_endpoints(&b);
        }

        #[test]
        fn arbitrary_paths_give_safe_patterns_or_errors(p in "[/a-z{}.%2eE*]{0,24}") {
            let doc = serde_json::json!({"openapi":"3.1.0","paths":{ p: {"get":{}} }});
            if let Ok(e) = openapi_endpoints(doc.to_string().as_bytes()) {
                for ep in e {
                    prop_assert!(EndpointPattern::new(&ep.method, &ep.path).is_ok());
                    prop_assert!(!ep.path.split('/').any(|s| s == ".."));
                }
            }
        }
    }
}
