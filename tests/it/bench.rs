//! The benchmark suite at a tiny size: every figure is measured, finite and
//! held to its target (or marked as having none), so that
//! `cargo bench --bench plumbline` keeps working as the code changes. Speed
//! itself is not asserted here; that is what the bench prints.
//!
//! The suite is the bench target's own code, compiled in here as a module:
//! the library does not carry it, and a second copy could drift.

#[path = "../../benches/plumbline/suite/mod.rs"]
// The tests use part of the suite (its run and the synthetic product).
#[allow(dead_code)]
pub mod suite;

use suite::{FIGURES, Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_is_measured_and_finite_at_a_tiny_size() {
    let mut opts = Options::new(500, 3, env!("CARGO_BIN_EXE_plumbline").into());
    opts.samples = 60;
    opts.watchers = 150;
    let report = run(&opts).await.expect("the bench runs");

    assert_eq!((report.items, report.seed), (500, 3));
    let names: Vec<&str> = report.figures.iter().map(|f| f.name).collect();
    // The two browser figures need chromium; without it a note says so.
    let unmeasured = report
        .notes
        .iter()
        .any(|n| n.contains("not measured: no chromium"));
    // The PostgreSQL figures need PLB_SUITE_POSTGRES (the suite's
    // PostgreSQL pass); without it one note says so.
    let on_postgres = std::env::var(suite::replicas::ENV).is_ok();
    assert_eq!(
        report.notes.iter().any(|n| n == suite::replicas::SKIPPED),
        !on_postgres,
        "{:?}",
        report.notes
    );
    let expected: Vec<&str> = FIGURES
        .iter()
        .copied()
        .filter(|f| !(unmeasured && matches!(*f, "web_backlog_paint" | "web_live_update_p50")))
        .filter(|f| on_postgres || !suite::replicas::NAMES.contains(f))
        .collect();
    assert_eq!(names, expected, "every figure, in order");
    for f in &report.figures {
        assert!(
            f.value.is_finite() && f.value > 0.0,
            "{}: value {}",
            f.name,
            f.value
        );
        assert!(
            f.baseline.is_finite() && f.baseline > 0.0,
            "{}: baseline {}",
            f.name,
            f.baseline
        );
        assert!(f.ratio.is_finite(), "{}: ratio {}", f.name, f.ratio);
        assert_eq!(f.pass.is_none(), f.target == "none", "{}", f.name);
        let line = f.line();
        assert!(line.starts_with(&format!("{}: ", f.name)), "{line}");
        assert!(
            line.ends_with("PASS") || line.ends_with("MISS") || line.ends_with(" -"),
            "{line}"
        );
    }

    // The sync is held to the larger of its two baselines, and both are
    // printed.
    let sync = report.figure("sync_ingest").expect("a sync figure");
    let baselines: Vec<(&str, f64)> = sync.baselines.iter().map(|b| (b.name, b.value)).collect();
    assert_eq!(baselines.len(), 2, "{baselines:?}");
    assert!(
        baselines[0].0.starts_with("fetching and parsing"),
        "{baselines:?}"
    );
    assert!(
        baselines[1].0.starts_with("the store's bulk write"),
        "{baselines:?}"
    );
    for (name, b) in &baselines {
        assert!(b.is_finite() && *b > 0.0, "{name}: {b}");
        assert!(sync.line().contains(name), "{}", sync.line());
    }
    let larger = baselines[0].1.max(baselines[1].1);
    assert_eq!(sync.baseline, larger);
    assert_eq!(sync.ratio, sync.value / larger);
    assert_eq!(sync.pass, Some(sync.ratio <= 1.3));

    // The JSON form carries the same figures, and the sync's two baselines.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["figures"].as_array().map(Vec::len),
        Some(expected.len())
    );
    let sync_json = json["figures"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == "sync_ingest"))
        .expect("sync_ingest in the JSON");
    assert_eq!(sync_json["baselines"].as_array().map(Vec::len), Some(2));
    assert!(report.db_bytes > 0 && report.total_secs > 0.0);
}

/// The synthetic product the suite and the sync tests draw on.
mod synth {
    use plumbline::domain::{LinkRules, rule_links};

    use super::suite::synth::{HOT_HYPOTHESES, github_page, hypothesis_id, item};

    #[test]
    fn items_are_drawn_from_seed_and_index_alone() {
        let a = item(7, 42, 1000);
        let b = item(7, 42, 1000);
        assert_eq!((a.title, a.body, a.labels), (b.title, b.body, b.labels));
        assert_ne!(item(7, 43, 1000).title, item(8, 43, 1000).title);
    }

    #[test]
    fn one_item_in_ten_serves_the_hot_metric() {
        let rules = LinkRules::default();
        let hot: Vec<String> = (0..HOT_HYPOTHESES).map(hypothesis_id).collect();
        let n = 2000;
        let serving = (0..n)
            .filter(|&i| {
                let s = item(1, i, n);
                rule_links(&rules, &s.labels, &s.body)
                    .keys()
                    .any(|h| hot.contains(h))
            })
            .count();
        assert_eq!(serving as u64, n / 10);
    }

    #[test]
    fn a_rendered_page_parses_as_the_items_it_was_drawn_from() {
        let body = github_page(3, 0, 5, 5);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 5);
        let first = item(3, 0, 5);
        assert_eq!(arr[0]["title"], first.title.as_str());
        assert_eq!(arr[0]["body"], first.body.as_str());
        assert_eq!(arr[0]["number"], 1);
    }
}
