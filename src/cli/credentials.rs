//! The API token a client command sends: from a file (`--token-file` or
//! `PLUMBLINE_TOKEN_FILE`) or the `PLUMBLINE_TOKEN` variable, never from a
//! flag holding the token itself, which any user could read in `ps`.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use tonic::metadata::{Ascii, MetadataValue};

/// The variable holding the token itself.
pub const TOKEN_ENV: &str = "PLUMBLINE_TOKEN";

/// `--token-file`, set once from the command line.
static TOKEN_FILE: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Remembers `--token-file` (or `PLUMBLINE_TOKEN_FILE`) for every later
/// connection of this process.
pub fn set_token_file(path: Option<PathBuf>) {
    let _ = TOKEN_FILE.set(path);
}

/// Adds `authorization: Bearer <token>` to every call when a token is
/// given; the value is marked sensitive, so that no debug log shows it.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(..)"
        } else {
            "Bearer(none)"
        })
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The token to send: the file's content when a token file is named (it
/// wins, being the more deliberate choice), else `PLUMBLINE_TOKEN`, else
/// none (a server without auth needs none).
pub fn bearer() -> Result<Bearer> {
    let file = TOKEN_FILE.get().cloned().flatten();
    let (token, from) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            warn_if_readable_by_others(&path);
            (text, format!("the token file {}", path.display()))
        }
        None => match std::env::var(TOKEN_ENV) {
            Ok(v) => (v, TOKEN_ENV.to_string()),
            Err(std::env::VarError::NotPresent) => return Ok(Bearer(None)),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!(
                    "{TOKEN_ENV} is not valid text; set it to the token `plumbline tokens create` printed"
                )
            }
        },
    };
    let token = token.trim();
    if token.is_empty() {
        return Ok(Bearer(None));
    }
    // Never echo the token: it may be a secret put in the wrong place.
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
        anyhow::anyhow!("{from} does not hold a token (it has characters no token has)")
    })?;
    value.set_sensitive(true);
    Ok(Bearer(Some(value)))
}

/// A token file others can read hands them the token: say so (as ssh does
/// for keys), without refusing, since the operator may know better.
fn warn_if_readable_by_others(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: the token file {} can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
