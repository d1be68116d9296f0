//! `memshare info` on a channel decodes its header; `ls` calls it a channel.

use assert_cmd::Command;
use memshare::channel::{Receiver, Sender};

#[test]
fn info_decodes_a_channel_header() {
    let name = format!("cli-chan-{}", std::process::id());
    let mut tx = Sender::create_named(&name, 4096).unwrap();
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_memshare"))
        .args(["info", &name, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let info: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let chan = &info["channel"];
    assert_eq!(chan["capacity"], 4096, "{info}");
    assert_eq!(chan["messages_pending"], 2, "{info}");
    assert_eq!(chan["bytes_pending"], 32, "{info}");
    assert_eq!(chan["sender"], "attached", "{info}");
    assert_eq!(chan["receiver"], "never attached", "{info}");

    let mut rx = Receiver::attach(tx.segment()).unwrap();
    drop(rx.recv().unwrap());
    drop(tx);
    let text = Command::new(env!("CARGO_BIN_EXE_memshare"))
        .args(["info", &name])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("pending msgs:  1") || text.contains("pending msgs: 1"),
        "{text}"
    );
    assert!(
        text.contains("detached") && text.contains("kind:"),
        "{text}"
    );
    let ls = Command::new(env!("CARGO_BIN_EXE_memshare"))
        .args(["ls"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let ls = String::from_utf8(ls).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.contains(&name) && l.contains("channel")),
        "{ls}"
    );
    drop(rx);
    assert!(!std::path::Path::new("/dev/shm").join(&name).exists());
}
