//! The auditor API: search the message log, export evidence, download the verification
//! configuration. An axum `Router` that the security server's admin listener mounts; only the
//! auditor role may use it, and every call (refused ones too) goes into the [`AuditTrail`].
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/audit/records?message_id=&request_id=&client=&service=&user_id=&from=&to=&limit=&after=` | `{"records": [...], "next": cursor \| null}` |
//! | `GET /api/v1/audit/records/{id}/evidence` | `application/vnd.etsi.asic-e+zip` |
//! | `GET /api/v1/audit/exchanges/{request_id}/evidence` | `application/zip` (request and response containers) |
//! | `GET /api/v1/audit/verificationconf` | `application/zip` (`shared-params.json`, `ca.pem`, `tsa.pem`) |
//!
//! Errors are `{"code", "message"}`: `unauthenticated` 401, `forbidden` 403, `bad_request`
//! 400, `not_found` 404, `not_timestamped` 409, `internal_error` 500.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audittrail::AuditTrail;
use super::evidence::{self, EvidenceError};
use super::record::{LogRecord, MessageKind, Outcome, PayloadKey, RecordId};
use super::store::{Cursor, LogStore, Query as StoreQuery, QueryFilter};
use super::verifyconf;

/// What the caller's credentials say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// An auditor; the identity goes into the trail (API key id, certificate subject).
    Auditor(String),
    /// No or unknown credentials (401).
    Unauthenticated,
    /// Known credentials without the auditor role (403); the identity is logged.
    Forbidden(String),
}

/// Decides who is calling. The admin listener supplies it: check an `Authorization: Bearer`
/// API key with role `auditor`, or read the identity of a verified TLS client certificate that
/// the listener put into the request extensions (mTLS).
pub trait AuditorAuth: Send + Sync {
    /// The decision for one request.
    fn check(&self, headers: &HeaderMap, extensions: &Extensions) -> AuthDecision;
}

impl<F> AuditorAuth for F
where
    F: Fn(&HeaderMap, &Extensions) -> AuthDecision + Send + Sync,
{
    fn check(&self, headers: &HeaderMap, extensions: &Extensions) -> AuthDecision {
        self(headers, extensions)
    }
}

/// Supplies the current global configuration files for the verification configuration.
pub type GlobalConfSource = Arc<dyn Fn() -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// What the auditor API needs.
pub struct AuditorApi {
    /// The message log's store.
    pub store: Arc<dyn LogStore>,
    /// Opens payloads encrypted at rest, if they are.
    pub payload_key: Option<Arc<PayloadKey>>,
    /// The global configuration files (at least `shared-params.json`).
    pub globalconf: GlobalConfSource,
    /// Who may call.
    pub auth: Arc<dyn AuditorAuth>,
    /// Where queries are recorded.
    pub trail: Arc<AuditTrail>,
}

/// Largest page.
const MAX_LIMIT: usize = 1000;

/// The router (paths under `/api/v1/audit/`).
pub fn router(api: AuditorApi) -> Router {
    Router::new()
        .route("/api/v1/audit/records", get(search))
        .route("/api/v1/audit/records/{id}/evidence", get(export_record))
        .route(
            "/api/v1/audit/exchanges/{request_id}/evidence",
            get(export_exchange),
        )
        .route("/api/v1/audit/verificationconf", get(verification_conf))
        .with_state(Arc::new(api))
}

struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.1, "message": self.2});
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<EvidenceError> for ApiError {
    fn from(e: EvidenceError) -> Self {
        match e {
            EvidenceError::NotFound(_) => {
                ApiError(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            EvidenceError::NotTimestamped(_) => {
                ApiError(StatusCode::CONFLICT, "not_timestamped", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "auditor export failed");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "export failed; see the server log".into(),
                )
            }
        }
    }
}

/// Authorizes, runs `f`, and records the call (with its status and result count) in the trail.
/// A failure to write the trail fails the call: an unrecorded audit query is not answered.
fn audited(
    api: &AuditorApi,
    headers: &HeaderMap,
    ext: &Extensions,
    action: &str,
    target: &str,
    f: impl FnOnce() -> Result<(Response, u64), ApiError>,
) -> Response {
    let (actor, result) = match api.auth.check(headers, ext) {
        AuthDecision::Auditor(who) => (who, f()),
        AuthDecision::Unauthenticated => (
            "anonymous".to_owned(),
            Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "auditor credentials required".into(),
            )),
        ),
        AuthDecision::Forbidden(who) => (
            who,
            Err(ApiError(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the auditor role is required".into(),
            )),
        ),
    };
    let (response, count) = match result {
        Ok((r, n)) => (r, n),
        Err(e) => (e.into_response(), 0),
    };
    match api
        .trail
        .append(&actor, action, target, response.status().as_u16(), count)
    {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(error = %e, "audit trail write failed; refusing the auditor query");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "audit trail unavailable".into(),
            )
            .into_response()
        }
    }
}

/// Query parameters of a search.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    message_id: Option<String>,
    request_id: Option<String>,
    client: Option<String>,
    service: Option<String>,
    user_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "bad_request", msg.into())
}

fn parse_time(s: &Option<String>, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    s.as_deref()
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|e| bad(format!("{name}: {e}")))
        })
        .transpose()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn kind_name(k: MessageKind) -> &'static str {
    match k {
        MessageKind::RequestSent => "request_sent",
        MessageKind::RequestReceived => "request_received",
        MessageKind::ResponseSent => "response_sent",
        MessageKind::ResponseReceived => "response_received",
    }
}

fn record_json(r: &LogRecord, timestamped: bool) -> serde_json::Value {
    serde_json::json!({
        "id": r.id.0,
        "kind": kind_name(r.meta.kind),
        "message_id": r.meta.message_id,
        "request_id": r.meta.request_id.to_string(),
        "client": r.meta.client,
        "service": r.meta.service,
        "user_id": r.meta.user.as_ref().map(|u| u.id.clone()),
        "user_verified": r.meta.user.as_ref().map(|u| u.verified),
        "issue": r.meta.issue,
        "logged_at": r.meta.logged_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "payload_size": r.meta.payload_size,
        "fault": match &r.meta.outcome { Outcome::Ok => None, Outcome::Fault(c) => Some(c.clone()) },
        "timestamped": timestamped,
    })
}

fn run_search(api: &AuditorApi, p: &SearchParams) -> Result<(Response, u64), ApiError> {
    let request_id = p
        .request_id
        .as_deref()
        .map(|s| Uuid::parse_str(s).map_err(|e| bad(format!("request_id: {e}"))))
        .transpose()?;
    // The most selective given filter uses an index; the others are applied to its results.
    let filter = if let Some(m) = &p.message_id {
        QueryFilter::MessageId(m.clone())
    } else if let Some(r) = request_id {
        QueryFilter::RequestId(r)
    } else if let Some(c) = &p.client {
        QueryFilter::Client(c.clone())
    } else if let Some(s) = &p.service {
        QueryFilter::Service(s.clone())
    } else if let Some(u) = &p.user_id {
        QueryFilter::User(u.clone())
    } else {
        QueryFilter::All
    };
    let limit = p.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let mut q = StoreQuery::new(filter, limit);
    q.from = parse_time(&p.from, "from")?;
    q.to = parse_time(&p.to, "to")?;
    q.after = match &p.after {
        Some(a) => Some(
            unhex(a)
                .map(Cursor)
                .filter(Cursor::is_well_formed)
                .ok_or_else(|| bad("after: not a cursor"))?,
        ),
        None => None,
    };
    let page = api.store.query(&q).map_err(|e| {
        tracing::error!(error = %e, "auditor search failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "search failed".into(),
        )
    })?;
    let keep = |r: &LogRecord| {
        p.message_id
            .as_ref()
            .is_none_or(|m| *m == r.meta.message_id)
            && request_id.is_none_or(|id| id == r.meta.request_id)
            && p.client.as_ref().is_none_or(|c| *c == r.meta.client)
            && p.service.as_ref().is_none_or(|s| *s == r.meta.service)
            && p.user_id
                .as_ref()
                .is_none_or(|u| r.meta.user.as_ref().is_some_and(|x| x.id == *u))
    };
    // Batches are stored in record order: every record up to the progress mark is timestamped.
    let stamped_through = api
        .store
        .timestamp_progress()
        .ok()
        .flatten()
        .map_or(RecordId(0), |(_, id)| id);
    let records: Vec<serde_json::Value> = page
        .records
        .iter()
        .filter(|r| keep(r))
        .map(|r| record_json(r, r.id <= stamped_through))
        .collect();
    let n = records.len() as u64;
    let body = serde_json::json!({
        "records": records,
        "next": page.next.map(|c| hex(&c.0)),
    });
    Ok((axum::Json(body).into_response(), n))
}

async fn search(
    State(api): State<Arc<AuditorApi>>,
    headers: HeaderMap,
    ext: Extensions,
    raw: axum::extract::RawQuery,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let target = raw.0.unwrap_or_default();
    audited(&api, &headers, &ext, "search", &target, || {
        let Query(p) = params.map_err(|e| bad(e.body_text()))?;
        run_search(&api, &p)
    })
}

fn attachment(content_type: &'static str, name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn export_record(
    State(api): State<Arc<AuditorApi>>,
    headers: HeaderMap,
    ext: Extensions,
    Path(id): Path<String>,
) -> Response {
    audited(&api, &headers, &ext, "export_record", &id, || {
        let id = RecordId(id.parse().map_err(|_| bad("record id is a number"))?);
        let bytes = evidence::record_container(api.store.as_ref(), id, api.payload_key.as_deref())?;
        let name = match api.store.get(id) {
            Ok(Some(r)) => evidence::container_name(&r),
            _ => format!("{id}.asice"),
        };
        Ok((attachment(trustbus_pki::asic::MIMETYPE, &name, bytes), 1))
    })
}

async fn export_exchange(
    State(api): State<Arc<AuditorApi>>,
    headers: HeaderMap,
    ext: Extensions,
    Path(request_id): Path<String>,
) -> Response {
    audited(&api, &headers, &ext, "export_exchange", &request_id, || {
        let rid = Uuid::parse_str(&request_id).map_err(|e| bad(format!("request id: {e}")))?;
        let files =
            evidence::exchange_containers(api.store.as_ref(), rid, api.payload_key.as_deref())?;
        let n = files.len() as u64;
        let zip = super::zipfile::write(&files).map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                e.to_string(),
            )
        })?;
        Ok((attachment("application/zip", &format!("{rid}.zip"), zip), n))
    })
}

async fn verification_conf(
    State(api): State<Arc<AuditorApi>>,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    audited(&api, &headers, &ext, "verificationconf", "", || {
        let zip = verifyconf::export_zip(&(api.globalconf)()).map_err(|e| {
            tracing::error!(error = %e, "verification configuration export failed");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "no usable global configuration".into(),
            )
        })?;
        Ok((
            attachment("application/zip", "verificationconf.zip", zip),
            1,
        ))
    })
}
