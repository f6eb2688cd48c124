//! A metric's trend as a chart, from plain data: its observations, the
//! releases that touch it and its baseline and target lines, drawn for a
//! terminal (`plumbline trend`) or as SVG (`trend --out`, the web view's
//! metrics page). Pure: no I/O.

use std::fmt::Write as _;

/// Three significant digits in plain decimal notation, never scientific,
/// without trailing zeros: 0.125, 0.00012, 0.00966, 1235 (for 1234.56; an
/// integer part is never cut), 3. The same in every table; `--json` carries
/// the full value.
pub fn format_number(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f == 0.0 {
        return "0".into();
    }
    // Digits after the point for three significant ones, at most 12 (a
    // value below 1e-12 reads as 0).
    let magnitude = f.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 12) as usize;
    let s = format!("{f:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    match s {
        "-0" => "0".to_string(),
        s => s.to_string(),
    }
}

/// The series as (seconds, value) and releases as (seconds, label).
pub struct Series {
    pub points: Vec<(i64, f64)>,
    pub releases: Vec<(i64, String)>,
    pub baseline: f64,
    pub target: f64,
}

impl Series {
    /// (min, max) of time and of value, padded so that a flat series and the
    /// target both show.
    fn bounds(&self) -> ((i64, i64), (f64, f64)) {
        let times = self
            .points
            .iter()
            .map(|p| p.0)
            .chain(self.releases.iter().map(|r| r.0));
        let (t0, t1) = times.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
        let values = self
            .points
            .iter()
            .map(|p| p.1)
            .chain([self.baseline, self.target]);
        let (v0, v1) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let pad = ((v1 - v0) * 0.05).max(1e-9);
        ((t0, t1.max(t0 + 1)), (v0 - pad, v1 + pad))
    }
}

/// The terminal chart: `•` observations, `-` the target row, `|` releases.
pub fn terminal_chart(s: &Series, width: usize, height: usize) -> String {
    let (width, height) = (width.max(16), height.max(4));
    let ((t0, t1), (v0, v1)) = s.bounds();
    let col = |t: i64| (((t - t0) as f64 / (t1 - t0) as f64) * (width - 1) as f64).round() as usize;
    let row = |v: f64| {
        ((v1 - v) / (v1 - v0) * (height - 1) as f64)
            .round()
            .clamp(0.0, (height - 1) as f64) as usize
    };
    let mut grid = vec![vec![' '; width]; height];
    let target_row = row(s.target);
    for c in grid[target_row].iter_mut() {
        *c = '-';
    }
    for (t, _) in &s.releases {
        let c = col(*t).min(width - 1);
        for r in grid.iter_mut() {
            if r[c] == ' ' || r[c] == '-' {
                r[c] = '|';
            }
        }
    }
    for (t, v) in &s.points {
        grid[row(*v)][col(*t).min(width - 1)] = '•';
    }
    let mut out = String::new();
    for (i, r) in grid.iter().enumerate() {
        let v = v1 - (v1 - v0) * i as f64 / (height - 1) as f64;
        let label = if i == target_row {
            format!("target {}", format_number(s.target))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>10} │{}│ {label}",
            format_number(v),
            r.iter().collect::<String>()
        );
    }
    let _ = writeln!(out, "{:>10} └{}┘", "", "─".repeat(width));
    out
}

/// The SVG chart.
pub fn svg_chart(s: &Series, title: &str) -> String {
    let (w, h, m) = (720.0, 340.0, 48.0);
    let ((t0, t1), (v0, v1)) = s.bounds();
    let x = |t: i64| m + (t - t0) as f64 / (t1 - t0) as f64 * (w - 2.0 * m);
    let y = |v: f64| m + (v1 - v) / (v1 - v0) * (h - 2.0 * m);
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{m}" y="20" font-size="14">{}</text>"#,
        esc(title)
    );
    for (v, label, colour) in [
        (s.baseline, "baseline", "#666"),
        (s.target, "target", "#1d6b45"),
    ] {
        let yy = y(v);
        let _ = writeln!(
            out,
            r#"<line x1="{m}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{colour}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="{colour}">{label} {}</text>"#,
            w - m,
            w - m - 80.0,
            yy - 4.0,
            format_number(v)
        );
    }
    for (t, id) in &s.releases {
        let xx = x(*t);
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{m}" x2="{xx:.1}" y2="{:.1}" stroke="#c33"/><text x="{:.1}" y="{:.1}" fill="#c33" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
            h - m,
            xx + 3.0,
            m + 4.0,
            xx + 3.0,
            m + 4.0,
            esc(id)
        );
    }
    let pts: Vec<String> = s
        .points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = writeln!(
        out,
        r##"<polyline fill="none" stroke="#236" stroke-width="2" points="{}"/>"##,
        pts.join(" ")
    );
    for (t, v) in &s.points {
        let _ = writeln!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#236"/>"##,
            x(*t),
            y(*v)
        );
    }
    let date = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        r#"<text x="{m}" y="{:.1}">{}</text>"#,
        h - m + 16.0,
        date(t0)
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        w - m,
        h - m + 16.0,
        date(t1)
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        Series {
            points: (0..10)
                .map(|i| (i * 86_400, if i < 5 { 2.0 } else { 2.5 }))
                .collect(),
            releases: vec![(5 * 86_400 - 3600, "deploy-7".into())],
            baseline: 2.0,
            target: 3.0,
        }
    }

    #[test]
    fn the_terminal_chart_shows_points_target_and_releases() {
        let chart = terminal_chart(&series(), 20, 6);
        let lines: Vec<&str> = chart.lines().collect();
        assert_eq!(lines.len(), 7);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("target 3") && l.contains('-')),
            "{chart}"
        );
        assert!(chart.contains('|') && chart.contains('•'), "{chart}");
        // The release column splits the low points (left) from the high ones.
        let cols = |l: &str, c: char| -> Vec<usize> {
            l.chars()
                .enumerate()
                .filter(|(_, x)| *x == c)
                .map(|(i, _)| i)
                .collect()
        };
        let low = lines[..6].iter().rev().find(|l| l.contains('•')).unwrap();
        let high = lines.iter().find(|l| l.contains('•')).unwrap();
        let release = cols(low, '|')[0];
        assert!(cols(low, '•').iter().all(|c| *c < release), "{chart}");
        assert!(cols(high, '•').iter().all(|c| *c > release), "{chart}");
    }

    #[test]
    fn the_svg_has_a_line_markers_and_escaped_text() {
        let svg = svg_chart(&series(), "conv <%>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(
            svg.contains("<polyline") && svg.contains("deploy-7") && svg.contains("conv &lt;%&gt;")
        );
        assert_eq!(svg.matches("<circle").count(), 10);
    }
}
