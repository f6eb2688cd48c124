//! Write-back: applying a split plan by creating its slices as issues in the
//! tracker of the split item's source, then storing them under the tracker's
//! ids. The order of steps makes a retry safe:
//!
//! 1. [`Engine::start_split`](crate::engine::Engine::start_split) finds the
//!    slices of an earlier application by the note in their bodies. All of
//!    them: nothing to do. Some: only the others are created.
//! 2. Every create request is built before the first is sent, so a
//!    configuration problem creates nothing.
//! 3. One POST per missing slice, in slice order, never sent twice when the
//!    tracker may have applied it (see [`HttpClient::post_json`]).
//! 4. All slices exist: they are stored with their links and the item's own
//!    links removed, in one transaction. A tracker failure partway: the
//!    slices created so far are stored without links (the item keeps its
//!    own), so applying the plan again finds them, and the error is
//!    returned.

use chrono::Utc;

use super::{SyncError, Syncer, check_source, connector, source_token};
use crate::domain::Item;
use crate::engine::{AppliedSplit, SplitStart};
use crate::refine::split::PlanKind;

/// Removes an item from the set of splits under way, however the split ends.
struct SplittingGuard<'a> {
    syncer: &'a Syncer,
    key: String,
}

impl Drop for SplittingGuard<'_> {
    fn drop(&mut self) {
        self.syncer.splitting.lock().remove(&self.key);
    }
}

impl Syncer {
    /// Applies a split plan of item `key`: in plumbline only, or with
    /// `write_back` first in the tracker (see the module docs). Two
    /// applications to one item never run at once; the second fails with
    /// [`SyncError::SplitRunning`].
    pub async fn apply_split(
        &self,
        key: &str,
        kind: PlanKind,
        write_back: bool,
    ) -> Result<AppliedSplit, SyncError> {
        if !self.splitting.lock().insert(key.to_string()) {
            return Err(SyncError::SplitRunning(key.to_string()));
        }
        let _guard = SplittingGuard {
            syncer: self,
            key: key.to_string(),
        };
        if !write_back {
            return Ok(self.engine.apply_split(key, kind).await?);
        }
        self.write_back_split(key, kind).await
    }

    async fn write_back_split(&self, key: &str, kind: PlanKind) -> Result<AppliedSplit, SyncError> {
        let (engine, http) = (&self.engine, &self.http);
        let draft = match engine.start_split(key, kind).await? {
            SplitStart::Done(applied) => return Ok(applied),
            SplitStart::Draft(d) => *d,
        };
        let source = engine.get_source(&draft.item.source_id)?;
        let Some(conn) = connector(source.kind) else {
            return Err(SyncError::PushSource {
                source_id: source.id.clone(),
                action: "cannot create its slices in a tracker; apply the split without write-back",
            });
        };
        if source.token_env.is_empty() {
            return Err(SyncError::Config {
            source_id: source.id.clone(),
            detail: "the source names no token variable (token_env); creating issues in the tracker needs one".into(),
            source: None,
        });
        }
        check_source(http.outbound(), &source).map_err(|e| e.redacted(&self.secrets(&source)))?;
        let secrets = self.secrets(&source);
        let headers = conn.headers(&source, source_token(&source)?.as_deref())?;
        let mut requests = Vec::with_capacity(draft.slices.len());
        for slice in &draft.slices {
            requests.push(match slice.existing {
                Some(_) => None,
                None => Some(conn.create_issue_request(
                    &source,
                    &draft.item,
                    &slice.title,
                    &slice.body,
                    Some(slice.size),
                )?),
            });
        }

        let now = Utc::now();
        let mut items: Vec<Item> = Vec::with_capacity(draft.slices.len());
        let mut created: Vec<Item> = Vec::new();
        let mut sent = 0u32;
        for (slice, request) in draft.slices.iter().zip(requests) {
            let Some((url, body)) = request else {
                if let Some(existing) = &slice.existing {
                    items.push(existing.clone());
                }
                continue;
            };
            let result = match http
                .post_json(
                    conn.as_ref(),
                    &source.id,
                    &url,
                    &headers,
                    &body,
                    &|_| {},
                    &mut sent,
                )
                .await
            {
                Ok(fetched) => conn.parse_created(&source, &body, &fetched),
                Err(e) => Err(e),
            }
            .map_err(|e| e.redacted(&secrets));
            let mut it = match result {
                Ok(it) => it,
                Err(e) => {
                    tracing::warn!(item = key, slice = slice.n, error = %e, "write-back stopped partway");
                    if !created.is_empty() {
                        engine.store_partial_split(&created).await?;
                    }
                    return Err(e);
                }
            };
            it.parent_key = key.to_string();
            it.create_time = it.create_time.or(Some(now));
            it.update_time = it.update_time.or(Some(now));
            tracing::info!(item = key, slice = slice.n, created = %it.key(), "slice created in the tracker");
            created.push(it.clone());
            items.push(it);
        }
        Ok(engine.finish_split(&draft, items).await?)
    }
}
