//! Access rights: default deny; subjects are subsystems, members, global groups (from global
//! configuration) and local groups; REST rights may be limited to endpoints. Service versions
//! are ignored.

use trustbus_sdk::fault::{ErrorKind, Fault, Origin};
use trustbus_sdk::id::{ClientId, GlobalGroupId, ServiceId};
use trustbus_sdk::rest::EndpointPattern;

use crate::config::{Config, ConfigError};

/// Who an access right is granted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A subsystem or a member (exactly that client, as in X-Road).
    Client(ClientId),
    /// Every member of a global group.
    GlobalGroup(GlobalGroupId),
    /// Every member of a local group of this server.
    LocalGroup(String),
}

impl Subject {
    /// Parses the display form: `SUBSYSTEM:…`, `MEMBER:…`, `GLOBALGROUP:…`, `LOCALGROUP:code`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = |e: String| ConfigError::Invalid(format!("access subject {s:?}: {e}"));
        if let Some(code) = s.strip_prefix("LOCALGROUP:") {
            trustbus_sdk::id::validate_segment("local group", code)
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Self::LocalGroup(code.to_owned()));
        }
        if s.starts_with("GLOBALGROUP:") {
            return GlobalGroupId::from_display(s)
                .map(Self::GlobalGroup)
                .map_err(|e| bad(e.to_string()));
        }
        if s.starts_with("SUBSYSTEM:") || s.starts_with("MEMBER:") {
            return ClientId::from_display(s)
                .map(Self::Client)
                .map_err(|e| bad(e.to_string()));
        }
        Err(bad(
            "must start with SUBSYSTEM:, MEMBER:, GLOBALGROUP: or LOCALGROUP:".into(),
        ))
    }
}

/// Global group membership, from global configuration.
pub trait GroupLookup {
    /// Whether `client` is a member of `group`.
    fn in_global_group(&self, group: &GlobalGroupId, client: &ClientId) -> bool;
}

/// Decides whether `client` may call `service`; for REST, `endpoint` is the method and the
/// normalised path. `Server.ServerProxy.AccessDenied` otherwise.
pub fn check(
    cfg: &Config,
    groups: &dyn GroupLookup,
    client: &ClientId,
    service: &ServiceId,
    endpoint: Option<(&str, &str)>,
) -> Result<(), Fault> {
    let allowed = cfg.access.iter().any(|rule| {
        if !rule.service.same_service(service) {
            return false;
        }
        let subject_ok = match Subject::parse(&rule.subject) {
            Ok(Subject::Client(c)) => &c == client,
            Ok(Subject::GlobalGroup(g)) => groups.in_global_group(&g, client),
            Ok(Subject::LocalGroup(code)) => cfg
                .local_groups
                .iter()
                .any(|g| g.code == code && g.members.contains(client)),
            Err(_) => false,
        };
        if !subject_ok {
            return false;
        }
        match (endpoint, rule.endpoints.is_empty()) {
            (_, true) | (None, _) => true,
            (Some((method, path)), false) => rule.endpoints.iter().any(|e| {
                EndpointPattern::new(&e.method, &e.path)
                    .map(|p| {
                        (p.method() == "*" || p.method() == method) && p.matches_normalized(path)
                    })
                    .unwrap_or(false)
            }),
        }
    });
    if allowed {
        Ok(())
    } else {
        Err(Fault::of(
            Origin::ServerProxy,
            ErrorKind::AccessDenied,
            format!(
                "request is not allowed: {} has no access right to {}",
                client.to_slash(),
                service.to_slash()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Groups;
    impl GroupLookup for Groups {
        fn in_global_group(&self, g: &GlobalGroupId, c: &ClientId) -> bool {
            g.group_code() == "gov" && c.member_code() == "7"
        }
    }

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!(
            r#"
[server]
owner = "DEV/GOV/1"
server_code = "ss1"
data_dir = "/tmp/x"
[globalconf]
anchor = "a.json"
[[local_groups]]
code = "auditors"
members = ["DEV/GOV/9/audit"]
{extra}"#
        ))
        .unwrap()
    }

    fn id(s: &str) -> ClientId {
        ClientId::from_slash(s).unwrap()
    }

    #[test]
    fn default_deny_and_each_subject_kind() {
        let c = cfg(r#"
[[access]]
service = "DEV/GOV/1/prov/svc"
subject = "SUBSYSTEM:DEV/GOV/2/cons"
[[access]]
service = "DEV/GOV/1/prov/svc"
subject = "MEMBER:DEV/GOV/3"
[[access]]
service = "DEV/GOV/1/prov/svc"
subject = "GLOBALGROUP:DEV/gov"
[[access]]
service = "DEV/GOV/1/prov/svc"
subject = "LOCALGROUP:auditors"
[[access]]
service = "DEV/GOV/1/prov/rest"
subject = "SUBSYSTEM:DEV/GOV/2/cons"
endpoints = [{ method = "GET", path = "/persons/*" }]
"#);
        let svc = ServiceId::from_slash("DEV/GOV/1/prov/svc/v2").unwrap();
        for ok in [
            "DEV/GOV/2/cons",
            "DEV/GOV/3",
            "DEV/GOV/7/x",
            "DEV/GOV/9/audit",
        ] {
            check(&c, &Groups, &id(ok), &svc, None).unwrap();
        }
        for denied in ["DEV/GOV/2/other", "DEV/GOV/3/sub", "DEV/GOV/9/x"] {
            let f = check(&c, &Groups, &id(denied), &svc, None).unwrap_err();
            assert_eq!(
                f.code.render(trustbus_sdk::FaultDialect::Classic),
                "Server.ServerProxy.AccessDenied"
            );
        }
        let rest = ServiceId::from_slash("DEV/GOV/1/prov/rest").unwrap();
        let cons = id("DEV/GOV/2/cons");
        check(&c, &Groups, &cons, &rest, Some(("GET", "/persons/1"))).unwrap();
        assert!(check(&c, &Groups, &cons, &rest, Some(("POST", "/persons/1"))).is_err());
        assert!(check(&c, &Groups, &cons, &rest, Some(("GET", "/admin"))).is_err());
        // traversal never reaches here normalised; a raw one does not match either
        assert!(
            check(
                &c,
                &Groups,
                &cons,
                &rest,
                Some(("GET", "/persons/../admin"))
            )
            .is_err()
        );
    }
}
