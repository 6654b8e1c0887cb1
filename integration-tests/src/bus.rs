//! The seam between the benchmark and a local Trustbus instance: reading the `endpoints.json`
//! that `trustbus up --dir DIR` writes, and finding the instance's processes.
//!
//! The file's exact layout belongs to the `up` command, so the reader looks for what it needs by
//! meaning (a client-proxy URL, a client id, a REST and a SOAP service id, pids) rather than by
//! fixed paths; every value can also be given on the command line instead.

use serde_json::Value;
use trustbus_sdk::id::{ClientId, ServiceId};

/// What the benchmark needs to send X-Road requests to a running bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusEndpoints {
    /// The consumer security server's client proxy, `http://host:port`.
    pub client_proxy: Option<String>,
    /// The consuming client (slash form).
    pub client: Option<String>,
    /// A REST service to call (slash form).
    pub rest_service: Option<String>,
    /// A SOAP service to call (slash form).
    pub soap_service: Option<String>,
    /// Pids named in the file, with the key they were found under.
    pub pids: Vec<(String, u32)>,
}

fn flatten(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(v, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(v, &format!("{path}/{i}"), out);
            }
        }
        other => out.push((path.to_ascii_lowercase(), other.clone())),
    }
}

fn as_service(s: &str) -> Option<String> {
    ServiceId::from_slash(s)
        .or_else(|_| ServiceId::from_display(s))
        .ok()
        .map(|id| id.to_slash())
}

fn as_client(s: &str) -> Option<String> {
    ClientId::from_slash(s)
        .or_else(|_| ClientId::from_display(s))
        .ok()
        .map(|id| id.to_slash())
}

/// Reads what it can from an `endpoints.json` document.
pub fn parse_endpoints(doc: &Value) -> BusEndpoints {
    let mut flat = Vec::new();
    flatten(doc, "", &mut flat);
    let strings: Vec<(&str, &str)> = flat
        .iter()
        .filter_map(|(p, v)| v.as_str().map(|s| (p.as_str(), s)))
        .collect();
    let url = |want: &dyn Fn(&str) -> bool| {
        strings
            .iter()
            .find(|(p, s)| s.starts_with("http://") && want(p))
            .map(|(_, s)| s.trim_end_matches('/').to_owned())
    };
    let client_proxy = url(&|p| p.contains("client") && !p.contains("soap"))
        .or_else(|| url(&|p| p.contains("proxy")));
    let service = |want: &dyn Fn(&str) -> bool| {
        strings
            .iter()
            .filter(|(p, _)| want(p))
            .find_map(|(_, s)| as_service(s))
    };
    let rest_service = service(&|p| p.contains("rest") && p.contains("service"))
        .or_else(|| service(&|p| p.contains("service") && !p.contains("soap")));
    let soap_service = service(&|p| p.contains("soap") && p.contains("service"));
    let client = strings
        .iter()
        .filter(|(p, s)| {
            let last = p.rsplit('/').next().unwrap_or("");
            last.contains("client") && !s.starts_with("http")
        })
        .find_map(|(_, s)| as_client(s));
    let pids = flat
        .iter()
        .filter(|(p, _)| p.rsplit('/').next().unwrap_or("").contains("pid"))
        .filter_map(|(p, v)| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| (p.trim_start_matches('/').to_owned(), n))
        })
        .collect();
    BusEndpoints {
        client_proxy,
        client,
        rest_service,
        soap_service,
        pids,
    }
}

/// Labels for an instance's processes: each live descendant of `root` as `comm[pid]`, so two
/// security servers stay apart in the table.
pub fn instance_processes(root: u32) -> Vec<(String, u32)> {
    crate::procstat::descendants(root)
        .into_iter()
        .map(|p| (format!("{}[{p}]", crate::procstat::comm(p)), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_by_meaning() {
        let doc: Value = serde_json::from_str(
            r#"{
              "consumer": {"client_proxy_url": "http://127.0.0.1:8080/", "pid": 4242},
              "provider": {"pid": 4343},
              "examples": {
                "client": "DEV/COM/1234/consumer",
                "rest_service": "DEV/GOV/5678/provider/echo",
                "soap_service": "DEV/GOV/5678/provider/getRandom/v1"
              }
            }"#,
        )
        .unwrap_or(Value::Null);
        let e = parse_endpoints(&doc);
        assert_eq!(e.client_proxy.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(e.client.as_deref(), Some("DEV/COM/1234/consumer"));
        assert_eq!(
            e.rest_service.as_deref(),
            Some("DEV/GOV/5678/provider/echo")
        );
        assert_eq!(
            e.soap_service.as_deref(),
            Some("DEV/GOV/5678/provider/getRandom/v1")
        );
        assert_eq!(e.pids.len(), 2);
    }
}
