//! The example information systems behind the provider's security server: a REST population
//! register (`GET /persons/{id}`), the same as a SOAP service (`getPerson`), a citizen's own
//! records (`GET /citizen/my-records`, for a bus-verified end user only) and a statistics
//! service that no one is granted (to show access denied). They are written with the SDK's
//! provider support, as an agency would write them. An echo service (`POST /echo`) gives the
//! benchmark the same work through the bus as its direct baseline.

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use trustbus_sdk::id::{ClientId, ServiceId};
use trustbus_sdk::provider::{BusContext, VerifiedUser};
use trustbus_sdk::soap::{self, HashAlgorithm, SoapRequestBuilder};

use super::plan;

/// Namespace of the example SOAP service's body elements.
const NS: &str = "http://example.trustbus.dev/population";

/// The router of the examples listener.
pub(crate) fn router() -> Router {
    Router::new()
        .route("/persons/{*rest}", get(person))
        .route("/soap", post(soap_service))
        .route("/citizen/my-records", get(my_records))
        .route("/statistics", get(statistics))
        .route("/statistics/{*rest}", get(statistics))
        .route("/echo", post(echo))
        .route("/echo/{*rest}", post(echo))
}

/// `POST /echo`: the request body back, streamed (a 1 GiB benchmark body is never held in
/// memory), with the request's `Content-Type` and `Content-Length`.
async fn echo(req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut resp = Response::new(Body::new(body));
    for h in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
        if let Some(v) = parts.headers.get(&h) {
            resp.headers_mut().insert(h, v.clone());
        }
    }
    resp
}

/// The one person the example register knows, by national id.
fn lookup(id: &str) -> Option<serde_json::Value> {
    (id == plan::EXAMPLE_PERSON || id == plan::CITIZEN).then(|| {
        json!({
            "id": plan::EXAMPLE_PERSON,
            "given_name": "Mari",
            "family_name": "Maasikas",
            "birth_date": "1980-01-08",
            "residence": "Tallinn"
        })
    })
}

/// `GET /persons/{id}`. The SDK's g2g example asks for `/persons/{id}` below the service, which
/// arrives here as `/persons/persons/{id}`: the id is the last segment either way.
async fn person(ctx: BusContext, Path(rest): Path<String>) -> Response {
    let id = rest.rsplit('/').next().unwrap_or_default();
    match lookup(id) {
        Some(mut p) => {
            p["requested_by"] = json!(ctx.client.to_slash());
            Json(p).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": format!("no person {id}")})),
        )
            .into_response(),
    }
}

/// `POST /soap`: `getPerson` with `<id>` in the request wrapper.
async fn soap_service(body: Bytes) -> Response {
    let request = match soap::parse_request(body.to_vec(), &soap::Limits::default()) {
        Ok(r) => r,
        Err(f) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                soap::render_fault(&f, trustbus_sdk::FaultDialect::Classic),
            )
                .into_response();
        }
    };
    let text = String::from_utf8_lossy(request.body_content()).into_owned();
    let id = element_text(&text, "id").unwrap_or_default();
    let person = match lookup(&id) {
        Some(p) => format!(
            "<person><id>{}</id><givenName>{}</givenName><familyName>{}</familyName>\
             <birthDate>{}</birthDate></person>",
            plan::EXAMPLE_PERSON,
            p["given_name"].as_str().unwrap_or_default(),
            p["family_name"].as_str().unwrap_or_default(),
            p["birth_date"].as_str().unwrap_or_default(),
        ),
        None => String::new(),
    };
    let body_xml = format!(
        "<prod:getPersonResponse xmlns:prod=\"{NS}\"><prod:found>{}</prod:found>{person}\
         </prod:getPersonResponse>",
        !person.is_empty()
    );
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        soap::build_response(&request, &body_xml, HashAlgorithm::Sha512),
    )
        .into_response()
}

/// The text of the first `<name>` or `<p:name>` element (the example request is ours; a real
/// service would use an XML parser).
fn element_text(xml: &str, name: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let local = tag.rsplit(':').next().unwrap_or(tag);
        if local == name {
            let after = &rest[end + 1..];
            let close = after.find("</")?;
            return Some(after[..close].trim().to_owned());
        }
    }
    None
}

/// `GET /citizen/my-records`: only for an end user the consumer's security server verified
/// from an ID token; `VerifiedUser` refuses anything else with `Client.InvalidUserIdentity`.
async fn my_records(user: VerifiedUser) -> Response {
    Json(json!({
        "subject": user.id,
        "records": [
            {"kind": "residence", "value": "Tallinn", "since": "2004-05-01"},
            {"kind": "tax_return", "year": 2025, "status": "accepted"}
        ]
    }))
    .into_response()
}

/// `GET /statistics`: no access right grants it.
async fn statistics(ctx: BusContext) -> Response {
    Json(json!({"population": 1_331_057, "requested_by": ctx.client.to_slash()})).into_response()
}

/// The example SOAP request the printed curl command posts (`getPerson` for the example
/// person, from the consumer subsystem).
pub(crate) fn soap_request() -> Result<Vec<u8>, String> {
    let client = ClientId::from_slash(plan::CONSUMER).map_err(|e| e.to_string())?;
    let service = plan::SERVICES
        .iter()
        .find(|s| s.kind == plan::Kind::Soap)
        .ok_or("no SOAP example service")?;
    let service = ServiceId::from_slash(service.id).map_err(|e| e.to_string())?;
    Ok(SoapRequestBuilder::new(client, service)
        .id("get-person-example")
        .issue("trustbus-up-example")
        .body(format!(
            "<prod:getPerson xmlns:prod=\"{NS}\"><prod:id>{}</prod:id></prod:getPerson>",
            plan::EXAMPLE_PERSON
        ))
        .build())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_example_soap_request_parses_and_names_the_person() {
        let req = soap_request().unwrap();
        let m = soap::parse_request(req, &soap::Limits::default()).unwrap();
        assert_eq!(m.header().client.to_slash(), plan::CONSUMER);
        let body = String::from_utf8_lossy(m.body_content()).into_owned();
        assert_eq!(
            element_text(&body, "id").as_deref(),
            Some(plan::EXAMPLE_PERSON)
        );
        assert_eq!(element_text(&body, "missing"), None);
    }
}
