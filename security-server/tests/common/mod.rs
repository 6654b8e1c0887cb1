//! Shared by the integration tests that start the real binary.

use std::path::PathBuf;

/// The `security-server` binary of this build.
///
/// Normally `CARGO_BIN_EXE_security-server`. When several git worktrees share one
/// `CARGO_TARGET_DIR`, another worktree's build can replace that uplifted file with its own
/// `security-server`; then the newest binary of this crate under `deps/` that has our
/// subcommands is used instead.
pub(crate) fn ss_exe() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_security-server"));
    if is_ours(&exe) {
        return exe;
    }
    let deps = exe.with_file_name("deps");
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("security_server-") && !n.contains('.'))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .find(|p| is_ours(p))
        .unwrap_or(exe)
}

fn is_ours(p: &std::path::Path) -> bool {
    std::process::Command::new(p)
        .arg("--help")
        .output()
        .map(|o| {
            let t = String::from_utf8_lossy(&o.stdout);
            t.contains("import-cert") && t.contains("register")
        })
        .unwrap_or(false)
}
