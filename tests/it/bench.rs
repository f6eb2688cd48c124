//! The benchmark suite at a tiny size, through the library: every figure is
//! measured, finite and held to its target (or marked as having none), so
//! that `plumbline bench` keeps working as the code changes. Speed itself is
//! not asserted here; that is what the bench prints.

use plumbline::bench::{FIGURES, Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_is_measured_and_finite_at_a_tiny_size() {
    let mut opts = Options::new(500, 3, env!("CARGO_BIN_EXE_plumbline").into());
    opts.samples = 60;
    let report = run(&opts).await.expect("the bench runs");

    assert_eq!((report.items, report.seed), (500, 3));
    let names: Vec<&str> = report.figures.iter().map(|f| f.name).collect();
    assert_eq!(names, FIGURES, "every figure, in order");
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
    // The JSON form carries the same figures.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["figures"].as_array().map(Vec::len),
        Some(FIGURES.len())
    );
    assert!(report.db_bytes > 0 && report.total_secs > 0.0);
}
