//! Replays the `session` fuzz target's committed regressions
//! (`fuzz/regressions/session`) through the same check it runs, plus
//! random inputs: a whole session on arbitrary bytes never panics, answers
//! within bounds and leaves nothing behind.

#[path = "../../../fuzz/session_check.rs"]
mod session_check;

use proptest::prelude::*;
use std::path::Path;

#[test]
fn the_regression_corpus_upholds_the_session_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/session");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory exists") {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        // A session that never ends is a finding too: watch for it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(|| session_check::check(&input));
            let _ = done.send(outcome.is_ok());
        });
        match finished.recv_timeout(std::time::Duration::from_secs(20)) {
            Ok(true) => {}
            Ok(false) => panic!("invariant broken by {}", path.display()),
            Err(_) => panic!("the session never ended on {}", path.display()),
        }
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} corpus files in {}",
        dir.display()
    );
}

proptest! {
    #[test]
    fn random_bytes_uphold_the_session_invariants(input in prop::collection::vec(any::<u8>(), 0..400)) {
        session_check::check(&input);
    }

    #[test]
    fn random_commands_uphold_the_session_invariants(
        mode in 0u8..4,
        lines in prop::collection::vec("[ -~]{0,60}", 0..12),
    ) {
        let mut input = vec![mode];
        for line in lines {
            input.extend(format!("{{\"command\":\"subscribe\",\"tags\":[\"{line}\"]}}\n").bytes());
            input.extend(line.bytes());
            input.push(b'\n');
        }
        session_check::check(&input);
    }
}
