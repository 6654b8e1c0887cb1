//! Archiving: timestamped records older than the retention period leave the live store for
//! signed archive files, and journal segments that hold only archived records are removed.
//!
//! An archive file `archive-<first>-<last>.asice` is itself an ASiC-E container signed by the
//! server (detached CMS over its manifest). Its data files are each record's evidence container
//! (`evidence.rs`) and `linking.json`:
//!
//! ```text
//! link_0 = the previous archive's head (zeros for the first archive)
//! link_i = SHA-256(link_{i-1} ‖ SHA-256(container_i))
//! ```
//!
//! `linking.json` also names the previous archive file and its SHA-256, and the chain
//! position it covers (first and last record id, the entry hash before the first record and
//! of the last). So archives form one hash chain across files, and each archive continues the
//! message log's own chain exactly where the previous one stopped.
//!
//! Order of work (each step durable before the next): write the archive (temporary file,
//! fsync, rename, directory fsync), write `STATE.json` the same way, remove the records from
//! the store, write `journal/ARCHIVED-HEAD` (the chain head of the last removed segment), then
//! remove segments. A crash before the state is written leaves an archive file that the next
//! round writes again (same name, same records); a crash after it leaves records both archived
//! and live, which the next round removes first (the state says how far archiving got).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use trustbus_pki::DigestAlgorithm;
use trustbus_pki::asic::{AsicBuilder, AsicContainer, AsicError, AsicLimits};
use trustbus_pki::chain::Purpose;
use trustbus_pki::cms::CmsSigner;
use trustbus_pki::{Certificate, Signer};

use super::chain::{ChainHash, ChainHead};
use super::evidence::{self, EvidenceError, RecordJson};
use super::journal;
use super::record::{self, PayloadKey, RecordId};
use super::replay::ARCHIVED_HEAD_FILE;
use super::store::{LogStore, StoreError};
use super::verify::verify_container;
use super::verifyconf::VerificationConf;

/// Name of the linking file inside an archive.
pub const LINKING_FILE: &str = "linking.json";
/// The `format` of `linking.json`.
pub const LINKING_FORMAT: &str = "trustbus-archive-linking/1";
const STATE_FILE: &str = "STATE.json";

/// Most records one archive file may hold: [`verify_archive`] reads files with limits sized
/// for this many, so the archiver never writes a file its own verifier refuses.
pub const MAX_RECORDS_PER_FILE: usize = 10_000;

/// Entries of an archive file besides the records (`linking.json`, manifest, signature,
/// `mimetype`), with room to spare.
const NON_RECORD_ENTRIES: usize = 16;

/// Container limits for reading an archive file of up to [`MAX_RECORDS_PER_FILE`] records.
pub fn archive_limits() -> AsicLimits {
    AsicLimits {
        max_entries: MAX_RECORDS_PER_FILE + NON_RECORD_ENTRIES,
        ..AsicLimits::default()
    }
}

/// Settings of the archiver.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Where archive files go.
    pub dir: PathBuf,
    /// Records younger than this stay live (X-Road's `keep-records-for`, 30 days by default).
    pub retention: Duration,
    /// Most records in one archive file (1 to [`MAX_RECORDS_PER_FILE`]; clamped).
    pub max_records: usize,
}

impl ArchiveConfig {
    /// 30 days retention, at most 10,000 records per file.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            retention: Duration::from_secs(30 * 24 * 3600),
            max_records: MAX_RECORDS_PER_FILE,
        }
    }
}

/// The key that signs archives: the server owner's signing key and certificate.
pub struct ArchiveSigner<'a> {
    /// The key.
    pub signer: &'a dyn Signer,
    /// Its certificate (DER).
    pub cert_der: &'a [u8],
    /// Intermediate certificates to embed.
    pub chain: &'a [Vec<u8>],
}

/// Why archiving or archive verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// File I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A container could not be built.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The archive container could not be written or read.
    #[error(transparent)]
    Asic(#[from] AsicError),
    /// A record did not decode.
    #[error(transparent)]
    Record(#[from] record::RecordError),
    /// The archive state or an archive is inconsistent.
    #[error("{0}")]
    Invalid(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

/// One archive's entry in `linking.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    /// The container's name in the archive.
    pub name: String,
    /// SHA-256 of the container (hex).
    pub sha256: String,
    /// The chain value after this container (hex).
    pub link: String,
}

/// `linking.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linking {
    /// [`LINKING_FORMAT`].
    pub format: String,
    /// The previous archive's file name, if any.
    pub previous_archive: Option<String>,
    /// SHA-256 of the previous archive file (hex), if any.
    pub previous_archive_sha256: Option<String>,
    /// The previous archive's head (hex; zeros for the first archive).
    pub previous_head: String,
    /// First record id in this archive.
    pub first_record: u64,
    /// Last record id in this archive.
    pub last_record: u64,
    /// Entry hash of the record before the first (hex).
    pub prev_entry_hash: String,
    /// Entry hash of the last record (hex): where the live journal continues.
    pub last_entry_hash: String,
    /// The containers, in record order.
    pub entries: Vec<LinkEntry>,
    /// The last link (hex).
    pub head: String,
}

impl Linking {
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    last_file: Option<String>,
    last_file_sha256: Option<String>,
    head: Option<String>,
    last_record: u64,
    last_entry_hash: Option<String>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = DigestAlgorithm::Sha256.digest(b);
    let mut out = [0u8; 32];
    out.copy_from_slice(&d);
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    super::replay::parse_head(&format!("0 {s}")).map(|h| h.hash.0)
}

fn link(prev: &[u8; 32], container: &[u8]) -> [u8; 32] {
    let mut b = prev.to_vec();
    b.extend_from_slice(&sha256(container));
    sha256(&b)
}

/// Writes `bytes` to `path` durably (temporary file, fsync, rename, directory fsync).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    use std::io::Write;
    let dir = path
        .parent()
        .ok_or_else(|| ArchiveError::Invalid(format!("{} has no directory", path.display())))?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("rename to {}", path.display())))?;
    journal::sync_dir(dir).map_err(io(format!("sync {}", dir.display())))
}

/// What one archiving round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The archive file written.
    pub file: PathBuf,
    /// First and last record archived.
    pub first: RecordId,
    /// Last record archived.
    pub last: RecordId,
    /// The archive chain's head after this file (hex).
    pub head: String,
    /// Journal segments removed.
    pub removed_segments: Vec<u64>,
}

/// Archives the timestamped records older than the retention period (at most `max_records`;
/// the store's newest record always stays, so start-up recovery keeps its anchor). Returns
/// `None` when there is nothing to archive.
pub fn archive_once(
    log_dir: &Path,
    store: &dyn LogStore,
    key: Option<&PayloadKey>,
    cfg: &ArchiveConfig,
    signer: &ArchiveSigner<'_>,
    now: OffsetDateTime,
) -> Result<Option<ArchiveReport>, ArchiveError> {
    std::fs::create_dir_all(&cfg.dir).map_err(io(format!("create {}", cfg.dir.display())))?;
    let state_path = cfg.dir.join(STATE_FILE);
    let state: State = match std::fs::read(&state_path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", state_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => return Err(io(format!("read {}", state_path.display()))(e)),
    };
    // Records archived by an earlier round that crashed before removing them.
    let per_file = cfg.max_records.clamp(1, MAX_RECORDS_PER_FILE);
    let leftovers: Vec<_> = store
        .range(RecordId(1), per_file)?
        .into_iter()
        .take_while(|r| r.id.0 <= state.last_record)
        .collect();
    if let Some(last) = leftovers.last() {
        let ids: Vec<RecordId> = leftovers.iter().map(|r| r.id).collect();
        store.remove(&ids)?;
        prune_segments(log_dir, &leftovers, last.id)?;
    }
    let stamped_through = store.timestamp_progress()?.map_or(0, |(_, id)| id.0);
    let newest = store.last()?.map_or(0, |(id, _)| id.0);
    let cutoff = now - cfg.retention;
    let from = RecordId(state.last_record + 1);
    let mut picked = Vec::new();
    for raw in store.range(from, per_file)? {
        let rec = record::decode(&raw.bytes)?;
        if raw.id.0 > stamped_through || raw.id.0 >= newest || rec.meta.logged_at > cutoff {
            break;
        }
        if raw.id.0 != from.0 + picked.len() as u64 {
            return Err(ArchiveError::Invalid(format!(
                "record {} is missing",
                from.0
            )));
        }
        picked.push(raw);
    }
    let (Some(first), Some(last)) = (picked.first(), picked.last()) else {
        return Ok(None);
    };
    let (first_id, last_id, last_hash) = (first.id, last.id, last.hash);

    let mut prev = match &state.last_entry_hash {
        Some(h) => ChainHash(
            unhex32(h).ok_or_else(|| ArchiveError::Invalid("bad state entry hash".into()))?,
        ),
        None if first_id.0 == 1 => ChainHash::GENESIS,
        None => store
            .get_raw(RecordId(first_id.0 - 1))?
            .map(|r| r.hash)
            .ok_or_else(|| ArchiveError::Invalid("the record before the first is gone".into()))?,
    };
    let prev_entry_hash = prev;
    let previous_head = match &state.head {
        Some(h) => unhex32(h).ok_or_else(|| ArchiveError::Invalid("bad state head".into()))?,
        None => [0u8; 32],
    };
    let mut head = previous_head;
    let mut b = AsicBuilder::new(DigestAlgorithm::Sha256);
    let mut entries = Vec::new();
    for raw in &picked {
        let ts = store
            .timestamp(raw.id)?
            .ok_or(EvidenceError::NotTimestamped(raw.id))?;
        let container = evidence::build_container(raw, &prev, &ts, key)?;
        let rec = record::decode(&raw.bytes)?;
        let name = evidence::container_name(&rec);
        head = link(&head, &container);
        entries.push(LinkEntry {
            name: name.clone(),
            sha256: hex(&sha256(&container)),
            link: hex(&head),
        });
        b.add_file(&name, trustbus_pki::asic::MIMETYPE, container)?;
        prev = raw.hash;
    }
    let linking = Linking {
        format: LINKING_FORMAT.into(),
        previous_archive: state.last_file.clone(),
        previous_archive_sha256: state.last_file_sha256,
        previous_head: hex(&previous_head),
        first_record: first_id.0,
        last_record: last_id.0,
        prev_entry_hash: prev_entry_hash.to_hex(),
        last_entry_hash: last_hash.to_hex(),
        entries,
        head: hex(&head),
    };
    b.add_file(LINKING_FILE, "application/json", linking.to_bytes())?;
    let cms = CmsSigner::new(signer.signer, signer.cert_der)
        .and_then(|s| s.with_chain(signer.chain))
        .map_err(AsicError::from)?;
    let archive = b.sign(&cms, now, None)?;
    let name = format!("archive-{:010}-{:010}.asice", first_id.0, last_id.0);
    let file = cfg.dir.join(&name);
    write_durably(&file, &archive)?;
    let new_state = State {
        last_file: Some(name),
        last_file_sha256: Some(hex(&sha256(&archive))),
        head: Some(hex(&head)),
        last_record: last_id.0,
        last_entry_hash: Some(last_hash.to_hex()),
    };
    write_durably(
        &state_path,
        &serde_json::to_vec_pretty(&new_state).unwrap_or_default(),
    )?;
    let ids: Vec<RecordId> = picked.iter().map(|r| r.id).collect();
    store.remove(&ids)?;
    let removed_segments = prune_segments(log_dir, &picked, last_id)?;
    Ok(Some(ArchiveReport {
        file,
        first: first_id,
        last: last_id,
        head: hex(&head),
        removed_segments,
    }))
}

/// Removes sealed segments whose records are all archived (≤ `last`), after recording the
/// chain head they end at in `journal/ARCHIVED-HEAD`.
fn prune_segments(
    log_dir: &Path,
    archived: &[super::store::RawRecord],
    last: RecordId,
) -> Result<Vec<u64>, ArchiveError> {
    let jdir = journal::journal_dir(log_dir);
    let segments = journal::list_segments(&jdir).map_err(io(format!("list {}", jdir.display())))?;
    // A segment ends where the next one begins; the last (open) segment never goes.
    let mut firsts = Vec::new();
    for (no, path) in &segments {
        let bytes = std::fs::read(path).map_err(io(format!("read {}", path.display())))?;
        let first = journal::scan_segment(&bytes)
            .header
            .ok()
            .map(|h| h.first_id)
            .ok_or_else(|| ArchiveError::Invalid(format!("segment {no} header")))?;
        firsts.push((*no, path.clone(), first));
    }
    let mut removable = Vec::new();
    let mut anchor = None;
    for w in firsts.windows(2) {
        let end = RecordId(w[1].2.0.saturating_sub(1));
        if end > last {
            break;
        }
        // Only segments ending at a record archived now (its hash is at hand) or earlier.
        if let Some(r) = archived.iter().find(|r| r.id == end) {
            anchor = Some(ChainHead {
                last_id: end,
                hash: r.hash,
            });
        }
        removable.push((w[0].0, w[0].1.clone()));
    }
    let Some(anchor) = anchor else {
        return Ok(Vec::new());
    };
    // Never remove segments past the anchor we can record.
    removable.retain(|(no, _)| {
        firsts
            .iter()
            .find(|(n, _, _)| n == no)
            .is_some_and(|(_, _, f)| *f <= anchor.last_id)
    });
    let head_path = jdir.join(ARCHIVED_HEAD_FILE);
    write_durably(
        &head_path,
        format!("{} {}\n", anchor.last_id.0, anchor.hash.to_hex()).as_bytes(),
    )?;
    let mut removed = Vec::new();
    for (no, path) in removable {
        std::fs::remove_file(&path).map_err(io(format!("remove {}", path.display())))?;
        removed.push(no);
    }
    journal::sync_dir(&jdir).map_err(io(format!("sync {}", jdir.display())))?;
    Ok(removed)
}

/// What a verified archive says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Records covered.
    pub first_record: u64,
    /// Last record covered.
    pub last_record: u64,
    /// The archive chain head (hex).
    pub head: String,
    /// The previous archive, if any.
    pub previous_archive: Option<String>,
    /// Where the live chain continues: `<last record> <entry hash>` (for `verify-log --anchor`).
    pub chain_head: String,
    /// Who signed the archive.
    pub signer: String,
}

/// Verifies one archive on its own: its signature (by a certificate chaining to an approved
/// CA), `linking.json` (every container's digest and link, the head), every record's evidence
/// container, and that the records form one unbroken run of the message log's chain.
pub fn verify_archive(
    bytes: &[u8],
    conf: &VerificationConf,
) -> Result<ArchiveSummary, ArchiveError> {
    let bad = |s: String| ArchiveError::Invalid(s);
    let c = AsicContainer::read(bytes, &archive_limits())?;
    let now = OffsetDateTime::now_utc();
    let sig = c.verify_signature(now)?;
    let signer = Certificate::from_der(sig.signer_cert.clone())
        .map_err(|e| bad(format!("archive signer: {e}")))?;
    let extra: Vec<Certificate> = sig
        .chain
        .iter()
        .filter_map(|d| Certificate::from_der(d.clone()).ok())
        .collect();
    conf.trust_store()
        .validate(&signer, &extra, Purpose::Sign, sig.signing_time)
        .map_err(|e| bad(format!("archive signer certificate: {e}")))?;
    let lf = c
        .data_file(LINKING_FILE)
        .ok_or_else(|| bad("no linking.json".into()))?;
    let linking: Linking =
        serde_json::from_slice(&lf.data).map_err(|e| bad(format!("linking.json: {e}")))?;
    if linking.to_bytes() != lf.data || linking.format != LINKING_FORMAT {
        return Err(bad("linking.json is not in canonical form".into()));
    }
    let containers: Vec<_> = c
        .data_files
        .iter()
        .filter(|f| f.name != LINKING_FILE)
        .collect();
    if containers.len() != linking.entries.len() || containers.is_empty() {
        return Err(bad("linking.json does not list the containers".into()));
    }
    let mut head = unhex32(&linking.previous_head).ok_or_else(|| bad("previous_head".into()))?;
    let mut prev_entry = linking.prev_entry_hash.clone();
    let mut want_id = linking.first_record;
    for (f, e) in containers.iter().zip(&linking.entries) {
        if f.name != e.name || hex(&sha256(&f.data)) != e.sha256 {
            return Err(bad(format!("{}: digest differs from linking.json", f.name)));
        }
        head = link(&head, &f.data);
        if hex(&head) != e.link {
            return Err(bad(format!("{}: link differs from linking.json", f.name)));
        }
        let report = verify_container(&f.data, conf);
        if let Some(fail) = report.first_failure() {
            return Err(bad(format!(
                "{}: {} failed: {}",
                f.name,
                fail.check.title(),
                fail.detail
            )));
        }
        let inner = AsicContainer::read(&f.data, &AsicLimits::default())?;
        let rj = inner
            .meta_inf(evidence::RECORD_FILE)
            .ok_or_else(|| bad(format!("{}: no record.json", f.name)))
            .and_then(|b| RecordJson::parse(b).map_err(bad))?;
        if rj.record_id != want_id || rj.prev_hash != prev_entry {
            return Err(bad(format!(
                "{}: record {} does not continue the chain at record {want_id}",
                f.name, rj.record_id
            )));
        }
        prev_entry = rj.entry_hash.clone();
        want_id += 1;
    }
    if hex(&head) != linking.head
        || want_id != linking.last_record + 1
        || prev_entry != linking.last_entry_hash
    {
        return Err(bad(
            "linking.json head or chain position does not match".into()
        ));
    }
    Ok(ArchiveSummary {
        first_record: linking.first_record,
        last_record: linking.last_record,
        head: linking.head,
        previous_archive: linking.previous_archive,
        chain_head: format!("{} {}", linking.last_record, linking.last_entry_hash),
        signer: signer.subject().to_owned(),
    })
}

/// Reads the archives in `dir` (for tools): `(file name, bytes)` in name order.
pub fn list_archives(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut out = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))? {
        let ent = ent.map_err(io(format!("list {}", dir.display())))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with("archive-") && name.ends_with(".asice") {
            let bytes = std::fs::read(ent.path()).map_err(io(format!("read {name}")))?;
            out.push((name, bytes));
        }
    }
    out.sort();
    Ok(out)
}

/// The owner's signing key and certificate, owned, for the periodic archiver.
pub struct ArchiveKey {
    /// The key.
    pub signer: std::sync::Arc<dyn Signer>,
    /// Its certificate (DER).
    pub cert_der: Vec<u8>,
    /// Intermediate certificates to embed.
    pub chain: Vec<Vec<u8>>,
}

/// Archives everything due now: [`archive_once`] until it finds nothing more (one file per
/// `max_records`). Returns what each round wrote.
pub fn archive_due(
    log_dir: &Path,
    store: &dyn LogStore,
    payload_key: Option<&PayloadKey>,
    cfg: &ArchiveConfig,
    key: &ArchiveKey,
) -> Result<Vec<ArchiveReport>, ArchiveError> {
    let signer = ArchiveSigner {
        signer: key.signer.as_ref(),
        cert_der: &key.cert_der,
        chain: &key.chain,
    };
    let mut out = Vec::new();
    while let Some(r) = archive_once(
        log_dir,
        store,
        payload_key,
        cfg,
        &signer,
        OffsetDateTime::now_utc(),
    )? {
        out.push(r);
    }
    Ok(out)
}

/// The server's archiving schedule: [`archive_due`] after `first`, then every `every`, until
/// the task is aborted. A failed round is logged and retried at the next interval (the
/// records stay live meanwhile).
pub async fn archive_periodically(
    log_dir: PathBuf,
    store: std::sync::Arc<dyn LogStore>,
    payload_key: Option<std::sync::Arc<PayloadKey>>,
    cfg: ArchiveConfig,
    key: std::sync::Arc<ArchiveKey>,
    first: Duration,
    every: Duration,
) {
    let mut wait = first;
    loop {
        tokio::time::sleep(wait).await;
        wait = every;
        let (log_dir, store, payload_key, cfg, key) = (
            log_dir.clone(),
            store.clone(),
            payload_key.clone(),
            cfg.clone(),
            key.clone(),
        );
        let round = tokio::task::spawn_blocking(move || {
            archive_due(&log_dir, store.as_ref(), payload_key.as_deref(), &cfg, &key)
        })
        .await;
        match round {
            Ok(Ok(reports)) => {
                for r in reports {
                    tracing::info!(
                        file = %r.file.display(),
                        first = r.first.0,
                        last = r.last.0,
                        removed_segments = r.removed_segments.len(),
                        "message log archived"
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "message log archiving failed"),
            Err(e) => tracing::error!(error = %e, "message log archiving task failed"),
        }
    }
}
