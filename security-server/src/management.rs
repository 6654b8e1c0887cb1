//! Management requests to the central server (docs/globalconf.md §6.5): registering this
//! server's authentication certificate and its client subsystems. Requests are signed by the
//! owner member's signing key; an authentication-certificate registration also carries a
//! proof of possession by the authentication key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use trustbus_central_server::management::{CanonicalRequest, Envelope, EnvelopeKey, RequestBody};
use trustbus_sdk::id::ClientId;

use crate::identity::Identity;

/// The signed envelope for `request`: signed by the owner member, except client requests,
/// which the client's member signs (with its key held on this server); an
/// authentication-certificate registration also carries a proof of possession by the
/// authentication key. Each key's last OCSP response is stapled (the central server requires
/// one when the CA publishes a responder; call [`Identity::refresh_ocsp`] first).
pub fn envelope(identity: &Identity, request: RequestBody) -> Result<Envelope, String> {
    let auth_pop = matches!(request, RequestBody::AuthCertRegistration { .. });
    let member = request
        .client()
        .map(ClientId::owner)
        .unwrap_or_else(|| identity.owner.clone());
    let signer = identity.signer(&member).ok_or_else(|| {
        format!(
            "no signing key for member {} on this server",
            member.to_slash()
        )
    })?;
    let canonical = CanonicalRequest {
        member,
        created_at: crate::now()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| e.to_string())?,
        request,
    };
    let sign_ocsp = signer.ocsp().map(|(der, _, _)| der);
    let auth_ocsp = identity.auth.ocsp().map(|(der, _, _)| der);
    let member = EnvelopeKey {
        signer: &signer.key,
        cert_der: signer.cert().der(),
        ocsp_response: sign_ocsp.as_deref(),
    };
    let auth = auth_pop.then(|| EnvelopeKey {
        signer: &identity.auth.key,
        cert_der: identity.auth.cert().der(),
        ocsp_response: auth_ocsp.as_deref(),
    });
    Envelope::sign(&canonical, member, auth).map_err(|e| e.to_string())
}

/// The registration of this server's authentication certificate at `address`.
pub fn auth_cert_registration(identity: &Identity, address: &str) -> RequestBody {
    RequestBody::AuthCertRegistration {
        server: identity.server.clone(),
        address: address.to_owned(),
        auth_cert: STANDARD.encode(identity.auth.cert().der()),
    }
}

/// The registration of `client` on this server.
pub fn client_registration(identity: &Identity, client: &ClientId) -> RequestBody {
    RequestBody::ClientRegistration {
        server: identity.server.clone(),
        client: client.clone(),
        subsystem_name: None,
    }
}

/// Sends `env` to the management service at `base` (its published address, ending in
/// `/managementservice/v1`). The service speaks mutual TLS: `tls` is
/// [`trustbus_central_server::tlsconf::management_client_config`], which presents this
/// server's authentication certificate and pins the published management certificate.
/// Returns the stored request as JSON text.
pub async fn submit(
    tls: std::sync::Arc<rustls::ClientConfig>,
    base: &str,
    env: &Envelope,
) -> Result<String, String> {
    let url = format!("{}/requests", base.trim_end_matches('/'));
    let body = serde_json::to_vec(env).map_err(|e| e.to_string())?;
    let req = http::Request::post(&url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(crate::httpc::full(body))
        .map_err(|e| e.to_string())?;
    let timeout = std::time::Duration::from_secs(30);
    let resp = crate::httpc::call_https(tls, req, timeout, timeout)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text =
        http_body_util::BodyExt::collect(http_body_util::Limited::new(resp.into_body(), 1 << 20))
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{url}: {status}: {text}"))
    }
}
