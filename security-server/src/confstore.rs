//! Persisting admin API changes: the configuration file the operator edits stays the single
//! source of truth. A change rewrites only what changed in the `[[clients]]`, `[[services]]`,
//! `[[access]]` and `[[local_groups]]` entries (changed keys of an entry; new entries at the
//! end; unchanged entries keep their text and comments, every other section is left exactly
//! as it was), through a temporary file that is fsynced
//! and renamed over the original. If the file was edited on disk since the server loaded or
//! last wrote it, API changes are refused (`configuration_changed_on_disk`) rather than
//! overwriting the operator's edit; a restart picks the edit up.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

use crate::config::Config;
use crate::state::AppState;

/// Why a change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeError {
    /// HTTP status.
    pub status: u16,
    /// Stable error code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl ChangeError {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The configuration file a running server was loaded from.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    /// The file's text as last loaded or written; held while a change is made, so changes
    /// are applied one after the other.
    last: tokio::sync::Mutex<String>,
}

impl ConfigFile {
    /// The file at `path`, whose contents were `text` when the configuration was loaded.
    pub fn new(path: &Path, text: String) -> Self {
        Self {
            path: path.to_owned(),
            last: tokio::sync::Mutex::new(text),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `change` to a copy of the current configuration, checks the result, writes it
    /// durably and makes it current in `state`. Nothing changes when any step fails.
    pub async fn update<T>(
        &self,
        state: &AppState,
        change: impl FnOnce(&mut Config) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let mut last = self.last.lock().await;
        let on_disk = std::fs::read_to_string(&self.path).map_err(|e| {
            ChangeError::new(
                500,
                "configuration_unreadable",
                format!("{}: {e}", self.path.display()),
            )
        })?;
        if on_disk != *last {
            return Err(ChangeError::new(
                409,
                "configuration_changed_on_disk",
                format!(
                    "{} was edited since the server loaded it; restart the server to load the edit, then repeat the change",
                    self.path.display()
                ),
            ));
        }
        let old = state.cfg();
        let mut new = (*old).clone();
        let out = change(&mut new)?;
        new.check()
            .map_err(|e| ChangeError::new(400, "invalid_configuration", e.to_string()))?;
        let text = render(&on_disk, &old, &new)
            .map_err(|e| ChangeError::new(500, "configuration_not_written", e))?;
        // What is written must be what a restart loads.
        let reloaded = Config::from_file_text(&text, &self.path)
            .map_err(|e| ChangeError::new(500, "configuration_not_written", e.to_string()))?;
        if reloaded.clients != new.clients
            || reloaded.services != new.services
            || reloaded.access != new.access
            || reloaded.local_groups != new.local_groups
        {
            return Err(ChangeError::new(
                500,
                "configuration_not_written",
                "the rewritten file would not load as the changed configuration",
            ));
        }
        write_atomically(&self.path, text.as_bytes()).map_err(|e| {
            ChangeError::new(
                500,
                "configuration_not_written",
                format!("{}: {e}", self.path.display()),
            )
        })?;
        *last = text;
        state.replace_config(reloaded);
        Ok(out)
    }
}

/// `doc_text` with the four API-managed sections made to hold `new`'s entries; `old` is what
/// `doc_text` holds now (entry for entry, in order).
pub fn render(doc_text: &str, old: &Config, new: &Config) -> Result<String, String> {
    let mut doc: DocumentMut = doc_text.parse().map_err(|e| format!("{e}"))?;
    // New entries go to the end of the file, in the order they are written here.
    let mut next = max_position(doc.as_table()).unwrap_or(0) + 1;
    let client_key = |c: &crate::config::ClientConfig| c.id.to_slash();
    let service_key = |s: &crate::config::ServiceConfig| s.id.without_version().to_slash();
    let access_key =
        |a: &crate::config::AccessRule| format!("{} {}", a.service.without_version(), a.subject);
    let group_key = |g: &crate::config::LocalGroup| g.code.clone();
    let d = &mut doc;
    sync_section(
        d,
        &mut next,
        "clients",
        &old.clients,
        &new.clients,
        client_key,
    )?;
    sync_section(
        d,
        &mut next,
        "services",
        &old.services,
        &new.services,
        service_key,
    )?;
    sync_section(d, &mut next, "access", &old.access, &new.access, access_key)?;
    sync_section(
        d,
        &mut next,
        "local_groups",
        &old.local_groups,
        &new.local_groups,
        group_key,
    )?;
    Ok(doc.to_string())
}

/// The largest document position of `t` and the tables in it.
fn max_position(t: &Table) -> Option<isize> {
    let mut max = t.position();
    for (_, item) in t.iter() {
        let inner = match item {
            Item::Table(t) => max_position(t),
            Item::ArrayOfTables(a) => a.iter().filter_map(max_position).max(),
            _ => None,
        };
        max = max.max(inner);
    }
    max
}

/// Makes `key`'s array of tables hold `new`. An entry equal to one of `old` keeps that
/// table as it is; an entry with the identity (`ident`) of a changed one keeps its table with
/// only the changed keys rewritten; other entries are new tables at the end of the file.
fn sync_section<T: Serialize + PartialEq>(
    doc: &mut DocumentMut,
    next: &mut isize,
    key: &str,
    old: &[T],
    new: &[T],
    ident: impl Fn(&T) -> String,
) -> Result<(), String> {
    let existing: Vec<Table> = match doc.remove(key) {
        None => Vec::new(),
        Some(Item::Value(toml_edit::Value::Array(a))) if a.is_empty() => Vec::new(),
        Some(item) => item
            .into_array_of_tables()
            .map_err(|_| format!("`{key}` is not an array of tables"))?
            .into_iter()
            .collect(),
    };
    if existing.len() != old.len() {
        return Err(format!(
            "`{key}` in the file does not match the running configuration"
        ));
    }
    let mut used = vec![false; existing.len()];
    let mut out = ArrayOfTables::new();
    for entry in new {
        let same = (0..old.len()).find(|&j| !used[j] && old[j] == *entry);
        let changed = || (0..old.len()).find(|&j| !used[j] && ident(&old[j]) == ident(entry));
        match same
            .map(|j| (j, true))
            .or_else(|| changed().map(|j| (j, false)))
        {
            Some((j, true)) => {
                used[j] = true;
                out.push(existing[j].clone());
            }
            Some((j, false)) => {
                used[j] = true;
                let (was, now) = (to_table(&old[j])?, to_table(entry)?);
                let mut t = existing[j].clone();
                for (k, v) in now.iter() {
                    if was.get(k).map(Item::to_string) != Some(v.to_string()) {
                        t.insert(k, v.clone());
                    }
                }
                for (k, _) in was.iter() {
                    if !now.contains_key(k) {
                        t.remove(k);
                    }
                }
                out.push(t);
            }
            None => {
                let mut t = to_table(entry)?;
                t.set_position(Some(*next));
                *next += 1;
                out.push(t);
            }
        }
    }
    if !out.is_empty() {
        doc.insert(key, Item::ArrayOfTables(out));
    }
    Ok(())
}

/// One entry as a TOML table; nested lists of tables (endpoints) inline.
fn to_table<T: Serialize>(entry: &T) -> Result<Table, String> {
    let text = toml::to_string(entry).map_err(|e| e.to_string())?;
    let doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut t = doc.as_table().clone();
    let nested: Vec<String> = t
        .iter()
        .filter(|(_, item)| item.is_array_of_tables())
        .map(|(k, _)| k.to_owned())
        .collect();
    for k in nested {
        // Removed and inserted again, so the key is written `k = [...]` like the rest.
        if let Some(Ok(mut v)) = t.remove(&k).map(Item::into_value) {
            v.decor_mut().clear();
            t.insert(&k, Item::Value(v));
        }
    }
    t.fmt();
    t.set_implicit(false);
    Ok(t)
}

/// Replaces `path` with `data`: a temporary file in the same directory, fsynced, renamed over
/// it (keeping its permissions), and the directory fsynced, so a crash leaves either the old
/// or the new file.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".trustbus-config-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"# operator comment at the top
[server]
owner = "DEV/GOV/1"
server_code = "ss1"
data_dir = "data"

[globalconf]
anchor = "anchor.json"

# the echo service, keep it
[[services]]
id = "DEV/GOV/1/prov/echo"
kind = "rest"
url = "http://127.0.0.1:9/api"
endpoints = [{ method = "GET", path = "/persons/*" }]

[[access]]
service = "DEV/GOV/1/prov/echo"
subject = "SUBSYSTEM:DEV/GOV/2/cons"

[message_log.timestamping]
"#;

    #[test]
    fn unchanged_entries_and_other_sections_keep_their_text() {
        let path = Path::new("/etc/trustbus/security-server.toml");
        let old = Config::from_file_text(BASE, path).unwrap();
        let mut new = old.clone();
        new.access.push(crate::config::AccessRule {
            service: trustbus_sdk::ServiceId::from_slash("DEV/GOV/1/prov/echo").unwrap(),
            subject: "MEMBER:DEV/GOV/3".into(),
            endpoints: vec![crate::config::EndpointConfig {
                method: "POST".into(),
                path: "/persons".into(),
            }],
        });
        new.local_groups.push(crate::config::LocalGroup {
            code: "auditors".into(),
            members: vec![trustbus_sdk::ClientId::from_slash("DEV/GOV/9/a").unwrap()],
        });
        let text = render(BASE, &old, &new).unwrap();
        assert!(text.starts_with("# operator comment at the top\n[server]\n"));
        assert!(
            text.contains(
                "# the echo service, keep it\n[[services]]\nid = \"DEV/GOV/1/prov/echo\""
            )
        );
        assert!(text.contains("[message_log.timestamping]"));
        let back = Config::from_file_text(&text, path).unwrap();
        assert_eq!(back.access, new.access);
        assert_eq!(back.local_groups, new.local_groups);
        assert_eq!(back.services, old.services);

        // A changed entry keeps its table: only the changed key is rewritten.
        let mut off = back.clone();
        off.services[0].enabled = false;
        off.services[0].disabled_notice = "upgrade".into();
        let text_off = render(&text, &back, &off).unwrap();
        assert!(
            text_off.contains("# the echo service, keep it\n[[services]]\nid = \"DEV/GOV/1/prov/echo\"\nkind = \"rest\"\nurl = \"http://127.0.0.1:9/api\"\nendpoints = [{ method = \"GET\", path = \"/persons/*\" }]\nenabled = false\ndisabled_notice = \"upgrade\"\n"),
            "{text_off}"
        );
        assert_eq!(
            Config::from_file_text(&text_off, path).unwrap().services,
            off.services
        );
        // New entries are appended at the end of the file, after every other table.
        let tail = text.rsplit("[message_log.timestamping]").next().unwrap();
        assert!(
            tail.contains("[[access]]") && tail.contains("[[local_groups]]"),
            "{text}"
        );

        // Removing the only access rule removes the section; the service stays.
        let mut none = back.clone();
        none.access.clear();
        let text2 = render(&text, &back, &none).unwrap();
        assert!(!text2.contains("[[access]]"), "{text2}");
        assert!(text2.contains("# the echo service, keep it"));
        let back2 = Config::from_file_text(&text2, path).unwrap();
        assert!(back2.access.is_empty());
        assert_eq!(back2.local_groups, new.local_groups);
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "old").unwrap();
        write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
