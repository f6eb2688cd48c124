//! What the pages print, worked out in Rust before a template sees it:
//! numbers formatted once, bar widths, and the rounding of an item's terms
//! so that the printed terms add up exactly to the printed value.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// A rendered template as an HTML answer; a template that fails to render
/// (it cannot, once compiled, but askama's API says it may) is a 500 that
/// says so.
pub(crate) fn html(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a web page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this page failed to render; the server log says why",
            )
                .into_response()
        }
    }
}

/// A page with a title and one paragraph: errors and refusals.
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct Message<'a> {
    pub title: &'a str,
    pub detail: &'a str,
    pub signed_in: bool,
    pub csrf: &'a str,
}

/// Value and value density as the pages print them: four decimals (a
/// value is a share of the product's weighted gap, in [0, 1]).
pub(crate) fn num(x: f64) -> String {
    format!("{x:.4}")
}

/// Sizes, contributions, confidences: two decimals.
pub(crate) fn num2(x: f64) -> String {
    format!("{x:.2}")
}

/// Ten-thousandths: the printed precision of a value.
const SCALE: f64 = 10_000.0;

/// Ten-thousandths ([`SCALE`]), as integers, for `value` and for each of `terms` (whose sum
/// is `value`), rounded so that the terms' ten-thousandths add up exactly to the
/// value's: each term is rounded down, and the ten-thousandths still missing go
/// to the terms with the largest remainders (the largest remainder method).
/// `value` is the engine's own sum of the terms, so the rounding of each
/// side differs by less than one ten-thousandth per term and the missing
/// ten-thousandths number at most the terms.
pub(crate) fn cents(value: f64, terms: &[f64]) -> (i64, Vec<i64>) {
    let total = (value * SCALE).round() as i64;
    let mut out: Vec<i64> = terms.iter().map(|t| (t * SCALE).floor() as i64).collect();
    let mut order: Vec<usize> = (0..terms.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = terms[a] * SCALE - out[a] as f64;
        let rb = terms[b] * SCALE - out[b] as f64;
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let missing = total - out.iter().sum::<i64>();
    if missing > 0 {
        for &i in order.iter().cycle().take(missing as usize) {
            out[i] += 1;
        }
    } else if missing < 0 {
        for &i in order
            .iter()
            .rev()
            .cycle()
            .take(missing.unsigned_abs() as usize)
        {
            out[i] -= 1;
        }
    }
    (total, out)
}

/// Ten-thousandths as a number with four decimals: `-12345` is `-1.2345`.
pub(crate) fn cents_str(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let a = c.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
}

/// A share in [0, 1] as a CSS width percentage with one decimal.
pub(crate) fn width(share: f64) -> String {
    let s = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    format!("{:.1}", s * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thirds_add_up_to_the_value() {
        let t = [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0];
        let v = t[0] + t[1] + t[2];
        let (total, c) = cents(v, &t);
        assert_eq!(total, 10_000);
        assert_eq!(c, [3334, 3333, 3333]);
        assert_eq!(cents_str(-12345), "-1.2345");
        assert_eq!(cents_str(5), "0.0005");
    }

    proptest! {
        #[test]
        fn printed_terms_always_add_up_to_the_printed_value(
            terms in proptest::collection::vec(0.0f64..1.0, 0..12)
        ) {
            let value = terms.iter().sum::<f64>();
            let (total, c) = cents(value, &terms);
            prop_assert_eq!(c.iter().sum::<i64>(), total);
            for (t, c) in terms.iter().zip(&c) {
                prop_assert!((t * SCALE - *c as f64).abs() < 1.0 + 1e-6);
            }
        }
    }
}
