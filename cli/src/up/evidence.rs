//! Evidence of the first exchange, for the third printed command: through the consumer's
//! auditor API, the verification configuration is saved as `DIR/verificationconf.zip` and the
//! readiness probe's request is looked up until its log record is timestamped (exportable).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use trustbus_sdk::client::{BusClient, HyperTransport, Transport};

use super::UpError;
use super::endpoints::Endpoints;
use super::layout::{Layout, write_file};

/// GET `url` with the auditor key; the status and body.
async fn get(
    client: &BusClient<HyperTransport>,
    url: &str,
    key: &str,
) -> Result<(u16, Bytes), String> {
    let req = http::Request::get(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let resp = client
        .transport()
        .send(req)
        .await
        .map_err(|e| e.to_string())?;
    Ok((resp.status().as_u16(), resp.into_body()))
}

/// Saves the verification configuration and returns the id of the consumer's log record of
/// the probe request `request_id`, once it is timestamped (at most `timeout`).
pub(crate) async fn prepare(
    layout: &Layout,
    e: &Endpoints,
    client: &BusClient<HyperTransport>,
    request_id: &str,
    timeout: Duration,
) -> Result<u64, UpError> {
    let consumer = &e.security_servers[0];
    let base = consumer
        .auditor_url
        .as_deref()
        .ok_or_else(|| UpError::Setup("no auditor API URL".into()))?;
    let key = e
        .api_keys
        .auditor
        .as_deref()
        .ok_or_else(|| UpError::Setup("no auditor API key".into()))?;
    let fail = |what: &str, detail: String| {
        UpError::Setup(format!(
            "auditor API of {} ({what}): {detail} (logs: {})",
            consumer.id, e.files.logs
        ))
    };
    let (status, zip) = get(client, &format!("{base}/verificationconf"), key)
        .await
        .map_err(|err| fail("verification configuration", err))?;
    if status != 200 {
        return Err(fail(
            "verification configuration",
            format!("HTTP {status}: {}", String::from_utf8_lossy(&zip)),
        ));
    }
    write_file(&layout.verification_conf(), &zip)?;
    let deadline = Instant::now() + timeout;
    let url = format!("{base}/records?request_id={request_id}");
    loop {
        let last = match get(client, &url, key).await {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let request = v["records"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["kind"] == "request_sent"));
                match request {
                    Some(r) if r["timestamped"] == true => {
                        return r["id"]
                            .as_u64()
                            .ok_or_else(|| fail("search", format!("no record id in {v}")));
                    }
                    Some(_) => "the record is not timestamped yet".to_owned(),
                    None => format!("no request_sent record for request {request_id}"),
                }
            }
            Ok((status, body)) => format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            Err(err) => err,
        };
        if Instant::now() > deadline {
            return Err(fail(
                "evidence of the first exchange",
                format!("not exportable within {} s: {last}", timeout.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
