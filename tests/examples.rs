//! The embedding examples under `examples/` run and check themselves; this
//! runs each (cargo test builds them) and looks at what it printed.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps, examples beside it.
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    deps.parent().unwrap().join("examples").join(name)
}

fn run(name: &str) -> String {
    let path = example(name);
    let out = Command::new(&path).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (cargo test builds the examples)",
            path.display()
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn custom_command() {
    assert!(run("custom_command").contains(r#""data":"HELLO""#));
}

#[test]
fn custom_listener() {
    assert!(run("custom_listener").contains(r#"{"command":"ping","data":"pong"}"#));
}

#[test]
fn custom_authenticator() {
    let printed = run("custom_authenticator");
    assert!(
        printed.contains("permission denied: this token may not use the tag(s) private"),
        "{printed}"
    );
    assert!(
        printed.contains("static:// tokens cannot be changed"),
        "{printed}"
    );
}
