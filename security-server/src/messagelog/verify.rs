//! Offline verification of an evidence container against a verification configuration
//! (what `trustbus verify` runs). Checks run in a fixed order and stop at the first failure,
//! which the report names.

use serde::Serialize;
use time::OffsetDateTime;
use trustbus_pki::Certificate;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::asic::{AsicContainer, AsicError, AsicLimits};
use trustbus_pki::chain::Purpose;
use trustbus_pki::merkle::InclusionProof;
use trustbus_pki::ocsp;
use trustbus_pki::profile;
use trustbus_pki::revocation::CertStatus;
use trustbus_pki::tsa::{self, MessageImprint, TspError};
use trustbus_sdk::id::{ClientId, ServiceId};

use super::dataobjects::DataObject;
use super::evidence::{PAYLOAD_ENC_FILE, PROOF_FILE, RECORD_FILE, RecordJson, TIMESTAMP_FILE};
use super::exchange::{Direction, MESSAGE_JSON, direction_of};
use super::verifyconf::VerificationConf;

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Zip structure, `mimetype`, manifest syntax, required entries.
    Structure,
    /// Every data file matches its manifest digest.
    ManifestDigests,
    /// The CMS signature over the manifest.
    Signature,
    /// The signer certificate belongs to the member that had to sign.
    SignerMember,
    /// The signer certificate chains to an approved CA at signing time.
    CertificateChain,
    /// The embedded OCSP response says good and was fresh at signing time.
    Ocsp,
    /// The timestamp token is valid and from an approved TSA.
    Timestamp,
    /// `record.json` and the container's parts give the stated record hash.
    RecordHash,
    /// The Merkle proof links the record hash to the timestamped root.
    MerkleProof,
}

impl Check {
    /// Human-readable name.
    pub fn title(self) -> &'static str {
        match self {
            Self::Structure => "container structure",
            Self::ManifestDigests => "manifest digests",
            Self::Signature => "signature",
            Self::SignerMember => "signer certificate and member",
            Self::CertificateChain => "certificate chain",
            Self::Ocsp => "OCSP at signing time",
            Self::Timestamp => "timestamp token",
            Self::RecordHash => "record hash",
            Self::MerkleProof => "Merkle proof to the timestamped root",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Which check.
    pub check: Check,
    /// Passed or not.
    pub ok: bool,
    /// What was found (the reason, when it failed).
    pub detail: String,
}

/// The verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when every check passed.
    pub valid: bool,
    /// The checks that ran, in order; the last one failed when `valid` is false.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// The failing check and its reason, if any.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| !c.ok)
    }

    /// A readable multi-line report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s.push_str(&format!(
                "[{}] {}: {}\n",
                if c.ok { " ok " } else { "FAIL" },
                c.check.title(),
                c.detail
            ));
        }
        match self.first_failure() {
            None => s.push_str("VALID: every check passed\n"),
            Some(f) => s.push_str(&format!(
                "INVALID: {} failed: {}\n",
                f.check.title(),
                f.detail
            )),
        }
        s
    }

    /// The machine-readable report.
    pub fn to_json(&self) -> String {
        let first = self.first_failure().map(
            |f| serde_json::json!({"check": f.check, "title": f.check.title(), "reason": f.detail}),
        );
        let v = serde_json::json!({
            "valid": self.valid,
            "first_failure": first,
            "checks": self.checks.iter().map(|c| serde_json::json!({
                "check": c.check, "title": c.check.title(), "ok": c.ok, "detail": c.detail
            })).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }
}

struct Run {
    checks: Vec<CheckResult>,
}

impl Run {
    fn pass(&mut self, check: Check, detail: impl Into<String>) {
        self.checks.push(CheckResult {
            check,
            ok: true,
            detail: detail.into(),
        });
    }
    fn fail(mut self, check: Check, detail: impl Into<String>) -> Report {
        self.checks.push(CheckResult {
            check,
            ok: false,
            detail: detail.into(),
        });
        Report {
            valid: false,
            checks: self.checks,
        }
    }
}

/// A time for the report (RFC 3339).
fn t(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// Who had to sign, according to the signed `message.json`.
fn expected_signer(message_json: &[u8]) -> Result<(Direction, ClientId, String, String), String> {
    let v: serde_json::Value =
        serde_json::from_slice(message_json).map_err(|e| format!("message.json: {e}"))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("message.json has no {k}"))
    };
    let client = field("client")?;
    let service = field("service")?;
    let (direction, member) = match field("direction")?.as_str() {
        "request" => (
            Direction::Request,
            ClientId::from_slash(&client)
                .map_err(|e| format!("client: {e}"))?
                .owner(),
        ),
        "response" => (
            Direction::Response,
            ServiceId::from_slash(&service)
                .map_err(|e| format!("service: {e}"))?
                .provider()
                .owner(),
        ),
        other => return Err(format!("message.json direction {other:?}")),
    };
    Ok((direction, member, client, service))
}

/// Verifies an evidence container (bytes of a `.asice`) against `conf`.
pub fn verify_container(bytes: &[u8], conf: &VerificationConf) -> Report {
    verify_container_at(bytes, conf, OffsetDateTime::now_utc())
}

/// [`verify_container`] with the current time given (signing times may not lie after it).
pub fn verify_container_at(bytes: &[u8], conf: &VerificationConf, now: OffsetDateTime) -> Report {
    let mut run = Run { checks: Vec::new() };

    // 1–2. Structure and manifest digests.
    let c = match AsicContainer::read(bytes, &AsicLimits::default()) {
        Ok(c) => c,
        Err(
            e @ (AsicError::DigestMismatch(_)
            | AsicError::MissingDataFile(_)
            | AsicError::UncoveredFile(_)),
        ) => {
            run.pass(Check::Structure, "zip, mimetype and manifest well-formed");
            return run.fail(Check::ManifestDigests, e.to_string());
        }
        Err(e) => return run.fail(Check::Structure, e.to_string()),
    };
    for (name, _) in &c.meta_inf {
        let known = [TIMESTAMP_FILE, PROOF_FILE, RECORD_FILE, PAYLOAD_ENC_FILE]
            .iter()
            .any(|k| name.strip_prefix("META-INF/") == Some(k));
        if !known {
            return run.fail(Check::Structure, format!("unexpected entry {name}"));
        }
    }
    let (Some(token), Some(proof_json), Some(record_json)) = (
        c.meta_inf(TIMESTAMP_FILE),
        c.meta_inf(PROOF_FILE),
        c.meta_inf(RECORD_FILE),
    ) else {
        return run.fail(
            Check::Structure,
            format!("META-INF/{TIMESTAMP_FILE}, {PROOF_FILE} and {RECORD_FILE} are required"),
        );
    };
    let Some(message_json) = c.data_file(MESSAGE_JSON) else {
        return run.fail(Check::Structure, "no message.json data file");
    };
    run.pass(
        Check::Structure,
        format!("ASiC-E with {} data files", c.data_files.len()),
    );
    let names: Vec<String> = c
        .data_files
        .iter()
        .map(|f| format!("{} ({} bytes)", f.name, f.data.len()))
        .collect();
    run.pass(
        Check::ManifestDigests,
        format!("all match: {}", names.join(", ")),
    );

    // 3. Signature.
    let sig = match trustbus_pki::cms::verify_detached(&c.signature, &c.manifest, now) {
        Ok(s) => s,
        Err(e) => return run.fail(Check::Signature, e.to_string()),
    };
    if let Err(e) = strict_signed_data(&c.signature) {
        return run.fail(Check::Signature, format!("signature structure: {e}"));
    }
    let Ok(signer) = Certificate::from_der(sig.signer_cert.clone()) else {
        return run.fail(Check::Signature, "signer certificate does not parse");
    };
    run.pass(
        Check::Signature,
        format!("signed by {} at {}", signer.subject(), t(sig.signing_time)),
    );

    // 4. Signer ↔ member.
    let (direction, expected, client, service) = match expected_signer(&message_json.data) {
        Ok(x) => x,
        Err(e) => return run.fail(Check::SignerMember, e),
    };
    let member = match profile::sign_cert_member(&signer) {
        Ok(m) => m.member,
        Err(e) => return run.fail(Check::SignerMember, format!("signer certificate: {e}")),
    };
    if member != expected {
        let role = match direction {
            Direction::Request => "client",
            Direction::Response => "service provider",
        };
        return run.fail(
            Check::SignerMember,
            format!(
                "signer is member {}, but the {role} is {}",
                member.to_slash(),
                expected.to_slash()
            ),
        );
    }
    let member_slash = member.to_slash();
    if !conf.members.is_empty() && !conf.members.iter().any(|(id, _)| *id == member_slash) {
        return run.fail(
            Check::SignerMember,
            format!("member {member_slash} is not registered in the verification configuration"),
        );
    }
    run.pass(
        Check::SignerMember,
        format!(
            "member {member_slash}, as required for a {}",
            match direction {
                Direction::Request => "request (the client's member)",
                Direction::Response => "response (the service provider's member)",
            }
        ),
    );

    // 5. Chain to an approved CA at signing time.
    let extra: Vec<Certificate> = sig
        .chain
        .iter()
        .filter_map(|d| Certificate::from_der(d.clone()).ok())
        .collect();
    if extra.len() != sig.chain.len() {
        return run.fail(
            Check::CertificateChain,
            "an embedded certificate does not parse",
        );
    }
    let path = match conf
        .trust_store()
        .validate(&signer, &extra, Purpose::Sign, sig.signing_time)
    {
        Ok(p) => p.path,
        Err(e) => return run.fail(Check::CertificateChain, e.to_string()),
    };
    // Every embedded certificate must be accounted for, so no byte of the signature goes
    // unchecked.
    let known = |d: &[u8]| {
        path.iter().any(|p| p.der() == d)
            || conf.ca_roots.iter().any(|(r, _)| r.der() == d)
            || conf.ca_intermediates.iter().any(|r| r.der() == d)
    };
    if let Some(stray) = sig.chain.iter().find(|d| !known(d)) {
        let name = Certificate::from_der(stray.clone())
            .map(|c| c.subject().to_owned())
            .unwrap_or_default();
        return run.fail(
            Check::CertificateChain,
            format!("embedded certificate {name:?} is not part of an approved chain"),
        );
    }
    let Some(issuer) = path.get(1) else {
        return run.fail(Check::CertificateChain, "path has no issuer");
    };
    run.pass(
        Check::CertificateChain,
        format!(
            "to approved CA {}",
            path.last().map(|c| c.subject()).unwrap_or("")
        ),
    );

    // 6. OCSP good and fresh at signing time.
    let Some(resp) = sig.ocsp_responses.first() else {
        return run.fail(Check::Ocsp, "no OCSP response embedded in the signature");
    };
    let freshness =
        time::Duration::seconds(i64::try_from(conf.ocsp_freshness_seconds).unwrap_or(i64::MAX));
    match ocsp::verify_response(
        resp,
        signer.der(),
        issuer.der(),
        sig.signing_time,
        freshness,
    ) {
        Ok(st) => match st.status {
            CertStatus::Good => {
                run.pass(Check::Ocsp, format!("good, thisUpdate {}", st.this_update))
            }
            other => return run.fail(Check::Ocsp, format!("certificate status {other:?}")),
        },
        Err(e) => return run.fail(Check::Ocsp, e.to_string()),
    }

    // 7. Timestamp token from an approved TSA. The imprint is compared with the proof's root
    // in step 9; here an imprint mismatch alone still means a valid token.
    let claimed = InclusionProof::from_json(proof_json).ok();
    let probe = MessageImprint {
        alg: DigestAlgorithm::Sha256,
        digest: claimed.as_ref().map(|(_, r)| r.clone()).unwrap_or_default(),
    };
    let token_matches_root = match tsa::verify_token(token, &probe, &conf.tsa_certs()) {
        Ok(view) => {
            // The token proves the record existed at genTime; a signing time claimed after it
            // (beyond clock skew) cannot be right.
            if view.gen_time + time::Duration::minutes(5) < sig.signing_time {
                return run.fail(
                    Check::Timestamp,
                    format!(
                        "signing time {} lies after the timestamp {}",
                        t(sig.signing_time),
                        t(view.gen_time)
                    ),
                );
            }
            run.pass(Check::Timestamp, format!("genTime {}", t(view.gen_time)));
            true
        }
        Err(TspError::ImprintMismatch) => {
            run.pass(Check::Timestamp, "valid token from an approved TSA");
            false
        }
        Err(e) => return run.fail(Check::Timestamp, e.to_string()),
    };
    if let Err(e) = strict_signed_data(token) {
        return run.fail(Check::Timestamp, format!("token structure: {e}"));
    }

    // 8. Record hash.
    let rj = match RecordJson::parse(record_json) {
        Ok(r) => r,
        Err(e) => return run.fail(Check::RecordHash, e),
    };
    let consistent = rj.client == client
        && rj.service == service
        && rj
            .meta()
            .map(|m| direction_of(m.kind) == direction)
            .unwrap_or(false);
    if !consistent {
        return run.fail(
            Check::RecordHash,
            "record.json does not describe the signed message (client, service or direction)",
        );
    }
    let objects: Vec<DataObject> = c
        .data_files
        .iter()
        .map(|f| DataObject::new(f.name.clone(), f.mime_type.clone(), f.data.clone()))
        .collect();
    let leaf = match rj.recompute_entry_hash(
        &objects,
        c.meta_inf(PAYLOAD_ENC_FILE),
        &c.manifest,
        &c.signature,
    ) {
        Ok(h) => h,
        Err(e) => return run.fail(Check::RecordHash, e),
    };
    match rj.entry_hash() {
        Ok(stated) if stated == leaf => run.pass(
            Check::RecordHash,
            format!("record {} hash {}", rj.record_id, leaf.to_hex()),
        ),
        Ok(_) => {
            return run.fail(
                Check::RecordHash,
                format!(
                    "recomputed record hash {} differs from record.json",
                    leaf.to_hex()
                ),
            );
        }
        Err(e) => return run.fail(Check::RecordHash, e),
    }

    // 9. Merkle proof to the timestamped root.
    let Some((proof, root)) = claimed else {
        return run.fail(Check::MerkleProof, "merkle-proof.json does not parse");
    };
    if proof.to_json(&root) != proof_json {
        return run.fail(
            Check::MerkleProof,
            "merkle-proof.json is not in canonical form",
        );
    }
    if proof.alg != DigestAlgorithm::Sha256 {
        return run.fail(Check::MerkleProof, "proof algorithm is not SHA-256");
    }
    match proof.root_for(&leaf.0) {
        Ok(r) if r == root => {}
        Ok(_) => return run.fail(Check::MerkleProof, "proof does not lead to its stated root"),
        Err(e) => return run.fail(Check::MerkleProof, e.to_string()),
    }
    if !token_matches_root {
        return run.fail(
            Check::MerkleProof,
            "the timestamp token covers a different root than the proof",
        );
    }
    run.pass(
        Check::MerkleProof,
        format!(
            "leaf {} of {} in batch {}",
            proof.leaf_index, proof.tree_size, rj.timestamp_batch
        ),
    );
    Report {
        valid: true,
        checks: run.checks,
    }
}

/// Checks the parts of a CMS SignedData that its signature does not cover, so that no byte of
/// a signature or token can change unnoticed: DER that re-encodes to the same bytes, version 1,
/// 3 or 5, one SignerInfo whose version fits its identifier, and a digestAlgorithms set
/// holding exactly the signer's digest algorithm.
pub fn strict_signed_data(ci_der: &[u8]) -> Result<(), String> {
    use der::{Decode, Encode};
    let ci = cms::content_info::ContentInfo::from_der(ci_der).map_err(|e| e.to_string())?;
    if ci.to_der().map_err(|e| e.to_string())? != ci_der {
        return Err("not in DER form".into());
    }
    // SignedData as a sequence of raw elements: version, digestAlgorithms, encapContentInfo,
    // [0] certificates, [1] crls, signerInfos.
    let parts: Vec<der::asn1::Any> = ci.content.decode_as().map_err(|e| e.to_string())?;
    let (Some(version), Some(algs), Some(infos)) = (parts.first(), parts.get(1), parts.last())
    else {
        return Err("SignedData too short".into());
    };
    let version: u8 = version.decode_as().map_err(|e| e.to_string())?;
    // 5 when "other" revocation information (an RFC 5940 OCSP response) is embedded.
    if ![1, 3, 5].contains(&version) {
        return Err(format!("SignedData version {version}"));
    }
    // With exactly one signer the SET's content is that SignerInfo.
    let si = cms::signed_data::SignerInfo::from_der(infos.value())
        .map_err(|_| "exactly one SignerInfo expected".to_owned())?;
    let sid_ok = matches!(
        (&si.sid, si.version),
        (
            cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(_),
            cms::content_info::CmsVersion::V1
        ) | (
            cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(_),
            cms::content_info::CmsVersion::V3
        )
    );
    if !sid_ok {
        return Err("SignerInfo version does not fit its signer identifier".into());
    }
    let alg = si.digest_alg.to_der().map_err(|e| e.to_string())?;
    if algs.value() != alg.as_slice() {
        return Err("digestAlgorithms does not match the signer's digest algorithm".into());
    }
    Ok(())
}
