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
    /// Whether `rest_service` answers a POST by echoing its body (a service named `*echo*` or
    /// `*bench*`); otherwise it is the instance's example register, which answers GET only.
    pub rest_service_echoes: bool,
    /// Each security server's Prometheus endpoint, by the last part of its id (`ss1`).
    pub metrics: Vec<(String, String)>,
}

/// Reads `endpoints.json` as `trustbus up` writes it (`format_version` 1: `client_proxy_url`,
/// `security_servers[].clients`, `services` by name, `processes[]` with `name` and `pid`),
/// falling back to [`parse_endpoints`] for anything it does not find.
pub fn parse_up_endpoints(doc: &Value) -> BusEndpoints {
    let mut e = parse_endpoints(doc);
    if let Some(url) = doc.get("client_proxy_url").and_then(Value::as_str) {
        e.client_proxy = Some(url.trim_end_matches('/').to_owned());
        // The consumer is a client hosted on the server whose client proxy this is.
        let hosted = doc
            .get("security_servers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|ss| ss.get("client_proxy_url").and_then(Value::as_str) == Some(url))
            .and_then(|ss| ss.get("clients"))
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .and_then(Value::as_str)
            .and_then(as_client);
        if hosted.is_some() {
            e.client = hosted;
        }
    }
    if let Some(services) = doc.get("services").and_then(Value::as_object) {
        let named = |want: &dyn Fn(&str) -> bool| {
            services
                .iter()
                .filter(|(n, _)| want(&n.to_ascii_lowercase()))
                .find_map(|(_, v)| v.as_str().and_then(as_service))
        };
        let echo = named(&|n| (n.contains("echo") || n.contains("bench")) && !n.contains("soap"));
        e.rest_service_echoes = echo.is_some();
        // The register answers GET without an end user; `citizen` needs an ID token and
        // `not_granted` is refused by design.
        e.rest_service = echo
            .or_else(|| named(&|n| n == "population_register"))
            .or_else(|| {
                named(&|n| {
                    !n.contains("soap") && !n.contains("citizen") && !n.contains("not_granted")
                })
            })
            .or(e.rest_service);
        e.soap_service = named(&|n| n.contains("soap")).or(e.soap_service);
    }
    e.metrics = doc
        .get("security_servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ss| {
            let id = ss.get("id")?.as_str()?;
            let url = ss.get("metrics_url")?.as_str()?;
            Some((id.rsplit('/').next()?.to_owned(), url.to_owned()))
        })
        .collect();
    if let Some(procs) = doc.get("processes").and_then(Value::as_array) {
        let named: Vec<(String, u32)> = procs
            .iter()
            .filter_map(|p| {
                let name = p.get("name")?.as_str()?.to_owned();
                let pid = u32::try_from(p.get("pid")?.as_u64()?).ok()?;
                Some((name, pid))
            })
            .collect();
        if !named.is_empty() {
            e.pids = named;
        }
    }
    e
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
        rest_service_echoes: false,
        metrics: Vec::new(),
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
    fn reads_the_up_format() {
        let doc: Value = serde_json::from_str(
            r#"{
              "format_version": 1,
              "client_proxy_url": "http://127.0.0.1:18080",
              "client_ids": {"ministry": "DEV/GOV/1002/registry", "portal": "DEV/GOV/1001/tax-portal"},
              "services": {
                "citizen_records": "DEV/GOV/1002/registry/citizen",
                "not_granted": "DEV/GOV/1002/registry/statistics",
                "population_register": "DEV/GOV/1002/registry/persons",
                "population_register_soap": "DEV/GOV/1002/registry/getPerson"
              },
              "security_servers": [
                {"id": "DEV/GOV/1001/ss1", "client_proxy_url": "http://127.0.0.1:18080",
                 "clients": ["DEV/GOV/1001/tax-portal"], "metrics_url": "http://127.0.0.1:18081/metrics"},
                {"id": "DEV/GOV/1002/ss2", "client_proxy_url": "http://127.0.0.1:18090",
                 "clients": ["DEV/GOV/1002/registry"], "metrics_url": "http://127.0.0.1:18091/metrics"}
              ],
              "processes": [{"name": "ss1", "pid": 11}, {"name": "ss2", "pid": 12}]
            }"#,
        )
        .unwrap_or(Value::Null);
        let e = parse_up_endpoints(&doc);
        assert_eq!(e.client_proxy.as_deref(), Some("http://127.0.0.1:18080"));
        assert_eq!(e.client.as_deref(), Some("DEV/GOV/1001/tax-portal"));
        assert_eq!(
            e.rest_service.as_deref(),
            Some("DEV/GOV/1002/registry/persons")
        );
        assert_eq!(
            e.soap_service.as_deref(),
            Some("DEV/GOV/1002/registry/getPerson")
        );
        assert!(!e.rest_service_echoes);
        assert_eq!(e.pids, vec![("ss1".to_owned(), 11), ("ss2".to_owned(), 12)]);
        assert_eq!(
            e.metrics,
            vec![
                (
                    "ss1".to_owned(),
                    "http://127.0.0.1:18081/metrics".to_owned()
                ),
                (
                    "ss2".to_owned(),
                    "http://127.0.0.1:18091/metrics".to_owned()
                )
            ]
        );
    }

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
