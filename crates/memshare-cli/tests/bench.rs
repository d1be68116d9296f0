//! `memshare bench` end to end: the real binary, real peer processes.

use assert_cmd::Command;

#[test]
fn bench_quick_writes_a_table_valid_json_and_a_plot() {
    let dir = std::env::temp_dir().join(format!("memshare-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let plot = dir.join("bench.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_memshare"))
        .args([
            "bench",
            "--quick",
            "--duration",
            "0.05",
            "--idle",
            "0",
            "--sizes",
            "64,64K",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .timeout(std::time::Duration::from_secs(240))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(out).unwrap();
    for needle in [
        "Latency",
        "Throughput",
        "raw-spin",
        "channel-park",
        "pipe",
        "memcpy",
        "target",
    ] {
        assert!(table.contains(needle), "table lacks {needle}:\n{table}");
    }

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    // 9 latency transports, 6 throughput transports at 2 sizes.
    assert_eq!(results.len(), 9 + 6 * 2);
    for r in results {
        match r["kind"].as_str().unwrap() {
            "latency" => assert!(r["median_ns"].as_f64().unwrap() > 0.0, "{r}"),
            "throughput" => assert!(r["bytes_per_sec"].as_f64().unwrap() > 0.0, "{r}"),
            other => panic!("kind {other}"),
        }
    }
    assert!(!report["comparisons"].as_array().unwrap().is_empty());

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("channel-reserve") && svg.contains("polyline"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_refuses_bad_options_with_one_line() {
    for args in [
        &["bench", "--duration=-1"][..],
        &["bench", "--sizes", "0"],
        &["bench", "--only", "latency", "--transports", "memcpy"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_memshare"))
            .args(args)
            .assert()
            .failure()
            .get_output()
            .clone();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("memshare: error:"), "{args:?}: {err}");
    }
}
