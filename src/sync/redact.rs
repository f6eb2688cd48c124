//! What of a tracker's answer may reach a caller, a log or the store: a
//! tracker (or whatever service a source was pointed at) may echo a
//! credential or internal data in an error body, and every error of a sync
//! is shown to every caller of `GetSyncStatus`. So an error body is never
//! quoted: only the short message of a tracker's documented error shape
//! (GitHub's and GitLab's `message`, Jira's `errorMessages` and `errors`,
//! Redmine's `errors`, OAuth's `error`) is kept, bounded, with control
//! characters removed and every known secret, and anything that looks like a
//! credential, replaced by [`REDACTED`].

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue};

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// The longest summary of a tracker's error, in characters.
const MAX_SUMMARY: usize = 160;

/// The secret values a request carries: every header value marked
/// sensitive (the auth header), its credential without the scheme
/// (`Bearer X` gives `X`), and for `Basic` the decoded `user:secret` and
/// its secret.
pub fn secrets_of(headers: &[(HeaderName, HeaderValue)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in headers.iter().filter(|(_, v)| v.is_sensitive()) {
        let Ok(s) = v.to_str() else { continue };
        out.push(s.to_string());
        if let Some((scheme, cred)) = s.split_once(' ') {
            out.push(cred.trim().to_string());
            if scheme.eq_ignore_ascii_case("basic")
                && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(cred.trim())
                && let Ok(pair) = String::from_utf8(raw)
            {
                if let Some((_, secret)) = pair.split_once(':') {
                    out.push(secret.to_string());
                }
                out.push(pair);
            }
        }
    }
    secret_set(out)
}

/// `text` with every value of `secrets` replaced by [`REDACTED`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// The short message of an error body in a tracker's documented error shape,
/// sanitized ([`sanitize`]); `"no message"` when the body has none (a body
/// that is not such JSON is never quoted).
pub fn summary(body: &str, secrets: &[String]) -> String {
    let text = documented_message(body).unwrap_or_default();
    let short = sanitize(&text, secrets);
    if short.is_empty() {
        "no message".into()
    } else {
        short
    }
}

/// The message fields of the trackers' error shapes, in order of preference.
fn documented_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let obj = v.as_object()?;
    for key in ["message", "errorMessages", "errors", "error", "detail"] {
        let Some(field) = obj.get(key) else { continue };
        let text = flatten(field);
        if !text.trim().is_empty() {
            return Some(text);
        }
    }
    None
}

/// Strings, arrays of strings and objects of them (GitLab's
/// `{"message": {"title": ["can't be blank"]}}`, Jira's `errors` by field)
/// as one line; other values are left out.
fn flatten(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(flatten)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k, flatten(v)))
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| format!("{k}: {s}"))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}

/// Tracker text made fit to show: [`redact_text`], cut at [`MAX_SUMMARY`]
/// characters (an ellipsis marks a cut).
pub fn sanitize(text: &str, secrets: &[String]) -> String {
    let joined = redact_text(text, secrets);
    let mut short: String = joined.chars().take(MAX_SUMMARY).collect();
    if joined.chars().count() > MAX_SUMMARY {
        short.push('…');
    }
    short
}

/// `text` with known secrets and credential-like words replaced, and
/// control characters and runs of whitespace made one space. For a
/// tracker's message ([`sanitize`]), and for an error stored before
/// errors were scrubbed, as it is shown again.
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    let scrubbed = scrub(text, secrets);
    let words: Vec<String> = scrubbed
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut hide_next = false;
    for w in words {
        // `Bearer X`, `Basic X`, `token: X`, `Authorization: Bearer X`: the
        // word after is the secret.
        let lower = w.to_ascii_lowercase();
        let scheme = matches!(lower.as_str(), "bearer" | "basic");
        if hide_next && !scheme {
            hide_next = false;
            out.push(REDACTED.into());
            continue;
        }
        if scheme || (lower.ends_with(':') && credential_key(&lower[..lower.len() - 1])) {
            hide_next = true;
            out.push(w);
            continue;
        }
        out.push(redact_word(&w));
    }
    out.join(" ")
}

/// One list of secrets to scrub from several: empty ones dropped, each
/// once, longest first (so that a secret inside another is not replaced
/// first).
pub fn secret_set(secrets: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// Whether a key names a credential (`password`, `db_password`, `api_key`,
/// `private-token`, `secret`, ...).
fn credential_key(key: &str) -> bool {
    let k = key
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "authorization",
        "credential",
    ]
    .iter()
    .any(|p| k.contains(p))
}

/// One word, with what looks like a credential replaced: the value of
/// `key=value` when the key names one, a token with a known prefix
/// (`ghp_`, `glpat-`, ...), and long opaque runs of letters and digits (a
/// Redmine key is 40 hex digits).
fn redact_word(w: &str) -> String {
    if let Some((k, _)) = w.split_once('=')
        && credential_key(k)
    {
        return format!("{k}={REDACTED}");
    }
    const PREFIXES: [&str; 9] = [
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
        "gloas-",
        "ATATT",
    ];
    let core = w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'));
    let looks_opaque = core.len() >= 32
        && core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && core.chars().any(|c| c.is_ascii_digit())
        && core.chars().any(|c| c.is_ascii_alphabetic());
    if !core.is_empty() && (PREFIXES.iter().any(|p| core.starts_with(p)) || looks_opaque) {
        return w.replace(core, REDACTED);
    }
    w.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_messages_are_kept_and_bodies_never_quoted() {
        let s = |b: &str| summary(b, &[]);
        assert_eq!(
            s(r#"{"message":"Bad credentials","documentation_url":"x"}"#),
            "Bad credentials"
        );
        assert_eq!(
            s(r#"{"errorMessages":["No project 'X'","Second"],"errors":{}}"#),
            "No project 'X'; Second"
        );
        assert_eq!(
            s(r#"{"errors":["Updated is invalid"]}"#),
            "Updated is invalid"
        );
        assert_eq!(
            s(r#"{"message":{"title":["can't be blank"]}}"#),
            "title: can't be blank"
        );
        assert_eq!(s(""), "no message");
        assert_eq!(s("INTERNAL-ONLY-DATA: db_password=hunter2"), "no message");
        assert_eq!(s(r#"{"internal":"db_password=hunter2"}"#), "no message");
        assert!(
            s(&format!(r#"{{"message":"{}"}}"#, "x ".repeat(500)))
                .chars()
                .count()
                <= 161
        );
    }

    #[test]
    fn secrets_and_credential_like_words_are_redacted() {
        let secrets = vec!["s3cr3t-value".to_string()];
        let out = summary(
            r#"{"message":"echo s3cr3t-value db_password=hunter2 Bearer abc\u0007def ghp_zzz token: qq 3f9c2b7a1e8d4c6b5a0f9e8d7c6b5a4f3e2d1c0b"}"#,
            &secrets,
        );
        for leak in ["s3cr3t", "hunter2", "abc", "ghp_zzz", "qq", "3f9c2b7a"] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert!(out.contains("db_password=[redacted]"), "{out}");
    }

    #[test]
    fn the_secrets_of_a_request_are_its_sensitive_headers() {
        let mut bearer = HeaderValue::from_static("Bearer ghp_tok");
        bearer.set_sensitive(true);
        let mut basic = HeaderValue::from_static("Basic bWVAZXhhbXBsZS5jb206amlyYS1hcGktdG9rZW4=");
        basic.set_sensitive(true);
        let accept = HeaderValue::from_static("application/json");
        let name = HeaderName::from_static("authorization");
        let got = secrets_of(&[
            (name.clone(), bearer),
            (name.clone(), basic),
            (reqwest::header::ACCEPT, accept),
        ]);
        for want in ["ghp_tok", "me@example.com:jira-api-token", "jira-api-token"] {
            assert!(got.iter().any(|s| s == want), "{want} not in {got:?}");
        }
        assert!(!got.iter().any(|s| s.contains("json")));
    }
}
