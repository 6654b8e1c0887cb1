//! `trustbus up` killed with SIGKILL (no chance to clean up): its servers still stop, because
//! each watches the standard-input pipe `trustbus up` holds (`TRUSTBUS_EXIT_WITH_PARENT`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use trustbus_integration_tests::{Up, alive, signal};

/// Processes other than `trustbus up` whose command line mentions `dir` (the instance's
/// servers and setup commands all get paths inside it).
fn processes_using(dir: &Path, except: u32) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == except || !alive(pid) {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[test]
fn servers_stop_when_trustbus_up_is_killed() {
    assert!(
        trustbus_integration_tests::security_server_available(),
        "the security-server binary found is not this workspace's build"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trustbus-dev");
    let up = Up::start(&dir);
    let up_pid = up.up_pid();
    let children: Vec<u32> = ["central-server", "ss1", "ss2"]
        .iter()
        .map(|n| up.pid(n))
        .collect();
    for pid in &children {
        assert!(alive(*pid), "child {pid} runs while trustbus up does");
    }
    let mut running = processes_using(&dir, up_pid);
    running.sort_unstable();
    let mut expected = children.clone();
    expected.sort_unstable();
    assert_eq!(
        running.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        expected,
        "every process of the instance is listed in endpoints.json: {running:?}"
    );

    signal(up_pid, "KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_using(&dir, up_pid);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGKILL of trustbus up: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in children {
        assert!(!alive(pid), "child {pid} outlived trustbus up");
    }
    eprintln!("the servers stopped after SIGKILL");
    drop(up);
}
