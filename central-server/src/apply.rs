//! Declarative setup: make the registry match a whole-instance description (TOML).
//!
//! The file declares member classes, members with subsystems, global groups, approved CAs and
//! TSAs, trusted OIDC issuers and settings. Applying it adds what is missing, updates what
//! differs and removes what the file no longer lists, in one registry transaction, and returns
//! one line per change, so a second run returns nothing. Exceptions, because they belong to
//! the management-request flow: security servers and requests are never touched, subsystems
//! that are registered as clients on a server are kept, a member that owns a server or has a
//! registered client cannot be removed (the whole apply fails with `in_use`), and the members
//! of `security-server-owners` are maintained automatically.

use std::collections::BTreeMap;
use std::fmt::Debug;

use serde::Deserialize;
use trustbus_sdk::id::ClientId;

use crate::Error;
use crate::management::effect_sync_owner_group;
use crate::model::{
    ApprovedCa, ApprovedTsa, GlobalGroup, Member, MemberClass, OidcIssuer, Settings, Subsystem,
};
use crate::registry::{Registry, RegistryState};

/// A member in the instance file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberDecl {
    /// Member class.
    pub class: String,
    /// Member code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Subsystems.
    #[serde(default)]
    pub subsystems: Vec<SubsystemDecl>,
}

/// A subsystem in the instance file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemDecl {
    /// Subsystem code.
    pub code: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// A global group in the instance file; members in slash form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDecl {
    /// Group code.
    pub code: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Members (ignored for `security-server-owners`).
    #[serde(default)]
    pub members: Vec<ClientId>,
}

/// The whole-instance description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceFile {
    /// Must equal the server's instance.
    pub instance: String,
    /// Settings (defaults if absent).
    #[serde(default)]
    pub settings: Settings,
    /// Member classes.
    #[serde(default)]
    pub member_classes: Vec<MemberClass>,
    /// Members.
    #[serde(default)]
    pub members: Vec<MemberDecl>,
    /// Global groups.
    #[serde(default)]
    pub global_groups: Vec<GroupDecl>,
    /// Approved CAs.
    #[serde(default)]
    pub approved_cas: Vec<ApprovedCa>,
    /// Approved TSAs.
    #[serde(default)]
    pub approved_tsas: Vec<ApprovedTsa>,
    /// Trusted OIDC issuers.
    #[serde(default)]
    pub trusted_oidc_issuers: Vec<OidcIssuer>,
}

impl InstanceFile {
    /// Parses the TOML text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Config(format!("instance file: {e}")))
    }
}

fn diff<T: PartialEq + Debug>(
    kind: &str,
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    out: &mut Vec<String>,
) {
    for (k, v) in new {
        match old.get(k) {
            None => out.push(format!("+ {kind} {k}")),
            Some(o) if o != v => out.push(format!("~ {kind} {k}")),
            _ => {}
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push(format!("- {kind} {k}"));
        }
    }
}

/// Rewrites `state` to match `file`; returns the changes, one line each.
pub fn apply_to_state(
    state: &mut RegistryState,
    file: &InstanceFile,
    instance: &str,
) -> Result<Vec<String>, Error> {
    if file.instance != instance {
        return Err(Error::BadRequest(format!(
            "the file describes instance {}, this server is {instance}",
            file.instance
        )));
    }
    file.settings.validate()?;
    let old = state.clone();
    let mut changes = Vec::new();

    state.member_classes = file
        .member_classes
        .iter()
        .map(|c| (c.code.clone(), c.clone()))
        .collect();

    // Clients registered on servers: their members and subsystems must survive.
    let hosted: Vec<ClientId> = state
        .servers
        .values()
        .flat_map(|s| s.clients.iter().map(|c| c.id.clone()))
        .collect();
    let owners: Vec<ClientId> = state.servers.values().map(|s| s.owner.clone()).collect();

    let mut members = BTreeMap::new();
    for m in &file.members {
        if !state.member_classes.contains_key(&m.class) {
            return Err(Error::UnknownMemberClass(m.class.clone()));
        }
        let id = ClientId::member(instance, &m.class, &m.code)?;
        let mut subsystems = Vec::new();
        for s in &m.subsystems {
            subsystems.push(Subsystem {
                id: ClientId::subsystem(instance, &m.class, &m.code, &s.code)?,
                name: s.name.clone(),
            });
        }
        if let Some(existing) = old.members.get(&id.to_slash()) {
            for s in &existing.subsystems {
                if hosted.contains(&s.id) && !subsystems.iter().any(|x| x.id == s.id) {
                    subsystems.push(s.clone());
                }
            }
        }
        subsystems.sort_by(|a, b| a.id.cmp(&b.id));
        subsystems.dedup_by(|a, b| a.id == b.id);
        let key = id.to_slash();
        if members.contains_key(&key) {
            return Err(Error::BadRequest(format!("member {key} is declared twice")));
        }
        members.insert(
            key,
            Member {
                id,
                name: m.name.clone(),
                subsystems,
            },
        );
    }
    for (k, m) in &old.members {
        if !members.contains_key(k)
            && (owners.contains(&m.id) || hosted.iter().any(|h| h.owner() == m.id))
        {
            return Err(Error::InUse(format!(
                "member {k} owns a security server or has registered clients; it cannot be removed"
            )));
        }
    }
    state.members = members;

    state.groups = file
        .global_groups
        .iter()
        .map(|g| {
            let mut members = g.members.clone();
            members.sort();
            members.dedup();
            (
                g.code.clone(),
                GlobalGroup {
                    code: g.code.clone(),
                    description: g.description.clone(),
                    members,
                },
            )
        })
        .collect();
    effect_sync_owner_group(state);
    for ca in &file.approved_cas {
        crate::management::trust::check_ca_record(ca)
            .map_err(|e| Error::BadRequest(format!("approved CA {:?}: {e}", ca.name)))?;
    }
    state.cas = file
        .approved_cas
        .iter()
        .map(|c| (c.name.clone(), c.clone()))
        .collect();
    state.tsas = file
        .approved_tsas
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    for i in &file.trusted_oidc_issuers {
        i.validate()?;
    }
    state.issuers = file
        .trusted_oidc_issuers
        .iter()
        .map(|i| (i.issuer.clone(), i.clone()))
        .collect();
    state.settings = file.settings;

    diff(
        "member class",
        &old.member_classes,
        &state.member_classes,
        &mut changes,
    );
    diff("member", &old.members, &state.members, &mut changes);
    diff("global group", &old.groups, &state.groups, &mut changes);
    diff("approved CA", &old.cas, &state.cas, &mut changes);
    diff("approved TSA", &old.tsas, &state.tsas, &mut changes);
    diff("OIDC issuer", &old.issuers, &state.issuers, &mut changes);
    if old.settings != state.settings {
        changes.push("~ settings".into());
    }
    Ok(changes)
}

/// Applies `file` to the registry in one transaction; returns the changes.
pub fn apply(registry: &Registry, file: &InstanceFile) -> Result<Vec<String>, Error> {
    let instance = registry.instance().to_owned();
    let (changes, _) = registry.mutate(|s| apply_to_state(s, file, &instance))?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostedClient, Maintenance, SecurityServer};
    use trustbus_sdk::id::SecurityServerId;

    const FILE: &str = r#"
        instance = "DEV"
        [[member_classes]]
        code = "GOV"
        [[members]]
        class = "GOV"
        code = "1"
        name = "Ministry"
        subsystems = [{ code = "a" }]
        [[global_groups]]
        code = "security-server-owners"
    "#;

    #[test]
    fn idempotent_keeps_hosted_subsystems_and_refuses_removing_owners() {
        let mut s = RegistryState::default();
        let f = InstanceFile::parse(FILE).unwrap();
        assert_eq!(apply_to_state(&mut s, &f, "DEV").unwrap().len(), 3);
        assert!(apply_to_state(&mut s, &f, "DEV").unwrap().is_empty());
        assert!(apply_to_state(&mut s, &f, "EE").is_err());
        // A server hosting a subsystem the file does not list.
        let owner = ClientId::member("DEV", "GOV", "1").unwrap();
        let hosted = ClientId::subsystem("DEV", "GOV", "1", "b").unwrap();
        s.members
            .get_mut("DEV/GOV/1")
            .unwrap()
            .subsystems
            .push(Subsystem {
                id: hosted.clone(),
                name: None,
            });
        s.servers.insert(
            "DEV/GOV/1/ss".into(),
            SecurityServer {
                id: SecurityServerId::new(&owner, "ss").unwrap(),
                owner: owner.clone(),
                server_code: "ss".into(),
                address: String::new(),
                auth_cert_sha256: vec![],
                clients: vec![HostedClient {
                    id: hosted.clone(),
                    enabled: true,
                }],
                maintenance: Maintenance::default(),
            },
        );
        let changes = apply_to_state(&mut s, &f, "DEV").unwrap();
        assert_eq!(
            changes,
            vec!["~ global group security-server-owners".to_string()]
        );
        assert!(s.client_exists(&hosted));
        assert_eq!(s.groups["security-server-owners"].members, vec![owner]);
        // Removing the owning member is refused.
        let without =
            InstanceFile::parse("instance = \"DEV\"\n[[member_classes]]\ncode = \"GOV\"\n")
                .unwrap();
        let before = s.clone();
        assert!(matches!(
            apply_to_state(&mut s.clone(), &without, "DEV"),
            Err(Error::InUse(_))
        ));
        assert_eq!(s, before);
    }

    #[test]
    fn oidc_issuers_are_validated() {
        let issuer = |extra: &str| {
            format!(
                "{FILE}\n[[trusted_oidc_issuers]]\nissuer = \"https://idp.example\"\n\
                 audiences = [\"portal\"]\n{extra}\n"
            )
        };
        let ok = issuer(
            "jwks_url = \"https://idp.example/jwks\"\nacr_levels = [\"low\", \"high\"]\n\
             min_acr = { default = \"high\" }",
        );
        let mut s = RegistryState::default();
        apply_to_state(&mut s, &InstanceFile::parse(&ok).unwrap(), "DEV").unwrap();
        assert_eq!(s.issuers["https://idp.example"].acr_levels, ["low", "high"]);
        for (extra, why) in [
            ("", "exactly one of jwks_url and jwks"),
            (
                "jwks_url = \"https://idp.example/jwks\"\njwks = { keys = [] }",
                "exactly one of jwks_url and jwks",
            ),
            ("jwks_url = \"ftp://idp.example/jwks\"", "jwks_url must be"),
            ("jwks = { keys = \"no\" }", "jwks:"),
            (
                "jwks_url = \"https://idp.example/jwks\"\nacr_levels = [\"low\", \"low\"]",
                "repeated value",
            ),
            (
                "jwks_url = \"https://idp.example/jwks\"\nacr_levels = [\"low\"]\n\
                 min_acr = { default = \"substantial\" }",
                "is not one of acr_levels",
            ),
        ] {
            let f = InstanceFile::parse(&issuer(extra)).unwrap();
            match apply_to_state(&mut RegistryState::default(), &f, "DEV") {
                Err(Error::BadRequest(m)) => assert!(m.contains(why), "{extra}: {m}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
    }
}
