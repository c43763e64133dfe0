//! The `prefixgate` binary as an operator runs it: bad input at start exits
//! with code 2 and says what is wrong, naming the field or the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `prefixgate` with `args`; it must exit by itself within 60 s.
fn run_to_exit<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prefixgate"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("prefixgate {args:?} did not exit by itself");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs `prefixgate` with `args` on port-0 listeners (each case is refused
/// at start, before it serves).
fn prefixgate(args: &[&str]) -> Output {
    let mut all = vec!["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    all.extend_from_slice(args);
    run_to_exit(&all)
}

fn refused(args: &[&str]) -> String {
    let out = prefixgate(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

#[test]
fn a_plugin_configuration_the_filter_refuses_exits_2_naming_the_field() {
    let stderr = refused(&[
        "--backends",
        "127.0.0.1:1",
        "--plugin-config",
        r#"{"backends":["127.0.0.1:1"],"bogus":1}"#,
    ]);
    let last = stderr.lines().rfind(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(last.contains("proxy_on_configure refused") && last.contains("`bogus`"), "{stderr}");
}

#[test]
fn a_filter_that_is_not_wasm_exits_2_saying_so() {
    let dir = std::env::temp_dir().join(format!("prefixgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("filter.wasm");
    std::fs::write(&path, "(module)\n").unwrap();
    let stderr = refused(&["--backends", "127.0.0.1:1", "--filter", path.to_str().unwrap()]);
    assert!(stderr.contains("not a WebAssembly binary") && stderr.contains("(module"), "{stderr}");
    assert!(!stderr.contains("0x61"), "no raw bytes: {stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn backends_on_the_command_line_and_in_the_plugin_configuration_must_agree() {
    let stderr =
        refused(&["--backends", "127.0.0.1:1", "--plugin-config", r#"{"backends":["127.0.0.1:2"]}"#]);
    assert!(stderr.contains("`backends`") && stderr.contains("127.0.0.1:2"), "{stderr}");
}

#[test]
fn an_unknown_policy_is_refused_with_the_list() {
    let out = prefixgate(&["--backends", "127.0.0.1:1", "--policy", "fastest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fastest") && stderr.contains("least_ttft"), "{stderr}");
}

mod common;
use common::raw_module::{raw_module, Callback};

/// Runs `prefixgate check` with `args`: exit code, stdout, stderr.
fn check(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut all = vec![std::ffi::OsStr::new("check")];
    all.extend_from_slice(args);
    let out = run_to_exit(&all);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_passes_a_sound_filter_and_refuses_one_a_swap_would_refuse() {
    use std::ffi::OsStr;
    let plugin = OsStr::new(r#"{"policy": "prefix_aware", "backends": ["127.0.0.1:1"]}"#);
    // The embedded routing filter passes, and binds nothing.
    let (code, stdout, stderr) = check(&[OsStr::new("--plugin-config"), plugin]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("filter ok: sha256 "), "{stdout}");

    let dir = std::env::temp_dir().join(format!("prefixgate-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (raw_module(Callback::Trap, Callback::Ok), "on_request_headers"),
        (raw_module(Callback::Ok, Callback::Trap), "on_tick"),
        (b"not wasm".to_vec(), "not a WebAssembly binary"),
    ];
    for (i, (module, why)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("m{i}.wasm"));
        std::fs::write(&path, module).unwrap();
        let (code, stdout, stderr) =
            check(&[OsStr::new("--filter"), path.as_os_str(), OsStr::new("--plugin-config"), plugin]);
        assert_eq!(code, Some(2), "{why}: {stdout} {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
        assert!(error.contains(why), "{why}: {stderr}");
    }
    // The same module with a sound request path passes.
    let sound = dir.join("sound.wasm");
    std::fs::write(&sound, raw_module(Callback::Ok, Callback::Ok)).unwrap();
    let (code, _, stderr) =
        check(&[OsStr::new("--filter"), sound.as_os_str(), OsStr::new("--plugin-config"), plugin]);
    assert_eq!(code, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
