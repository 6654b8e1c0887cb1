//! Metadata services answered by the security servers themselves, in X-Road's REST format
//! (PR-MREST): `listClients` on the client proxy, `listMethods` and `allowedMethods` on the
//! provider's server proxy.

use serde_json::{Value, json};
use trustbus_sdk::id::{ClientId, ServiceId};

use crate::access::GroupLookup;
use crate::config::{Config, ServiceKind};
use crate::gcview::GcView;

/// Service codes the provider's server answers itself.
pub const PROVIDER_SERVICES: [&str; 3] = ["listMethods", "allowedMethods", "getOpenAPI"];

/// `getOpenAPI?serviceCode=CODE`: the OpenAPI document configured for the provider's REST
/// service `CODE`, with its content type; `None` if there is none.
pub fn openapi(
    cfg: &Config,
    provider: &ClientId,
    query: Option<&str>,
) -> Option<(Vec<u8>, &'static str)> {
    let code = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("serviceCode="))?;
    let svc = cfg.services.iter().find(|s| {
        s.id.provider() == provider
            && s.id.code() == code
            && s.kind == ServiceKind::Rest
            && s.enabled
    })?;
    let path = svc.openapi.as_ref()?;
    let bytes = std::fs::read(path).ok()?;
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    Some((
        bytes,
        if yaml {
            "application/yaml"
        } else {
            "application/json"
        },
    ))
}

fn client_json(id: &ClientId) -> Value {
    let mut v = json!({
        "object_type": if id.subsystem_code().is_some() { "SUBSYSTEM" } else { "MEMBER" },
        "xroad_instance": id.instance(),
        "member_class": id.member_class(),
        "member_code": id.member_code(),
    });
    if let (Some(s), Some(o)) = (id.subsystem_code(), v.as_object_mut()) {
        o.insert("subsystem_code".into(), s.into());
    }
    v
}

fn service_json(id: &ServiceId, kind: ServiceKind) -> Value {
    let mut v = client_json(id.provider());
    if let Some(o) = v.as_object_mut() {
        o.insert("object_type".into(), "SERVICE".into());
        o.insert("service_code".into(), id.code().into());
        o.insert(
            "service_type".into(),
            match kind {
                ServiceKind::Rest => "REST",
                ServiceKind::Soap => "WSDL",
            }
            .into(),
        );
    }
    v
}

/// `listClients`: every member and subsystem of the instance, with names.
pub fn list_clients(view: &GcView) -> Vec<u8> {
    let mut out = Vec::new();
    for m in &view.conf.shared.members {
        out.push(json!({ "id": client_json(&m.id), "name": m.name }));
        for s in &m.subsystems {
            out.push(json!({ "id": client_json(&s.id), "name": s.name.clone().unwrap_or_else(|| m.name.clone()) }));
        }
    }
    json!({ "member": out }).to_string().into_bytes()
}

/// The enabled services of `provider` of this kind; with `allowed_only`, only those `client`
/// has an access right to.
fn services<'a>(
    cfg: &'a Config,
    groups: &'a dyn GroupLookup,
    provider: &'a ClientId,
    client: &'a ClientId,
    kind: ServiceKind,
    allowed_only: bool,
) -> impl Iterator<Item = &'a crate::config::ServiceConfig> + 'a {
    cfg.services
        .iter()
        .filter(move |s| s.id.provider() == provider && s.enabled && s.kind == kind)
        // A grant limited to some endpoints still makes the service an allowed one.
        .filter(move |s| {
            !allowed_only || crate::access::check(cfg, groups, client, &s.id, None).is_ok()
        })
}

/// REST `listMethods` (every enabled REST service of `provider`) or `allowedMethods` (those
/// `client` has an access right to).
pub fn methods(
    cfg: &Config,
    groups: &dyn GroupLookup,
    provider: &ClientId,
    client: &ClientId,
    allowed_only: bool,
) -> Vec<u8> {
    let list: Vec<Value> = services(
        cfg,
        groups,
        provider,
        client,
        ServiceKind::Rest,
        allowed_only,
    )
    .map(|s| {
        let mut v = service_json(&s.id, s.kind);
        // The endpoints declared or read from the service's OpenAPI document; for
        // allowedMethods only those an access right of the client covers (a declared `*` in
        // a path is matched as that literal segment, so only a wildcard right covers it).
        v["endpoint_list"] = Value::Array(
            s.endpoints
                .iter()
                .filter(|e| {
                    !allowed_only
                        || crate::access::check(
                            cfg,
                            groups,
                            client,
                            &s.id,
                            Some((&e.method, &e.path)),
                        )
                        .is_ok()
                })
                .map(|e| json!({ "method": e.method, "path": e.path }))
                .collect(),
        );
        v
    })
    .collect();
    json!({ "service": list }).to_string().into_bytes()
}

/// SOAP `listMethods` / `allowedMethods`: the response body element, in the `xrd` and `id`
/// namespaces X-Road uses, listing the provider's SOAP services.
pub fn methods_soap(
    cfg: &Config,
    groups: &dyn GroupLookup,
    provider: &ClientId,
    client: &ClientId,
    allowed_only: bool,
) -> String {
    let name = if allowed_only {
        "allowedMethodsResponse"
    } else {
        "listMethodsResponse"
    };
    let mut x = format!(
        "<xrd:{name} xmlns:xrd=\"{}\" xmlns:id=\"http://x-road.eu/xsd/identifiers\">",
        trustbus_sdk::soap::XROAD_NS
    );
    for s in services(
        cfg,
        groups,
        provider,
        client,
        ServiceKind::Soap,
        allowed_only,
    ) {
        x.push_str("<xrd:service id:objectType=\"SERVICE\">");
        for (field, value) in s.id.xml_fields() {
            let f = field.as_str();
            // Identifier characters need no escaping in text content; these are for safety.
            let v = value.replace('&', "&amp;").replace('<', "&lt;");
            x.push_str(&format!("<id:{f}>{v}</id:{f}>"));
        }
        x.push_str("</xrd:service>");
    }
    x.push_str(&format!("</xrd:{name}>"));
    x
}

/// The `serviceCode` (and `serviceVersion`) asked for in a SOAP `getWsdl` request body.
pub fn wsdl_request(body_content: &[u8]) -> Option<(String, Option<String>)> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_reader(body_content);
    let (mut code, mut version, mut field) = (None, None, None::<bool>);
    loop {
        match r.read_event().ok()? {
            Event::Start(e) => {
                field = match e.local_name().as_ref() {
                    "serviceCode" => Some(true),
                    "serviceVersion" => Some(false),
                    _ => None,
                }
            }
            Event::Text(t) => {
                let v = t.xml10_content().trim().to_owned();
                match field {
                    Some(true) => code = Some(v),
                    Some(false) => version = Some(v),
                    None => {}
                }
            }
            Event::End(_) => field = None,
            Event::DocType(_) => return None,
            Event::Eof => break,
            _ => {}
        }
    }
    code.filter(|c| !c.is_empty()).map(|c| (c, version))
}

/// The WSDL file of the provider's SOAP service `code`, if configured.
pub fn wsdl(cfg: &Config, provider: &ClientId, code: &str) -> Option<Vec<u8>> {
    let svc = cfg.services.iter().find(|s| {
        s.id.provider() == provider
            && s.id.code() == code
            && s.kind == ServiceKind::Soap
            && s.enabled
    })?;
    std::fs::read(svc.wsdl.as_ref()?).ok()
}

/// The `getWsdl` answer: a `multipart/related` message whose SOAP part is `envelope` and whose
/// second part is the WSDL, and its content type.
pub fn wsdl_response(envelope: &[u8], wsdl: &[u8]) -> Option<(Vec<u8>, String)> {
    let ty = trustbus_sdk::multipart::MultipartType {
        boundary: trustbus_sdk::multipart::MultipartType::new_boundary(),
        start: None,
        mtom: false,
    };
    let parts: [trustbus_sdk::multipart::OutPart<'_>; 2] = [
        (
            vec![
                ("Content-Type".into(), "text/xml; charset=UTF-8".into()),
                ("Content-Transfer-Encoding".into(), "8bit".into()),
            ],
            envelope,
        ),
        (
            vec![
                ("Content-Type".into(), "text/xml; charset=UTF-8".into()),
                ("Content-ID".into(), "<wsdl>".into()),
            ],
            wsdl,
        ),
    ];
    let body = trustbus_sdk::multipart::write_multipart(&ty.boundary, &parts).ok()?;
    Some((body, ty.header_value()))
}
