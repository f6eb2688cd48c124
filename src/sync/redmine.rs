//! Redmine connector: not written yet (the sync issue's work in progress).

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

use super::http::Fetched;
use super::{Connector, Page, SyncError};
use crate::domain::{Source, Time};

/// The Redmine connector.
pub struct Redmine;

impl Connector for Redmine {
    fn headers(
        &self,
        source: &Source,
        _token: Option<&str>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SyncError> {
        Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: "Redmine sync is not available yet".into(),
        })
    }

    fn first_url(
        &self,
        source: &Source,
        _since: Option<Time>,
        _now: Time,
    ) -> Result<Url, SyncError> {
        Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: "Redmine sync is not available yet".into(),
        })
    }

    fn parse_page(&self, source: &Source, _fetched: &Fetched) -> Result<Page, SyncError> {
        Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: "Redmine sync is not available yet".into(),
        })
    }
}
