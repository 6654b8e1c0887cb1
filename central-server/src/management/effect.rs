//! What an approved management request does to the registry.

use trustbus_sdk::id::ClientId;

use super::RequestBody;
use crate::Error;
use crate::model::{HostedClient, Maintenance, SecurityServer, Subsystem};
use crate::registry::RegistryState;
use crate::util;

/// The global group whose members are maintained automatically: owners of security servers.
pub const SECURITY_SERVER_OWNERS: &str = "security-server-owners";

/// Applies `req` to `state`, or fails without a meaningful change (callers work on a copy).
pub fn apply_effect(state: &mut RegistryState, req: &RequestBody) -> Result<(), Error> {
    let key = req.server().to_slash();
    match req {
        RequestBody::AuthCertRegistration {
            server,
            address,
            auth_cert,
        } => {
            let der = util::unb64("auth_cert", auth_cert)?;
            util::cert_spki(&der)?;
            let fp = util::sha256_hex(&der);
            if state
                .servers
                .values()
                .any(|s| s.auth_cert_sha256.contains(&fp))
            {
                return Err(Error::DuplicateRegistration(format!(
                    "authentication certificate {fp} is already registered"
                )));
            }
            let s = state.servers.entry(key).or_insert_with(|| SecurityServer {
                id: server.clone(),
                owner: server.owner().clone(),
                server_code: server.server_code().to_owned(),
                address: String::new(),
                auth_cert_sha256: Vec::new(),
                clients: Vec::new(),
                maintenance: Maintenance::default(),
            });
            if !address.is_empty() {
                s.address = address.clone();
            }
            s.auth_cert_sha256.push(fp);
            s.auth_cert_sha256.sort();
        }
        RequestBody::ClientRegistration {
            client,
            subsystem_name,
            ..
        } => {
            ensure_client(state, client, subsystem_name.as_deref())?;
            let s = server_mut(state, &key)?;
            if s.clients.iter().any(|c| &c.id == client) {
                return Err(Error::DuplicateRegistration(format!(
                    "{} is already registered on {key}",
                    client.to_slash()
                )));
            }
            s.clients.push(HostedClient {
                id: client.clone(),
                enabled: true,
            });
            s.clients.sort_by(|a, b| a.id.cmp(&b.id));
        }
        RequestBody::ClientDeletion { client, .. } => {
            let s = server_mut(state, &key)?;
            let before = s.clients.len();
            s.clients.retain(|c| &c.id != client);
            if s.clients.len() == before {
                return Err(Error::NotFound(format!(
                    "{} is not registered on {key}",
                    client.to_slash()
                )));
            }
        }
        RequestBody::AddressChange { address, .. } => {
            if address.trim().is_empty() {
                return Err(Error::BadRequest("address must not be empty".into()));
            }
            server_mut(state, &key)?.address = address.clone();
        }
        RequestBody::ClientEnable { client, .. } | RequestBody::ClientDisable { client, .. } => {
            let enable = matches!(req, RequestBody::ClientEnable { .. });
            let s = server_mut(state, &key)?;
            let c = s
                .clients
                .iter_mut()
                .find(|c| &c.id == client)
                .ok_or_else(|| {
                    Error::NotFound(format!("{} is not registered on {key}", client.to_slash()))
                })?;
            c.enabled = enable;
        }
        RequestBody::MaintenanceModeEnable { message, .. } => {
            server_mut(state, &key)?.maintenance = Maintenance {
                enabled: true,
                message: message.clone(),
            };
        }
        RequestBody::MaintenanceModeDisable { .. } => {
            server_mut(state, &key)?.maintenance = Maintenance::default();
        }
    }
    sync_owner_group(state);
    Ok(())
}

fn server_mut<'a>(
    state: &'a mut RegistryState,
    key: &str,
) -> Result<&'a mut SecurityServer, Error> {
    state
        .servers
        .get_mut(key)
        .ok_or_else(|| Error::UnknownServer(key.to_owned()))
}

fn ensure_client(
    state: &mut RegistryState,
    client: &ClientId,
    name: Option<&str>,
) -> Result<(), Error> {
    let member = state
        .members
        .get_mut(&client.owner().to_slash())
        .ok_or_else(|| Error::UnknownMember(client.owner().to_slash()))?;
    if client.subsystem_code().is_some() && !member.subsystems.iter().any(|s| &s.id == client) {
        member.subsystems.push(Subsystem {
            id: client.clone(),
            name: name.map(str::to_owned),
        });
        member.subsystems.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Ok(())
}

/// Keeps `security-server-owners` (if the group exists) equal to the set of server owners.
pub fn sync_owner_group(state: &mut RegistryState) {
    let mut owners: Vec<ClientId> = state.servers.values().map(|s| s.owner.clone()).collect();
    owners.sort();
    owners.dedup();
    if let Some(g) = state.groups.get_mut(SECURITY_SERVER_OWNERS) {
        g.members = owners;
    }
}
