//! `plumbline completions SHELL` and `plumbline man`: shell completions
//! (clap_complete) and man pages (clap_mangen), generated from the same
//! clap definitions as `--help`, so that neither can fall behind a command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in. For example:
    /// `plumbline completions bash > /etc/bash_completion.d/plumbline`,
    /// `plumbline completions zsh > "${fpath[1]}/_plumbline"`,
    /// `plumbline completions fish > ~/.config/fish/completions/plumbline.fish`.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (plumbline.1, plumbline-goals-add.1, ...)
    /// into this directory instead of printing the main page, e.g.
    /// `plumbline man --dir /usr/local/share/man/man1`.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The completion script for `shell`.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut cmd = super::Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "plumbline", &mut out);
    out
}

pub fn completions(a: CompletionsArgs) -> Result<()> {
    std::io::stdout()
        .write_all(&completion_script(a.shell))
        .context("cannot write the completion script")
}

pub fn man(a: ManArgs) -> Result<()> {
    let cmd = super::Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create --dir {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            println!("wrote the man pages into {}", dir.display());
            Ok(())
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot render the man page")?;
            std::io::stdout()
                .write_all(&out)
                .context("cannot write the man page")
        }
    }
}
