//! `plumbline.v1.ScoringService`: an item's score with its explanation, one
//! page of a ranking, and a watched top N (see [`super::watch`]).

use std::sync::Arc;

use tonic::{Request, Response};

use super::Reply;
use super::convert;
use super::page::{self, MAX_PAGE_SIZE, PageToken};
use super::ranking::{rank_order, ranked_items};
use crate::engine::{Engine, Error, RankRequest};
use crate::proto as pb;

/// `plumbline.v1.ScoringService`; its watches end when the [`Lifecycle`]
/// stops.
///
/// [`Lifecycle`]: crate::lifecycle::Lifecycle
#[derive(Clone)]
pub struct ScoringApi(
    pub Arc<Engine>,
    pub crate::lifecycle::Lifecycle,
    pub super::watch::Watchers,
);

/// Default and maximum page sizes of `RankItems`.
const DEFAULT_RANK_SIZE: usize = 50;

#[tonic::async_trait]
impl pb::scoring_service_server::ScoringService for ScoringApi {
    async fn get_item_score(
        &self,
        req: Request<pb::GetItemScoreRequest>,
    ) -> Reply<pb::GetItemScoreResponse> {
        let key = &req.get_ref().item_key;
        if key.is_empty() {
            return Err(Error::invalid("item_key", "is required").into());
        }
        let score = self.0.item_score(key)?;
        Ok(Response::new(pb::GetItemScoreResponse {
            score: Some(convert::score_to_pb(score)),
        }))
    }

    type WatchRankingStream = super::watch::RankingStream;

    async fn watch_ranking(
        &self,
        req: Request<pb::WatchRankingRequest>,
    ) -> Reply<Self::WatchRankingStream> {
        // With auth on, the watch ends when its token is revoked.
        let revoked = req
            .extensions()
            .get::<crate::auth::Caller>()
            .map(|c| c.revoked.clone());
        let stream = super::watch::watch_ranking(
            self.0.clone(),
            &self.1,
            &self.2,
            req.into_inner(),
            revoked,
        )?;
        Ok(Response::new(stream))
    }

    async fn rank_items(&self, req: Request<pb::RankItemsRequest>) -> Reply<pb::RankItemsResponse> {
        let r = req.get_ref();
        let size = page::page_size(r.page_size, DEFAULT_RANK_SIZE, MAX_PAGE_SIZE)?;
        let order = rank_order(r.order)?;
        let full = match pb::ScoreView::try_from(r.view) {
            Ok(pb::ScoreView::Unspecified | pb::ScoreView::Basic) => false,
            Ok(pb::ScoreView::Full) => true,
            Err(_) => return Err(Error::invalid("view", "is not a known view").into()),
        };
        let fingerprint = format!(
            "RankItems|{:?}|{}|{}|{}",
            order, r.source_id, r.label, r.include_closed
        );
        let token = PageToken::decode(&r.page_token, &fingerprint)?;
        let after = token.map(PageToken::rank_cursor).transpose()?;
        let page = self.0.rank(&RankRequest {
            order,
            source_id: (!r.source_id.is_empty()).then(|| r.source_id.clone()),
            label: (!r.label.is_empty()).then(|| r.label.clone()),
            include_closed: r.include_closed,
            after,
            limit: size,
            with_terms: full,
            narrow: Default::default(),
        })?;
        Ok(Response::new(pb::RankItemsResponse {
            items: ranked_items(page.items),
            next_page_token: page
                .next
                .map(|c| PageToken::for_ranking(fingerprint, c).encode())
                .unwrap_or_default(),
        }))
    }
}
