//! plumbline's integration tests, in one binary (one link of tonic, rusqlite and
//! reqwest instead of one per file). Each module is one topic; every test
//! starts the real server on 127.0.0.1:0 with a temporary database, or the
//! real binary, and talks to it as a client would.

mod common;
mod conformance;
mod outbound;
mod push;
mod realdeps;

mod api;
mod apply;
mod auth;
mod bench;
mod browser;
mod cli;
mod cli_commands;
mod cli_split;
mod customer;
mod history;
mod insights;
mod learning_sim;
mod limits;
mod metric_prometheus;
mod metric_pull;
mod metric_pull_real;
mod metric_sql;
mod reflection;
mod removal;
mod replicas;
mod restart;
mod rollup;
mod shutdown;
mod slow_github;
mod split;
mod split_resync;
mod split_write_back;
mod store_faults;
mod store_postgres_core;
mod store_postgres_pgb;
mod sync_github;
mod sync_gitlab;
mod sync_jira;
mod sync_pages;
mod sync_redmine;
mod time;
mod tls;
mod validation;
mod watch;
mod web;
