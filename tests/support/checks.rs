//! Checks the SIPp transfer suites make while their flows run and after: agent states reached
//! (or held) and the call's one CDR line. Failures during a run are collected, not panicked,
//! so one report shows every party's view.

use std::time::Duration;

use handover::app::RunningServer;

use super::server::wait_until;

/// How long a state may take to be reached while SIPp flows run on a loaded machine.
pub const STATE_WAIT: Duration = Duration::from_secs(15);

/// Waits for agent `id` to reach `state`; on timeout notes the failure.
pub async fn reach(server: &RunningServer, id: &str, state: &str, failures: &mut Vec<String>) {
    if !wait_until(
        || server.agent_state(id).as_deref() == Some(state),
        STATE_WAIT,
    )
    .await
    {
        failures.push(format!(
            "agent {id}: expected {state:?} within {STATE_WAIT:?}, still {:?}",
            server.agent_state(id)
        ));
    }
}

/// Notes a failure unless agent `id` is in `state` now.
pub fn check_state(server: &RunningServer, id: &str, state: &str, when: &str, f: &mut Vec<String>) {
    let got = server.agent_state(id);
    if got.as_deref() != Some(state) {
        f.push(format!(
            "agent {id} {when}: expected {state:?}, got {got:?}"
        ));
    }
}

/// The one CDR line in `path` (one call, one line), once written; the file is removed.
pub async fn the_cdr(path: &std::path::Path) -> serde_json::Value {
    let mut line = None;
    let written = wait_until(
        || {
            line = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_owned));
            line.is_some()
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(written, "no CDR written to {}", path.display());
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(text.lines().count(), 1, "one call, one CDR:\n{text}");
    let _ = std::fs::remove_file(path);
    serde_json::from_str(&line.unwrap_or_default()).unwrap()
}
