//! `plumbline apply`, `export` and `init`: the value model as a file under
//! review. `apply` sends the file to `ApplyValueModel` and prints the plan
//! the server made (and applied, unless `--dry-run`); `export` writes the
//! server's model in the same format; `init` writes the commented starter.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Conn;
use super::client::{connect, rpc_error};
use super::json;
use crate::proto as pb;
use pb::model_file_service_client::ModelFileServiceClient;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    plumbline apply product.toml --dry-run     # show the plan, write nothing\n  \
    plumbline apply product.toml               # apply it in one transaction\n  \
    plumbline apply product.toml --prune       # also delete what the file no longer has")]
pub struct ApplyArgs {
    /// The value model file (TOML; see `plumbline init`), e.g. product.toml.
    /// `-` reads standard input.
    file: PathBuf,
    /// Print the plan and write nothing, e.g. in a pull request's CI check.
    #[arg(long)]
    dry_run: bool,
    /// Also delete the sources, goals, metrics and hypotheses the server has
    /// and the file does not (items and links are never pruned), e.g. after
    /// removing a finished goal from the file.
    #[arg(long)]
    prune: bool,
    /// With --prune: delete even what other data still needs (a metric that
    /// hypotheses measure, a hypothesis with evidence or links, a goal with
    /// children or hypotheses, a source with items), with that data.
    #[arg(long, requires = "prune")]
    force: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    plumbline export --out product.toml        # then review, edit and apply it\n  \
    plumbline export > product.toml")]
pub struct ExportArgs {
    /// Write to this file instead of standard output, e.g. --out product.toml
    /// (replaced if it exists).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Also write each hypothesis' confidence and status (left out by
    /// default: validation owns them, and a file carrying them would set
    /// them back each time it is applied), e.g. for a backup.
    #[arg(long)]
    with_state: bool,
    /// Also write every metric's observations (left out by default: apply
    /// never deletes them; a long history may not fit in one file).
    #[arg(long)]
    with_observations: bool,
    /// Also write every insight, `[[insights]]` (left out by default: they
    /// name customers, and apply never deletes them).
    #[arg(long)]
    with_insights: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    plumbline init && $EDITOR product.toml && plumbline apply product.toml --dry-run")]
pub struct InitArgs {
    /// Where to write the starter file [default: product.toml].
    #[arg(default_value = "product.toml")]
    file: PathBuf,
    /// Replace the file if it exists, e.g. to start over.
    #[arg(long)]
    force: bool,
}

pub async fn apply(a: ApplyArgs) -> Result<()> {
    let (document, name) = if a.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read the value model from standard input")?;
        (s, "<stdin>".to_string())
    } else {
        let s = std::fs::read_to_string(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?;
        (s, a.file.display().to_string())
    };
    let mut client = ModelFileServiceClient::new(connect(&a.conn.server).await?);
    let answer = client
        .apply_value_model(pb::ApplyValueModelRequest {
            document,
            file_name: name.clone(),
            dry_run: a.dry_run,
            prune: a.prune,
            force: a.force,
        })
        .await;
    let answer = match answer {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            let lines: Vec<&str> = s.message().lines().collect();
            let what = match lines.len() {
                1 => "an error".to_string(),
                n => format!("{n} errors"),
            };
            bail!(
                "{name} has {what}; nothing was written:\n{}",
                lines.join("\n")
            );
        }
        Err(s) => return Err(rpc_error(s)),
    };
    if a.conn.json {
        println!("{}", json::message("ApplyValueModelResponse", &answer));
        return Ok(());
    }
    print!("{}", plan_text(&name, &answer, a.dry_run));
    Ok(())
}

/// The plan as people read it: one line per change (`+` create, `~`
/// update, `-` delete), each changed field as `old -> new`, then what was
/// done.
pub fn plan_text(name: &str, r: &pb::ApplyValueModelResponse, dry_run: bool) -> String {
    if r.changes.is_empty() {
        return format!("{name}: nothing to change; the server already matches the file.\n");
    }
    let count = |a: pb::PlannedAction| r.changes.iter().filter(|c| c.action == a as i32).count();
    let mut out = format!(
        "Plan for {name}: {} to create, {} to update, {} to delete\n",
        count(pb::PlannedAction::Create),
        count(pb::PlannedAction::Update),
        count(pb::PlannedAction::Delete)
    );
    for c in &r.changes {
        let mark = match pb::PlannedAction::try_from(c.action) {
            Ok(pb::PlannedAction::Create) => "+",
            Ok(pb::PlannedAction::Update) => "~",
            Ok(pb::PlannedAction::Delete) => "-",
            _ => "?",
        };
        out.push_str(&format!("  {mark} {} {}", c.kind, c.id));
        if !c.note.is_empty() {
            out.push_str(&format!(" ({})", c.note));
        }
        out.push('\n');
        for f in &c.fields {
            out.push_str(&format!(
                "      {}: {} -> {}\n",
                f.field,
                super::output::clip(&f.old_value, 60),
                super::output::clip(&f.new_value, 60)
            ));
        }
    }
    out.push_str(if r.applied {
        "Applied.\n"
    } else if dry_run {
        "Dry run: nothing was written. Apply without --dry-run to make these changes.\n"
    } else {
        "Nothing was written.\n"
    });
    out
}

pub async fn export(a: ExportArgs) -> Result<()> {
    let mut client = ModelFileServiceClient::new(connect(&a.conn.server).await?);
    let doc = client
        .export_value_model(pb::ExportValueModelRequest {
            include_state: a.with_state,
            include_observations: a.with_observations,
            include_insights: a.with_insights,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    match &a.out {
        Some(path) => {
            std::fs::write(path, &doc.document)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None if a.conn.json => {
            println!("{}", json::message("ExportValueModelResponse", &doc));
        }
        None => {
            std::io::stdout()
                .write_all(doc.document.as_bytes())
                .context("cannot write to standard output")?;
        }
    }
    Ok(())
}

pub fn init(a: InitArgs) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if a.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = match options.open(&a.file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; pass --force to replace it, or name another file",
            a.file.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", a.file.display())),
    };
    f.write_all(crate::model::STARTER.as_bytes())
        .with_context(|| format!("cannot write {}", a.file.display()))?;
    println!(
        "wrote {}: one goal, one metric and one hypothesis to edit.\nNext: edit it, then `plumbline apply {} --dry-run` to see the plan.",
        a.file.display(),
        a.file.display()
    );
    Ok(())
}
